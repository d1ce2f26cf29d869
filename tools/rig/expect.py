"""Expectations of a scenario and their verdicts against a recorded run.

Every kind is a frozen dataclass with `judge(record) -> Verdict`; the verdict carries
the evidence that decided it (a time and a value) and a one-line message. Times here
are absolute (the scenario parser resolved `sunset+10m` and friends); messages show
them in the site's local time.

| kind | passes when |
|---|---|
| `segment` | the agent's commanded state of a segment (on/off, level, reason) holds throughout a window |
| `alarm` | an alarm is raised within a delay after a time (a fault), cleared within a delay after another (a repair) |
| `no_other_alarms` | no alarm other than the listed ones (globs) is active at any time in a window |
| `energy` | the agent's energy per segment is within a tolerance of what the plant drew |
| `delivered` | every reading of the points (globs) reached the ingest exactly once |
| `quality` | a point's quality is the given one throughout a window, at some time in it, or never |
| `output` | the fan or the heater is on (or off) throughout a window |

Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tools.rig.record import AlarmInterval, Decision, RunRecord, segment_series

QUALITY_MODES = ("throughout", "sometime", "never")


@dataclass(frozen=True)
class Evidence:
    t: float | None  # when (None: over the whole run)
    value: Any  # what was seen then

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "value": self.value}


@dataclass(frozen=True)
class Verdict:
    name: str
    kind: str
    passed: bool
    message: str
    evidence: Evidence | None = None

    def to_dict(self) -> dict[str, Any]:
        ev = self.evidence.to_dict() if self.evidence else None
        return {"name": self.name, "kind": self.kind, "passed": self.passed, "message": self.message, "evidence": ev}


class Expectation(Protocol):
    """What every expectation kind offers (frozen dataclasses: read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def judge(self, r: RunRecord) -> Verdict: ...


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    text: str = ""  # as written: "sunset+10m .. sunrise-10m"

    def overlaps(self, a: float, b: float | None) -> bool:
        return a <= self.end and (b is None or b > self.start)


def local(r: RunRecord, t: float | None) -> str:
    """`t` in the run's site time, for messages: 2026-06-21 19:32:05 +03."""
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, ZoneInfo(r.site.timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _state(d: Decision) -> str:
    if not d.on:
        return "off"
    return "on" if d.level is None else f"on {d.level:g}%"


@dataclass(frozen=True)
class SegmentExpect:
    name: str
    segment: str
    on: bool
    window: Window
    level: float | None = None
    level_tolerance: float = 1.0
    reason: str | None = None  # a prefix of the decision's reason ("failsafe:", "override", "program:evening")
    kind: str = "segment"

    def _ok(self, d: Decision, level: bool = True) -> bool:
        if d.on != self.on:
            return False
        if level and self.on and self.level is not None:
            value = 100.0 if d.level is None else d.level
            if abs(value - self.level) > self.level_tolerance:
                return False
        return self.reason is None or d.reason.startswith(self.reason)

    def judge(self, r: RunRecord) -> Verdict:
        mine = sorted((d for d in r.decisions if d.segment == self.segment), key=lambda d: d.t)
        before = [d for d in mine if d.t <= self.window.start]
        if not before:
            first = mine[0] if mine else None
            return self._verdict(False, f"no decision for {self.segment} by {local(r, self.window.start)}", first)
        inside = [before[-1]] + [d for d in mine if self.window.start < d.t <= self.window.end]
        # a decision's level is the level when it was taken; a dimming step ramps after it
        # (ramp_down_s), so the level is judged on the agent's commanded level where it reports one
        levels = r.series.get(segment_series(self.segment, "level"))
        by_series = bool(levels) and self.on and self.level is not None
        for d in inside:
            if not self._ok(d, level=not by_series):
                when = max(d.t, self.window.start)
                return self._verdict(False, f"{self.segment} {_state(d)} ({d.reason}) at {local(r, when)}", d, when)
        if by_series and levels:
            bad = self._level_off(levels)
            if bad is not None:
                t, v = bad
                ev = Evidence(t, {"level": v})
                want = f"{self.level:g} ± {self.level_tolerance:g}"
                msg = f"{self.segment} on {v:g}% (its commanded level; wanted {want}) at {local(r, t)}"
                return Verdict(self.name, self.kind, False, msg, ev)
        d = inside[-1]
        state = f"on {self.level:g}%" if by_series else _state(d)
        return self._verdict(True, f"{self.segment} {state} ({d.reason}), {len(inside)} decision(s)", d)

    def _level_off(self, levels: list[tuple[float, float | None]]) -> tuple[float, float] | None:
        """The first (time, level) in the window off the wanted level (the one in force at its start included)."""
        assert self.level is not None
        at_start = [s for s in levels if s[0] <= self.window.start]
        inside = at_start[-1:] + [s for s in levels if self.window.start < s[0] <= self.window.end]
        for t, v in inside:
            if v is not None and abs(v - self.level) > self.level_tolerance:
                return max(t, self.window.start), v
        return None

    def _verdict(self, ok: bool, msg: str, d: Decision | None, t: float | None = None) -> Verdict:
        ev = (
            None if d is None else Evidence(d.t if t is None else t, {"on": d.on, "level": d.level, "reason": d.reason})
        )
        return Verdict(self.name, self.kind, ok, msg, ev)


@dataclass(frozen=True)
class AlarmExpect:
    name: str
    alarm: str
    after: float
    within_s: float
    cleared_after: float | None = None
    cleared_within_s: float = 300.0
    severity: str | None = None
    kind: str = "alarm"

    def judge(self, r: RunRecord) -> Verdict:
        mine = sorted((a for a in r.alarms if a.id == self.alarm), key=lambda a: a.raised)
        early = [a for a in mine if a.raised < self.after and (a.cleared is None or a.cleared > self.after)]
        if early:
            a = early[0]
            return self._v(r, False, f"{self.alarm} already active since {local(r, a.raised)}", a.raised, a)
        raised = [a for a in mine if self.after <= a.raised <= self.after + self.within_s]
        if not raised:
            later = [a for a in mine if a.raised > self.after]
            if later:
                a = later[0]
                late = a.raised - self.after
                return self._v(
                    r, False, f"{self.alarm} raised {late:.0f} s after, later than {self.within_s:g} s", a.raised, a
                )
            return self._v(r, False, f"{self.alarm} never raised after {local(r, self.after)}", None, None)
        a = raised[0]
        delay = a.raised - self.after
        if self.severity is not None and a.severity != self.severity:
            return self._v(r, False, f"{self.alarm} raised as {a.severity}, expected {self.severity}", a.raised, a)
        if self.cleared_after is None:
            return self._v(r, True, f"{self.alarm} raised {delay:.0f} s after {local(r, self.after)}", a.raised, a)
        if a.cleared is None:
            return self._v(r, False, f"{self.alarm} raised after {delay:.0f} s but never cleared", a.raised, a)
        if not self.cleared_after <= a.cleared <= self.cleared_after + self.cleared_within_s:
            return self._v(
                r,
                False,
                f"{self.alarm} cleared at {local(r, a.cleared)}, not within {self.cleared_within_s:g} s after "
                f"{local(r, self.cleared_after)}",
                a.cleared,
                a,
            )
        clear = a.cleared - self.cleared_after
        return self._v(
            r, True, f"{self.alarm} raised {delay:.0f} s after the fault, cleared {clear:.0f} s after", a.raised, a
        )

    def _v(self, r: RunRecord, ok: bool, msg: str, t: float | None, a: AlarmInterval | None) -> Verdict:
        value = None
        if a is not None:
            value = {"severity": a.severity, "raised_after_s": round(a.raised - self.after, 1), "cleared": None}
            if a.cleared is not None:
                value["cleared"] = local(r, a.cleared)
        return Verdict(self.name, self.kind, ok, msg, Evidence(t, value))


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True)
class NoOtherAlarms:
    name: str
    allowed: tuple[str, ...]  # ids or globs ("climate.ups_*")
    window: Window
    kind: str = "no_other_alarms"

    def judge(self, r: RunRecord) -> Verdict:
        bad = sorted(
            (a for a in r.alarms if self.window.overlaps(a.raised, a.cleared) and not matches(a.id, self.allowed)),
            key=lambda a: a.raised,
        )
        if not bad:
            seen = sorted({a.id for a in r.alarms if self.window.overlaps(a.raised, a.cleared)})
            return Verdict(self.name, self.kind, True, f"only expected alarms ({', '.join(seen) or 'none'})")
        ids: dict[str, int] = {}
        for a in bad:
            ids[a.id] = ids.get(a.id, 0) + 1
        what = ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in ids.items())
        first = bad[0]
        msg = f"unexpected alarm(s): {what}; first {first.id} at {local(r, first.raised)}"
        return Verdict(self.name, self.kind, False, msg, Evidence(first.raised, first.id))


