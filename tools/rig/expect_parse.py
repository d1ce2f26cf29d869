"""`[[expect]]` tables of a scenario file to expectations (tools/rig/expect.py).

Every name an expectation uses must exist in the cabinet config: segments of
`[lighting]`, points the agent keeps (`agent_points`, as `cabinet config check`
counts them), alarm ids the config's controllers can raise (`alarm_ids`). Windows
are `from`/`to` (default the whole run) or one instant `at`, as times of
tools/rig/timespec.py, inside the run.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from agent.config.model import Config
from agent.config.schema import MISSING, F, Section
from agent.control.climate.alarms import alarm_definitions
from agent.control.lighting.alarms import READBACK_SEVERITY
from agent.control.lighting.monitor import KINDS as FAILURE_KINDS
from agent.model import Quality
from tools.rig.expect import (
    QUALITY_MODES,
    AlarmExpect,
    DeliveredExpect,
    EnergyExpect,
    Expectation,
    NoOtherAlarms,
    OutputExpect,
    QualityExpect,
    SegmentExpect,
    Window,
    matches,
)
from tools.rig.timespec import DURATION_HELP, TIME_HELP, TimeContext, TimeError, format_duration, parse_duration

EXPECT_KINDS = ("segment", "alarm", "no_other_alarms", "energy", "delivered", "quality", "output")
QUALITIES = tuple(q.value for q in Quality)
STARTUP = "start+1m"  # a quality window's default start: the agent's first polls are done by then


def alarm_ids(config: Config) -> frozenset[str]:
    """Every alarm id the agent can raise with `config` (docs/climate.md, docs/lighting.md)."""
    ids: set[str] = set()
    if config.climate is not None:
        ids |= {d.id for d in alarm_definitions(config.climate)}
    light = config.lighting
    if light is not None:
        ids |= {"lighting.lux_sensor", "lighting.clock", "lighting.failsafe"}
        ids |= {f"lighting.boost.{p.name}" for p in light.programs.values() if getattr(p, "boost", None)}
        for seg in light.segments:
            ids |= {f"lighting.{seg.name}.{k}" for k in (*READBACK_SEVERITY, *FAILURE_KINDS)}
    return frozenset(ids)


def point_names(config: Config, uplink: bool) -> frozenset[str]:
    from agent.runtime.app import agent_points  # deferred: the runtime, only for the names of its points

    return frozenset(p.name for p in agent_points(config, uplink=uplink))


def _unknown(what: str, name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
    return f"no such {what} in this config" + (f"; did you mean {close[0]!r}?" if close else "")


class _Ctx:
    def __init__(self, s: Section, t: TimeContext, config: Config, uplink: bool, ids: frozenset[str]) -> None:
        self.s, self.t, self.config, self.uplink, self.ids = s, t, config, uplink, ids
        self.segments = tuple(seg.name for seg in config.lighting.segments) if config.lighting else ()

    def time(self, key: str, default: Any = MISSING) -> tuple[float | None, str]:
        v = self.s.get(key, F("any", default=default, help=TIME_HELP))
        if v is None:
            return None, ""
        try:
            return self.t.resolve(v), str(v)
        except TimeError as e:
            self.s.error(key, v, TIME_HELP, str(e))
            return None, str(v)

    def duration(self, key: str, default: Any) -> float | None:
        v = self.s.get(key, F("any", default=default, help=DURATION_HELP))
        try:
            return parse_duration(v)
        except TimeError as e:
            self.s.error(key, v, DURATION_HELP, str(e))
            return None

    def window(self, first: str = "start") -> Window | None:
        if "at" in self.s.data:
            if "from" in self.s.data or "to" in self.s.data:
                self.s.error("at", self.s.data["at"], "at, or from and to", "give at or from/to, not both")
            t, text = self.time("at")
            return None if t is None else Window(t, t, text)
        whole = "from" not in self.s.data and "to" not in self.s.data
        a, ta = self.time("from", first)
        b, tb = self.time("to", "end")
        if a is None or b is None:
            return None
        if b < a:
            self.s.error("to", tb, f"a time at or after from ({ta})", "the window ends before it starts")
            return None
        return Window(a, b, "over the run" if whole else f"{ta} .. {tb}")

    def segment(self, key: str = "segment") -> str | None:
        return self.s.get(key, F("str", choices=self.segments or ("<no [lighting] segments>",)))


def _segment(c: _Ctx) -> Expectation | None:
    seg = c.segment()
    state = c.s.get("state", F("str", choices=("on", "off")))
    level = c.s.get("level", F("number", default=None, min=0, max=100, help="percent, when on"))
    tol = c.s.get("level_tolerance", F("number", default=1.0, min=0, max=100, help="percent"))
    reason = c.s.get(
        "reason", F("str", default=None, help='a prefix of the reason: "program:", "override", "failsafe:"')
    )
    if level is not None and state == "off":
        c.s.error("level", level, 'no level with state = "off"', "an off segment has no level")
    w = c.window()
    if seg is None or state is None or w is None:
        return None
    lv = "" if level is None else f" {level:g}%"
    name = f"{seg} {state}{lv} {w.text}"
    return SegmentExpect(name, seg, state == "on", w, None if level is None else float(level), float(tol), reason)


def _alarm_id(c: _Ctx, key: str) -> str | None:
    aid = c.s.get(key, F("str", help="an alarm id the config's agent can raise"))
    if aid is not None and aid not in c.ids:
        c.s.error(
            key, aid, "an alarm id of this config (docs/climate.md, docs/lighting.md)", _unknown("alarm", aid, c.ids)
        )
        return None
    return aid


def _alarm(c: _Ctx) -> Expectation | None:
    aid = _alarm_id(c, "alarm")
    after, ta = c.time("after")
    within = c.duration("within", "5m")
    cleared, tc = c.time("cleared_after", None)
    cleared_within = c.duration("cleared_within", "5m")
    severity = c.s.get("severity", F("str", default=None, choices=("warning", "critical")))
    if cleared is not None and after is not None and cleared < after:
        c.s.error("cleared_after", tc, f"a time at or after `after` ({ta})", "cleared before it is raised")
        return None
    if aid is None or after is None or within is None or cleared_within is None:
        return None
    name = f"{aid} raised within {format_duration(within)} after {ta}"
    if cleared is not None:
        name += f", cleared within {format_duration(cleared_within)} after {tc}"
    return AlarmExpect(name, aid, after, within, cleared, cleared_within, severity)


def _no_other(c: _Ctx, expected: frozenset[str]) -> Expectation | None:
    allowed = c.s.get("allowed", F("list", default=[], items="str", help="alarm ids or globs (climate.ups_*)"))
    w = c.window()
    if allowed is None or w is None:
        return None
    for i, pat in enumerate(allowed):
        if not any(matches(a, (pat,)) for a in c.ids):
            c.s.error(
                f"allowed[{i}]", pat, "an alarm id (or glob) of this config", "matches no alarm this agent can raise"
            )
            return None
    listed = tuple(dict.fromkeys([*allowed, *sorted(expected)]))
    return NoOtherAlarms(f"no alarms but {', '.join(listed) or 'none'} {w.text}", listed, w)


def _energy(c: _Ctx) -> Expectation | None:
    segs = c.s.get("segments", F("list", default=list(c.segments), items="str", help="segments of [lighting]"))
    tol = c.s.get("tolerance", F("number", default=0.05, min=0, max=1, help="share of the plant's energy"))
    tol_kwh = c.s.get("tolerance_kwh", F("number", default=0.01, min=0, help="kWh, at least"))
    if segs is None or tol is None or tol_kwh is None:
        return None
    bad = [x for x in segs if x not in c.segments]
    if bad or not segs:
        c.s.error("segments", segs, ", ".join(c.segments) or "none", f"no segment {bad[0]!r}" if bad else "empty")
        return None
    return EnergyExpect(f"energy of {', '.join(segs)} within {tol:.0%} of the plant's", tuple(segs), tol, tol_kwh)


def _delivered(c: _Ctx) -> Expectation | None:
    pts = c.s.get("points", F("list", default=["*"], items="str", help="point names or globs"))
    if not c.uplink:
        c.s.error("kind", "delivered", "set [scenario] uplink = true", "counting deliveries needs the uplink")
        return None
    if pts is None:
        return None
    names = point_names(c.config, True)
    for i, pat in enumerate(pts):
        if not any(matches(n, (pat,)) for n in names):
            c.s.error(f"points[{i}]", pat, "a point (or glob) of this config", "matches no point")
            return None
    return DeliveredExpect(f"every reading of {', '.join(pts)} delivered exactly once", tuple(pts))


def _quality(c: _Ctx) -> Expectation | None:
    point = c.s.get("point", F("str", help="a point of the config"))
    quality = c.s.get("quality", F("str", choices=QUALITIES))
    mode = c.s.get("mode", F("str", default="throughout", choices=QUALITY_MODES))
    w = c.window(STARTUP)
    if point is not None and point not in point_names(c.config, c.uplink):
        names = point_names(c.config, c.uplink)
        c.s.error("point", point, "a point of this config (cabinet status lists them)", _unknown("point", point, names))
        return None
    if point is None or quality is None or mode is None or w is None:
        return None
    return QualityExpect(f"{point} {quality} {mode} {w.text}", point, quality, w, mode)


def _output(c: _Ctx) -> Expectation | None:
    have = []
    if c.config.climate is not None:
        have = [
            n for n, present in (("fan", bool(c.config.climate.fans)), ("heater", c.config.climate.heater)) if present
        ]
    out = c.s.get("output", F("str", choices=tuple(have) or ("<no fan or heater in [climate]>",)))
    state = c.s.get("state", F("str", choices=("on", "off")))
    w = c.window()
    if out is None or state is None or w is None:
        return None
    return OutputExpect(f"{out} {state} {w.text}", out, state == "on", w)


_KINDS: dict[str, Callable[[_Ctx], Expectation | None]] = {
    "segment": _segment,
    "alarm": _alarm,
    "energy": _energy,
    "delivered": _delivered,
    "quality": _quality,
    "output": _output,
}


def parse_expect(
    s: Section,
    ctx: TimeContext,
    config: Config,
    uplink: bool,
    ids: frozenset[str],
    expected_alarms: frozenset[str],
) -> Expectation | None:
    """One [[expect]] table; None after recording its issues. `expected_alarms`: the ids
    of the file's `alarm` expectations, which `no_other_alarms` allows as well."""
    before = len(s.issues.items)
    kind = s.get("kind", F("str", choices=EXPECT_KINDS))
    name = s.get("name", F("str", default=None, help="the test case's name (default: made from the keys)"))
    c = _Ctx(s, ctx, config, uplink, ids)
    if kind is None:
        s.finish(_ALL_KEYS)
        return None
    e = _no_other(c, expected_alarms) if kind == "no_other_alarms" else _KINDS[kind](c)
    s.finish()
    if e is None or len(s.issues.items) != before:
        return None
    if name:
        e = dataclasses.replace(e, name=name)  # type: ignore[type-var]
    return e


_ALL_KEYS = (
    "segment", "state", "level", "level_tolerance", "reason", "at", "from", "to", "alarm", "after", "within",
    "cleared_after", "cleared_within", "severity", "allowed", "segments", "tolerance", "tolerance_kwh", "points",
    "point", "quality", "mode", "output",
)  # fmt: skip
