"""The lighting controller: one plain object that decides every segment, every step.

Owns the order of precedence and the controller's interface to the asyncio wrapper.

    ctl = LightingController(settings, latitude=52.52, longitude=13.41, elevation=34,
                             timezone="Europe/Berlin")        # or .from_config(config)
    ctl.points()                    # point -> role: what to put into the snapshot
    result = ctl.step(mono, utc, snapshot)
        # mono: monotonic seconds (delays, hold times, cool-down)
        # utc: aware datetime or UTC seconds, None when the clock is unknown/untrusted
        # snapshot: point -> (value, quality, age) (agent.model.Quality works)
    result.decisions   # segment -> Decision(on, level, reason, detail, target)
    result.writes      # [Write(point, value, segment, why)]: write these, then read back
    result.events      # [Event]: decision changes with their reason, modes, overrides ...
    result.conditions  # [alarm_model.Condition]: alarm conditions whose state changed this step
    ctl.set_override(...), ctl.cancel_override(...)  # the local API / cloud commands
    ctl.overrides.to_dict() / ctl.restore_overrides(d, utc)   # persist after every change
    ctl.state() / ctl.restore(d)    # burning hours, switches, energy (persist periodically)
    ctl.conditions(), ctl.status(), ctl.refine_site(fix)

Precedence per segment (first that applies):
  1. override (last wins, until its expiry);
  2. fail-safe: clock unknown -> the photocell alone, at 100 % ("failsafe:clock-unknown");
     no clock and no trusted photocell -> on at 100 % ("failsafe:no-clock-no-photocell");
  3. the calendar's program for the calendar day (astro/absolute/sensor period,
     fixed-time and astro steps; a degraded photocell falls back to the astro clock),
     with boost combined by `max`.
Then actuation (cool-down, warm-up, ramps, read-back), failure detection and
accounting per segment (lighting_actuation, lighting_monitor); the alarm
conditions are lighting_alarms', local time and the calendar day lighting_time's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from agent.control.alarms.model import Condition
from agent.control.lighting.actuation import NO_VALUE, SegmentActuation, good_value
from agent.control.lighting.alarms import BLIND, CLOCK_UNKNOWN, NORMAL, LightingConditions
from agent.control.lighting.astro import AstroClock
from agent.control.lighting.model import Decision, Event, LightingConfig, LightingSettings, StepResult, Write
from agent.control.lighting.monitor import Monitor
from agent.control.lighting.overrides import Override, Overrides
from agent.control.lighting.photocell import Photocell
from agent.control.lighting.poles import PoleWatch
from agent.control.lighting.programs import BoostState, Outcome, PhotocellView, Program, Schedule
from agent.control.lighting.timing import LocalDay, utc_seconds

STATE_FORMAT = 1


class LightingController:
    def __init__(
        self,
        settings: LightingSettings,
        *,
        latitude: float,
        longitude: float,
        elevation: float = 0.0,
        timezone: str = "UTC",
    ) -> None:
        self.settings = settings
        self.astro = AstroClock(latitude, longitude, elevation, timezone)
        self.schedule = Schedule(self.astro)
        self.photocell = Photocell(settings.photocell) if settings.photocell else None
        names = [s.name for s in settings.segments]
        self.overrides = Overrides(names, settings.override_expiry_s)
        self._act = {s.name: SegmentActuation(s, settings.actuation) for s in settings.segments}
        self._mon = {s.name: Monitor(s, settings.actuation, settings.failure) for s in settings.segments}
        self._poles = {s.name: PoleWatch(s, settings.failure) for s in settings.segments if s.poles}
        self._boosts = {p.name: BoostState(p.boost) for p in settings.programs.values() if p.boost}
        self._decisions: dict[str, Decision] = {}
        self._conditions = LightingConditions()
        self._pending: list[Event] = []
        self._mode: str | None = None
        self._chosen: dict[str, tuple[dt.date, Program, bool]] = {}  # calendar -> (day, program, uses photocell)
        self._elev: tuple[float, str] | None = None  # (mono, phase) of the last sample of the sun's phase
        self._local = LocalDay(self.astro.tz, settings.day_start).at  # UTC -> (local time of day, calendar day)
        self._memo: dict[str, tuple[Program, Outcome]] = {}  # calendar -> its program and outcome in this step
        self._view: PhotocellView | None = None  # the last one (reused while the same)
        # segment -> (outcome, its decision, program, want_on, target) of the last decision by a program
        self._fast: dict[str, tuple[Outcome | None, Decision, Program, bool, float]] = {}
        self._segs = [(s.name, s.calendar, self._act[s.name], self._mon[s.name]) for s in settings.segments]

    @classmethod
    def from_config(cls, config: LightingConfig) -> LightingController:
        """From an agent.config.Config with a [lighting] section (ValueError without one)."""
        site, settings = config.site, config.lighting
        if settings is None:
            raise ValueError("the config has no [lighting] section (or it is disabled)")
        return cls(
            settings,
            latitude=site.latitude,
            longitude=site.longitude,
            elevation=site.elevation,
            timezone=site.timezone,
        )

    def points(self) -> dict[str, str]:
        return self.settings.points()

    # -- the step ---------------------------------------------------------------------------------

    def step(self, mono: float, utc: dt.datetime | float | None, image: Mapping[str, Any]) -> StepResult:
        t = utc_seconds(utc)
        events, self._pending = self._pending, []
        changed: list[Condition] = []
        view = self._sense(mono, t, image, events, changed)
        mode = self._enter_mode(t, view, events, changed)
        overrides = self._prune_overrides(mono, t, events)
        self._motion(mono, image, changed)
        local = self._local(t) if t is not None else None
        memo = self._memo
        memo.clear()

        decisions: dict[str, Decision] = {}
        writes: list[Write] = []
        last, fasts = self._decisions, self._fast
        for name, calendar, act, mon in self._segs:
            prev = last.get(name)
            ov = self.overrides.active(name, t, mono) if overrides else None
            if ov is None and mode is NORMAL:
                assert t is not None and local is not None  # NORMAL: the clock is known
                prog, out = memo.get(calendar) or self._program(calendar, t, local[0], local[1], view)
                fast = fasts.get(name)  # the same outcome as when `prev` was decided, and nothing moving:
                if (
                    fast is not None
                    and fast[0] is out
                    and fast[1] is prev
                    and fast[2] is prog
                    and act.settled(mono, fast[3], fast[4])
                ):
                    act.switched = False
                    d = fast[1]
                else:
                    d = self._decide(name, act, prev, None, mono, mode, view, prog, out)
            else:
                d = self._decide(name, act, prev, ov, mono, mode, view, None, None)
            decisions[name] = d
            w = act.writes(mono, image)
            if w:
                writes += w
            if d is not prev or act.readback_changed:
                self._changes(name, act, prev, d, events, changed)
            self._metered(name, act, mon, d, mono, t, image, events, changed)
        self._decisions = decisions
        return StepResult(decisions, writes, events, changed, mode)

    def _sense(
        self, mono: float, t: float | None, image: Mapping[str, Any], events: list[Event], changed: list[Condition]
    ) -> PhotocellView | None:
        """Feed the photocell; what programs see of it (None: no photocell)."""
        pc = self.photocell
        if pc is None:
            return None
        was = pc.fault
        pc.update(mono, image.get(pc.s.point), self._phase(mono, t))
        if pc.fault != was:
            msg = (
                f"lux sensor {pc.s.point}: {pc.fault}; lighting runs on the astronomical clock"
                if pc.fault
                else f"lux sensor {pc.s.point} trusted again"
            )
            events.append(Event("photocell", msg, data={"fault": pc.fault}))
            self._conditions.photocell(changed, msg, pc.fault is not None)
        view, healthy = self._view, pc.healthy
        if view is None or view.healthy != healthy or view.dark is not pc.dark:
            view = self._view = PhotocellView(healthy, pc.dark)
        return view

    def _enter_mode(
        self, t: float | None, view: PhotocellView | None, events: list[Event], changed: list[Condition]
    ) -> str:
        """The mode now: normal with a clock, else a fail-safe; a new one is an event and conditions."""
        mode = NORMAL if t is not None else (CLOCK_UNKNOWN if view is not None and view.healthy else BLIND)
        if mode != self._mode:
            events.append(Event("mode", f"lighting mode {mode}", data={"mode": mode, "was": self._mode}))
            self._conditions.mode(changed, mode, t is not None)
            self._mode = mode
        return mode

    def _prune_overrides(self, mono: float, t: float | None, events: list[Event]) -> bool:
        """Drop expired overrides (each an event); True when some override is left."""
        if len(self.overrides) == 0:
            return False
        for seg, expired in self.overrides.prune(t, mono):
            events.append(Event("override", f"{expired.describe()} expired", seg, {"action": "expired"}))
        return len(self.overrides) > 0

    def _motion(self, mono: float, image: Mapping[str, Any], changed: list[Condition]) -> None:
        """Feed the boost programs' motion inputs; a stuck one is a condition."""
        for name, b in self._boosts.items():
            v = good_value(image.get(b.boost.point))
            capped = b.capped
            b.update(mono, v, v is not NO_VALUE)
            if b.capped != capped:
                self._conditions.boost(changed, name, b.boost.point, b.boost.max_s, b.capped)

    def _program(
        self, calendar: str, t: float, tod: float, day: dt.date, view: PhotocellView | None
    ) -> tuple[Program, Outcome]:
        """The calendar's program for `day` and its outcome now (memoised for this step)."""
        last = self._chosen.get(calendar)
        if last is not None and last[0] == day:
            prog, pc = last[1], last[2]
        else:
            prog = self.settings.programs[self.settings.calendars[calendar].program_for(day)[0]]
            pc = prog.uses_photocell
            self._chosen[calendar] = (day, prog, pc)
        po = self._memo[calendar] = (prog, self.schedule.outcome(prog, t, tod, view if pc else None))
        return po

    def _decide(
        self,
        name: str,
        act: SegmentActuation,
        prev: Decision | None,
        ov: Override | None,
        mono: float,
        mode: str,
        view: PhotocellView | None,
        prog: Program | None,
        out: Outcome | None,
    ) -> Decision:
        ramp_up = ramp_down = 0.0
        if ov is not None:
            want_on, target, reason, detail = ov.on, ov.target, "override", ov.source
        elif mode == CLOCK_UNKNOWN:
            assert view is not None  # CLOCK_UNKNOWN: a healthy photocell
            want_on, target, reason, detail = bool(view.dark), 100.0, mode, "photocell"
        elif mode == BLIND:
            want_on, target, reason, detail = True, 100.0, mode, "lights on"
        else:
            assert prog is not None and out is not None
            target, detail = out.level, out.how
            if out.active and prog.boost is not None:
                b = self._boosts[prog.name]
                if b.active(mono):
                    boosted = b.apply(target)
                    if boosted != target:
                        target, detail = boosted, detail + "+boost"
            want_on = out.active and target > 0
            target = target if want_on else 0.0
            reason, ramp_up, ramp_down = f"program:{prog.name}", prog.ramp_up_s, prog.ramp_down_s
        on, output, note = act.apply(mono, want_on, target, ramp_up, ramp_down)
        if note:
            detail = f"{detail}+{note}"
        level = None if act.seg.dim is None else output
        if (
            prev is not None
            and prev.on == on
            and prev.level == level
            and prev.reason == reason
            and prev.detail == detail
            and prev.target == target
        ):
            d = prev
        else:
            d = Decision(name, on, level, reason, detail, target)
        if prog is not None and not note and prog.boost is None:
            self._fast[name] = (out, d, prog, want_on, target)  # see step()
        return d

    def _changes(
        self,
        name: str,
        act: SegmentActuation,
        prev: Decision | None,
        d: Decision,
        events: list[Event],
        changed: list[Condition],
    ) -> None:
        """Events for a changed decision, conditions for a changed read-back."""
        if d is not prev and (
            prev is None
            or prev.on != d.on
            or prev.reason != d.reason
            or (prev.target != d.target and d.on and d.level is not None)
        ):
            data = {"on": d.on, "level": d.level, "reason": d.reason, "detail": d.detail}
            if prev is None or prev.on != d.on:
                events.append(
                    Event("switched", f"{name} {'on' if d.on else 'off'} ({d.reason}, {d.detail})", name, data)
                )
            elif prev.reason != d.reason:
                events.append(Event("reason", f"{name} now by {d.reason} ({d.detail})", name, data))
            else:
                events.append(Event("level", f"{name} to {d.target:g} % ({d.reason}, {d.detail})", name, data))
        if act.readback_changed:
            act.readback_changed = False
            self._conditions.readback(changed, name, act.readback)

    def _metered(
        self,
        name: str,
        act: SegmentActuation,
        mon: Monitor,
        d: Decision,
        mono: float,
        t: float | None,
        image: Mapping[str, Any],
        events: list[Event],
        changed: list[Condition],
    ) -> None:
        """Failure detection (at steady state only) and accounting, from the segment's meter."""
        flipped = mon.judge(mono, d.on, act.level, act.steady(mono), image)
        watch = self._poles.get(name)
        if flipped and watch is not None and watch.tail is not None:  # silent poles: the cable alarm tells it
            flipped = [k for k in flipped if k != "lamp_failure" or not mon.checks[k].active]
        if flipped:
            self._conditions.judged(changed, name, mon, flipped)
        if watch is not None:
            exp = mon.seg.expected_at(act.level) if d.on else 0.0
            for cid, severity, active, msg in watch.judge(mono, d.on, act.steady(mono), image, mon.power, exp):
                self._conditions.set(changed, cid, severity, active, msg, name)
        mon.account(mono, t, d.on, act.switched and d.on, image)
        if mon.notes:
            for note in mon.notes:
                events.append(Event("counter", f"{name}: {note}", name))
            mon.notes.clear()

    def _phase(self, mono: float, t: float | None) -> str | None:
        """ "day" / "night" / "twilight" from the solar elevation (sampled every 5 minutes)."""
        if t is None:
            self._elev = None
            return None
        if self._elev is None or abs(mono - self._elev[0]) >= 300.0:
            self._elev = (mono, self.astro.phase(t))
        return self._elev[1]

    # -- overrides ----------------------------------------------------------------------------------

    def set_override(
        self,
        *,
        on: bool,
        mono: float,
        utc: dt.datetime | float | None,
        level: float | None = None,
        segments: Iterable[str] | str | None = None,
        start: dt.datetime | float | None = None,
        expires: dt.datetime | float | None = None,
        duration_s: float | None = None,
        forever: bool = False,
        source: str = "local",
        note: str = "",
    ) -> Override:
        """Set an override (ValueError for a bad request); takes effect at the next step."""
        ov = self.overrides.set(
            on=on,
            utc=utc_seconds(utc),
            mono=mono,
            level=level,
            segments=[segments] if isinstance(segments, str) else segments,
            start=utc_seconds(start),
            expires=utc_seconds(expires),
            duration_s=duration_s,
            forever=forever,
            source=source,
            note=note,
        )
        for seg in self.overrides.segments:
            if self.overrides.items().get(seg) is ov:
                self._pending.append(
                    Event("override", f"{seg}: {ov.describe()}", seg, {"action": "set", **ov.to_dict()})
                )
        return ov

    def cancel_override(self, segments: Iterable[str] | str | None = None, source: str = "local") -> list[str]:
        gone = self.overrides.cancel([segments] if isinstance(segments, str) else segments)
        for seg in gone:
            self._pending.append(
                Event(
                    "override", f"{seg}: override cancelled by {source}", seg, {"action": "cancelled", "source": source}
                )
            )
        return gone

    def restore_overrides(self, data: Mapping[str, Any], utc: dt.datetime | float | None) -> list[str]:
        """Load persisted overrides (Overrides.to_dict form); returns notes on what was dropped."""
        self.overrides, notes = Overrides.from_dict(
            data, self.overrides.segments, utc_seconds(utc), self.settings.override_expiry_s
        )
        for n in notes:
            self._pending.append(Event("override", n, data={"action": "dropped"}))
        return notes

    # -- state, status, site ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Accounting to persist (JSON-safe)."""
        return {"format": STATE_FORMAT, "segments": {n: m.state() for n, m in self._mon.items()}}

    def restore(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
            return
        segs = data.get("segments")
        for name, d in segs.items() if isinstance(segs, Mapping) else ():
            if name in self._mon and isinstance(d, Mapping):
                self._mon[name].restore(d)

    def conditions(self) -> list[Condition]:
        return self._conditions.all()

    def status(self, utc: dt.datetime | float | None = None) -> dict[str, Any]:
        t = utc_seconds(utc)
        return {
            "mode": self._mode,
            "segments": {
                n: {
                    **(d.to_dict() if (d := self._decisions.get(n)) else {}),
                    "power_w": self._mon[n].power,
                    **self._mon[n].state(),
                }
                for n in self._mon
            },
            "photocell": self.photocell.status() if self.photocell else None,
            "night": self.astro.night_at(t).as_dict() if t is not None else None,
            "site": {
                "latitude": self.astro.latitude,
                "longitude": self.astro.longitude,
                "elevation": self.astro.elevation_m,
                "timezone": self.astro.timezone,
                "note": self.astro.refine_note,
            },
            "overrides": {seg: ov.to_dict() for seg, ov in self.overrides.items().items()},
            "conditions": self._conditions.shown(),
        }

    def refine_site(self, fix: Any) -> bool:
        """Move the site to a GPS fix (see AstroClock.refine); caches are rebuilt when it moved."""
        moved = self.astro.refine(fix)
        if moved:
            self.schedule.clear()
            self._pending.append(
                Event(
                    "site",
                    self.astro.refine_note or "site refined",
                    data={"latitude": self.astro.latitude, "longitude": self.astro.longitude},
                )
            )
        return moved