@dataclass(frozen=True)
class EnergyExpect:
    name: str
    segments: tuple[str, ...]
    tolerance: float = 0.05  # relative to the plant's energy
    tolerance_kwh: float = 0.01  # absolute floor (a segment that drew little)
    kind: str = "energy"

    def judge(self, r: RunRecord) -> Verdict:
        worst: tuple[float, str, float, float] | None = None
        for seg in self.segments:
            agent, plant = r.agent_energy_kwh.get(seg), r.plant_energy_kwh.get(seg)
            if agent is None or plant is None:
                which = "the agent's" if agent is None else "the plant's"
                return Verdict(
                    self.name, self.kind, False, f"{seg}: {which} energy was not recorded", Evidence(None, seg)
                )
            allowed = max(self.tolerance * abs(plant), self.tolerance_kwh)
            excess = abs(agent - plant) - allowed
            if worst is None or excess > worst[0]:
                worst = (excess, seg, agent, plant)
        if worst is None:
            return Verdict(self.name, self.kind, False, "no segments to compare")
        excess, seg, agent, plant = worst
        ev = Evidence(r.end, {"segment": seg, "agent_kwh": agent, "plant_kwh": plant})
        diff = f"{seg}: agent {agent:.3f} kWh, plant {plant:.3f} kWh"
        if excess > 0:
            return Verdict(self.name, self.kind, False, f"{diff}: off by more than the tolerance", ev)
        return Verdict(self.name, self.kind, True, f"{diff} (closest to its limit)", ev)


