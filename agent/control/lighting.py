"""The lighting controller: one plain object that decides every segment, every step.

Owns the order of precedence and the controller's interface to the asyncio wrapper.

    ctl = LightingController(settings, latitude=52.52, longitude=13.41, elevation=34,
                             timezone="Europe/Berlin")        # or .from_config(config)
    ctl.points()                    # point -> role: what to put into the snapshot
    result = ctl.step(mono, utc, snapshot)
        # mono: monotonic seconds (delays, hold times, cool-down)
        # utc: aware datetime or UTC seconds, None when the clock is unknown/untrusted
        # snapshot: point -> (value, quality, age) (Sample; agent.model.Quality works)
    result.decisions   # segment -> Decision(on, level, reason, detail, target)
    result.writes      # [Write(point, value, segment, why)]: write these, then read back
    result.events      # [Event]: decision changes with their reason, modes, overrides ...
    result.conditions  # [Condition]: alarm conditions whose state changed this step
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
accounting per segment (lighting_actuation, lighting_monitor).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from agent.control.astro import AstroClock
from agent.control.lighting_actuation import NO_VALUE, Actuator, good_value
from agent.control.lighting_model import Condition, Decision, Event, LightingSettings, StepResult, Write
from agent.control.lighting_monitor import SEVERITY, Monitor
from agent.control.overrides import Override, Overrides
from agent.control.photocell import Photocell
from agent.control.programs import BoostState, Outcome, PhotocellView, Program, Schedule

UTC = dt.UTC
STATE_FORMAT = 1
NORMAL, CLOCK_UNKNOWN, BLIND = "normal", "failsafe:clock-unknown", "failsafe:no-clock-no-photocell"
READBACK_SEVERITY = {"relay_failure": "critical", "contactor_failure": "critical", "dimming_failure": "warning"}


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
        self._act = {s.name: Actuator(s, settings.actuation) for s in settings.segments}
        self._mon = {s.name: Monitor(s, settings.actuation, settings.failure) for s in settings.segments}
        self._boosts = {p.name: BoostState(p.boost) for p in settings.programs.values() if p.boost}
        self._decisions: dict[str, Decision] = {}
        self._conditions: dict[str, Condition] = {}
        self._pending: list[Event] = []
        self._mode: str | None = None
        self._chosen: dict[str, tuple[dt.date, Program, bool]] = {}  # calendar -> (day, program, uses photocell)
        self._elev: tuple[float, str] | None = None  # (mono, phase) of the last sample of the sun's phase
        self._day_start_s = settings.day_start.hour * 3600 + settings.day_start.minute * 60
        self._offset: tuple[int, float] = (-1, 0.0)  # (15-minute UTC slot, UTC offset in it)
        self._lw: tuple = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, None)  # _local's window (see there)
        self._memo: dict[str, tuple[Program, Outcome]] = {}  # calendar -> its program and outcome in this step
        self._view: PhotocellView | None = None  # the last one (reused while the same)
        self._fast: dict[str, tuple] = {}  # segment -> (outcome, its decision, program, want_on, target)
        self._segs = [(s.name, s.calendar, self._act[s.name], self._mon[s.name]) for s in settings.segments]
        self._actuation = settings.actuation

    @classmethod
    def from_config(cls, config: Any) -> LightingController:
        """From an agent.config.Config with a [lighting] section."""
        site = config.site
        return cls(
            config.lighting,
            latitude=site.latitude,
            longitude=site.longitude,
            elevation=site.elevation,
            timezone=site.timezone,
        )

    def points(self) -> dict[str, str]:
        return self.settings.points()

    # -- the step ---------------------------------------------------------------------------------

    def step(self, mono: float, utc: dt.datetime | float | None, image: Mapping[str, Any]) -> StepResult:
        t = _ts(utc)
        events, self._pending = self._pending, []
        changed: list[Condition] = []
        pc = self.photocell
        if pc is not None:
            was = pc.fault
            pc.update(mono, image.get(pc.s.point), self._phase(mono, t))
            if pc.fault != was:
                msg = (
                    f"lux sensor {pc.s.point}: {pc.fault}; lighting runs on the astronomical clock"
                    if pc.fault
                    else f"lux sensor {pc.s.point} trusted again"
                )
                events.append(Event("photocell", msg, data={"fault": pc.fault}))
                self._cond(changed, "lighting.lux_sensor", "warning", pc.fault is not None, msg)
            view, healthy = self._view, pc.healthy
            if view is None or view.healthy != healthy or view.dark is not pc.dark:
                view = self._view = PhotocellView(healthy, pc.dark)
        else:
            view = None

        mode = NORMAL if t is not None else (CLOCK_UNKNOWN if view is not None and view.healthy else BLIND)
        if mode != self._mode:
            events.append(Event("mode", f"lighting mode {mode}", data={"mode": mode, "was": self._mode}))
            self._cond(
                changed,
                "lighting.clock",
                "warning",
                t is None,
                "clock unknown: lighting runs on the photocell"
                if mode == CLOCK_UNKNOWN
                else "clock unknown"
                if t is None
                else "clock known",
            )
            self._cond(
                changed,
                "lighting.failsafe",
                "critical",
                mode == BLIND,
                "no clock and no trusted photocell: all segments on" if mode == BLIND else "fail-safe left",
            )
            self._mode = mode

        overrides = len(self.overrides) > 0
        if overrides:
            for seg, ov in self.overrides.prune(t, mono):
                events.append(Event("override", f"{ov.describe()} expired", seg, {"action": "expired"}))
            overrides = len(self.overrides) > 0
        for name, b in self._boosts.items():
            v = good_value(image.get(b.boost.point))
            was = b.capped
            b.update(mono, v, v is not NO_VALUE)
            if b.capped != was:
                self._cond(
                    changed,
                    f"lighting.boost.{name}",
                    "warning",
                    b.capped,
                    f"motion input {b.boost.point} detecting for more than {b.boost.max_s:g} s: "
                    f"boost ignored (sensor stuck?)"
                    if b.capped
                    else "motion input back to normal",
                )

        tod = day = None
        if t is not None:
            tod, day = self._local(t)
        memo = self._memo
        memo.clear()

        decisions: dict[str, Decision] = {}
        writes: list[Write] = []
        last, fasts, a = self._decisions, self._fast, self._actuation
        for name, calendar, act, mon in self._segs:
            prev = last.get(name)
            ov = self.overrides.active(name, t, mono) if overrides else None
            if ov is None and mode is NORMAL:
                prog, out = memo.get(calendar) or self._program(calendar, t, tod, day, view)  # type: ignore[arg-type]
                fast = fasts.get(name)  # the same outcome as when `prev` was decided, and nothing moving:
                if (
                    fast is not None
                    and fast[0] is out
                    and fast[1] is prev
                    and fast[2] is prog
                    and act.settled(mono, fast[3], fast[4])
                ):
                    act.switched = False
                    d = prev  # type: ignore[assignment]
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
            # failure detection at steady state: settled since the last switch or level change, not warming up
            changed_at, level_changed = act.changed_at, act.level_changed
            steady = (
                changed_at is not None
                and mono - (level_changed if level_changed > changed_at else changed_at) >= a.settle_s
                and not (act.on is True and act.on_since is not None and mono - act.on_since < a.warm_up_s)
            )
            flipped = mon.judge(mono, d.on, act.level, steady, image)
            if flipped:
                self._judged(name, mon, flipped, changed)
            mon.account(mono, t, d.on, act.switched and d.on, image)
            if mon.notes:
                for note in mon.notes:
                    events.append(Event("counter", f"{name}: {note}", name))
                mon.notes.clear()
        self._decisions = decisions
        return StepResult(decisions, writes, events, changed, mode)

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
        act: Actuator,
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
            want_on, target, reason, detail = bool(view.dark), 100.0, mode, "photocell"  # type: ignore[union-attr]
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
        on, level, note = act.apply(mono, want_on, target, ramp_up, ramp_down)
        if note:
            detail = f"{detail}+{note}"
        if act.seg.dim is None:
            level = None  # type: ignore[assignment]
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
        act: Actuator,
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
            for kind, msg in act.readback.items():
                self._cond(
                    changed,
                    f"lighting.{name}.{kind}",
                    READBACK_SEVERITY[kind],
                    msg is not None,
                    msg or f"{kind.replace('_', ' ')} cleared",
                    name,
                )

    def _judged(self, name: str, mon: Monitor, flipped: list[str], changed: list[Condition]) -> None:
        for kind in flipped:
            chk = mon.checks[kind]
            self._cond(
                changed,
                f"lighting.{name}.{kind}",
                SEVERITY[kind],
                chk.active,
                chk.message if chk.active else f"{kind.replace('_', ' ')} cleared",
                name,
            )

    def _cond(
        self, changed: list[Condition], cid: str, severity: str, active: bool, message: str, segment: str | None = None
    ) -> None:
        old = self._conditions.get(cid)
        if old is None and not active:
            return
        if old is not None and old.active == active:
            return
        c = Condition(cid, severity, active, message, segment)
        self._conditions[cid] = c
        changed.append(c)

    def _local(self, t: float) -> tuple[float, dt.date]:
        """(local time of day in seconds, calendar day) at UTC `t`; the UTC offset is looked up
        once per 15-minute slot (zone transitions fall on quarter hours). Cached: inside one slot
        and one stretch of local time with the same date and calendar day, only an addition."""
        t_lo, t_hi, off, lo, hi, base, day = self._lw
        if t_lo <= t < t_hi:
            local = t + off
            if lo <= local < hi:
                return local - base, day  # = divmod(local, 86400)[1]: both exact
        slot = int(t // 900)
        if slot != self._offset[0]:
            o = dt.datetime.fromtimestamp(slot * 900.0, self.astro.tz).utcoffset()
            self._offset = (slot, o.total_seconds() if o is not None else 0.0)
        off = self._offset[1]
        local = t + off
        days, tod = divmod(local, 86400.0)
        base = days * 86400.0
        lo, hi = (
            (base, base + self._day_start_s) if tod < self._day_start_s else (base + self._day_start_s, base + 86400.0)
        )
        if tod < self._day_start_s:
            days -= 1
        day = _EPOCH_DAY.get(int(days)) or _day(int(days))
        self._lw = (slot * 900.0, slot * 900.0 + 900.0, off, lo, hi, base, day)
        return tod, day

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
            utc=_ts(utc),
            mono=mono,
            level=level,
            segments=[segments] if isinstance(segments, str) else segments,
            start=_ts(start),
            expires=_ts(expires),
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
            data, self.overrides.segments, _ts(utc), self.settings.override_expiry_s
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
        return list(self._conditions.values())

    def status(self, utc: dt.datetime | float | None = None) -> dict[str, Any]:
        t = _ts(utc)
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
            "conditions": [c.to_dict() for c in self._conditions.values() if c.active],
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


_EPOCH_DAY: dict[int, dt.date] = {}


def _day(days: int) -> dt.date:
    if len(_EPOCH_DAY) > 1024:
        _EPOCH_DAY.clear()
    d = _EPOCH_DAY[days] = dt.date(1970, 1, 1) + dt.timedelta(days=days)
    return d


def _ts(v: dt.datetime | float | None) -> float | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise ValueError("utc must be an aware datetime (or UTC seconds)")
        return v.timestamp()
    return float(v)