@dataclass(frozen=True)
class DeliveredExpect:
    name: str
    points: tuple[str, ...] = ("*",)
    kind: str = "delivered"

    def judge(self, r: RunRecord) -> Verdict:
        if r.deliveries is None:
            return Verdict(self.name, self.kind, False, "the run had no uplink: nothing to count", Evidence(None, None))
        chosen = {p: d for p, d in sorted(r.deliveries.items()) if matches(p, self.points)}
        if not chosen:
            return Verdict(self.name, self.kind, False, f"no readings of {', '.join(self.points)} produced")
        produced = sum(d.produced for d in chosen.values())
        for point, d in chosen.items():
            if d.missing or d.duplicates:
                value = {"point": point, "produced": d.produced, "delivered": d.delivered, "duplicates": d.duplicates}
                msg = f"{point}: {d.produced} produced, {d.missing} missing, {d.duplicates} duplicate(s)"
                return Verdict(self.name, self.kind, False, msg, Evidence(r.end, value))
        msg = f"{produced} readings of {len(chosen)} point(s) delivered exactly once"
        return Verdict(self.name, self.kind, True, msg, Evidence(r.end, produced))


@dataclass(frozen=True)
class QualityExpect:
    name: str
    point: str
    quality: str
    window: Window
    mode: str = "throughout"  # QUALITY_MODES
    kind: str = "quality"

    def judge(self, r: RunRecord) -> Verdict:
        changes = sorted(r.qualities.get(self.point, ()))
        before = [c for c in changes if c[0] <= self.window.start]
        spans = ([before[-1]] if before else []) + [c for c in changes if self.window.start < c[0] <= self.window.end]
        if not spans:
            return self._v(False, f"{self.point}: no quality known by {local(r, self.window.end)}", None, None)
        hits = [c for c in spans if c[1] == self.quality]
        misses = [c for c in spans if c[1] != self.quality]
        if self.mode == "throughout":
            if before and not misses:
                return self._v(True, f"{self.point} {self.quality} throughout", self.window.start, self.quality)
            t, q = misses[0] if misses else (self.window.start, "unknown")
            return self._v(
                False, f"{self.point} {q} at {local(r, max(t, self.window.start))}", max(t, self.window.start), q
            )
        if self.mode == "sometime":
            if hits:
                t = max(hits[0][0], self.window.start)
                return self._v(True, f"{self.point} {self.quality} at {local(r, t)}", t, self.quality)
            return self._v(False, f"{self.point} never {self.quality} in the window", self.window.end, spans[-1][1])
        if hits:
            t = max(hits[0][0], self.window.start)
            return self._v(False, f"{self.point} {self.quality} at {local(r, t)}", t, self.quality)
        return self._v(True, f"{self.point} never {self.quality}", None, None)

    def _v(self, ok: bool, msg: str, t: float | None, value: Any) -> Verdict:
        return Verdict(self.name, self.kind, ok, msg, Evidence(t, value))


@dataclass(frozen=True)
class OutputExpect:
    name: str
    output: str  # record.FAN or record.HEATER
    on: bool
    window: Window
    kind: str = "output"

    def judge(self, r: RunRecord) -> Verdict:
        samples = r.series.get(self.output, [])
        before = [s for s in samples if s[0] <= self.window.start]
        inside = ([before[-1]] if before else []) + [s for s in samples if self.window.start < s[0] <= self.window.end]
        word = "on" if self.on else "off"
        if not before:
            return Verdict(self.name, self.kind, False, f"{self.output}: no value by {local(r, self.window.start)}")
        for t, v in inside:
            if v is None or bool(v) != self.on:
                when = max(t, self.window.start)
                shown = "unknown" if v is None else ("on" if v else "off")
                msg = f"{self.output} {shown} at {local(r, when)}"
                return Verdict(self.name, self.kind, False, msg, Evidence(when, v))
        return Verdict(
            self.name, self.kind, True, f"{self.output} {word} throughout", Evidence(self.window.start, word)
        )


def judge_all(expectations: list[Any], r: RunRecord) -> list[Verdict]:
    """Every expectation's verdict, in order."""
    return [e.judge(r) for e in expectations]
