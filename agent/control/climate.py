"""The cabinet climate controller: fans, anti-condensation heater, door, flood and
UPS, as one pure object (docs/climate.md has the rules and their defaults).

    ctl = ClimateController(settings)            # settings: agent.control.climate_settings
    alarms = AlarmManager(ctl.definitions(), overrides)
    step = ctl.step(now_monotonic, snapshot)     # snapshot: point -> (value, quality, age_s) or None
    step.outputs     # OutputDecision per fan and heater: point, on, reason, trip, changed, held_until
    step.shed        # {point: reason}: outputs to hold off (flood, UPS); may name other controllers' outputs
    step.conditions  # alarm Conditions for AlarmManager.update
    step.wake_at     # monotonic time of the next pending timer; step again by then (and on new readings)
    ctl.status()     # JSON-safe view of the last step for `cabinet status`

Order of authority for an output, highest first: flood shedding (off), the
over-temperature trip (fans on, heater off), UPS shedding (off), then the normal
rules (fan thermostats with stages and failed-fan substitution, the heater's
dew-point, RH and minimum-temperature rules, the door option, the safe state of a
failed sensor). The first three are safety trips and bypass the minimum on/off
times; everything else waits for them. `take_snapshot` builds a snapshot from the
process image. Pure: no I/O, no asyncio, no wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from agent.control.alarms import AlarmDef, Condition, Hysteresis
from agent.control.climate_alarms import alarm_definitions, contact_points, limit_alarms
from agent.control.climate_fans import FanWatch
from agent.control.climate_parts import Debounce, SensorWatch, Switch, dew_point_c, good_value, rh_from_dew_point
from agent.control.climate_settings import ClimateSettings

MAX_PERIOD_S = 5.0
INF = math.inf


class OutputDecision(NamedTuple):
    point: str
    on: bool
    reason: str
    trip: bool = False  # forced by a safety trip (minimum times bypassed)
    changed: bool = False  # differs from the previous step's decision
    held_until: float | None = None  # a change is wanted but waits for the minimum time until then


class ClimateStep(NamedTuple):
    outputs: tuple[OutputDecision, ...]
    shed: Mapping[str, str]
    conditions: tuple[Condition, ...]
    wake_at: float
    mode: str  # starting | normal | safe (temperature sensor failed)


def take_snapshot(image: Any, points: tuple[str, ...], mono: float) -> dict[str, tuple[Any, Any, float] | None]:
    """{point: (value, quality, age_s) or None} from a ProcessImage at monotonic time `mono`."""
    out: dict[str, tuple[Any, Any, float] | None] = {}
    for p in points:
        reading, age = image.get(p, mono)
        out[p] = None if reading is None else (reading.value, reading.quality, age)
    return out


def _bool_of(entry: Any) -> bool | None:
    value, why = good_value(entry, INF)
    if why is not None or not isinstance(value, (bool, int)):
        return None
    return bool(value)


class ClimateController:
    """See the module docstring."""

    def __init__(self, settings: ClimateSettings) -> None:
        s = self.settings = settings
        self.inputs = settings.input_points()
        self.outputs = settings.output_points()
        sen = s.sensor
        self._tw = SensorWatch(s.temperature, sen.temperature_range, sen.max_age_s, sen.confirm_s, sen.stuck_s)
        self._rhw = (
            SensorWatch(s.humidity, sen.humidity_range, sen.max_age_s, sen.confirm_s, sen.stuck_s)
            if s.humidity
            else None
        )
        self._fan_h = [Hysteresis(f.on_c, f.off_c) for f in s.fans]
        self._fan_want = [False] * len(s.fans)
        self._fan_sw = [Switch(f.output, _or(f.min_on_s, s.min_on_s), _or(f.min_off_s, s.min_off_s)) for f in s.fans]
        h = s.heater
        self._heat_sw = Switch(h.output, _or(h.min_on_s, s.min_on_s), _or(h.min_off_s, s.min_off_s)) if h else None
        self._cold_h = Hysteresis(h.min_c, h.min_c + h.min_band_k) if h else None
        self._hot_h = Hysteresis(h.max_c, h.max_c - h.max_band_k) if h else None
        self._cold = self._hot = self._damp = False
        self._trip_h = Hysteresis(s.trip_c, s.trip_c - s.trip_band_k) if s.trip_c is not None else None
        self._trip = False
        self._door = Debounce(s.door.debounce_s) if s.door else None
        self._contacts: dict[str, bool] = {}
        self._contact_bad: dict[str, float] = {}
        self._flood_seen: float | None = None
        self._fans = FanWatch(s, self._fan_sw)
        self._last_td: float | None = None
        self._last_td_at = -INF
        self._prev: dict[str, bool] = {}
        self._now = -INF
        self._last: tuple | None = None
        self._keys: dict[str, Any] = {}
        self._current: dict[str, Condition] = {}
        self._contacts_configured = contact_points(settings)
        limits = limit_alarms(settings)
        self._t_limits = [x for x in limits if x[1] == s.temperature]
        self._rh_limits = [x for x in limits if x[1] != s.temperature]
        self._trip_text = f"over-temperature trip at {s.trip_c:g} °C"
        ups = s.ups
        self._shed_on_battery: tuple[str, ...] = (
            ()
            if ups is None
            else ups.shed_on_battery
            if ups.shed_on_battery is not None
            else ((h.output,) if h else ())
        )
        self._messages = {d.id: d.description for d in self.definitions()}

    # ---- alarms ----------------------------------------------------------------------

    def definitions(self) -> list[AlarmDef]:
        """The alarms this controller raises, with their default delays (overridable in [alarms])."""
        return alarm_definitions(self.settings)

    def _contact(self, now: float, point: str | None, snapshot: Mapping[str, Any], bad: list[str]) -> bool:
        """The contact's value; its last known value (initially False) while it has none."""
        if point is None:
            return False
        entry = snapshot.get(point)
        if entry is not None and entry[1] == "good" and entry[0].__class__ is bool:  # the common case
            if self._contact_bad:
                self._contact_bad.pop(point, None)
            self._contacts[point] = entry[0]
            return entry[0]
        v = _bool_of(entry)
        if v is None:
            since = self._contact_bad.setdefault(point, now)
            if now - since >= self.settings.sensor.confirm_s:
                bad.append(point)
            return self._contacts.get(point, False)
        self._contact_bad.pop(point, None)
        self._contacts[point] = v
        return v

    # ---- the step --------------------------------------------------------------------

    def _emit(self, group: str, key: Any, conds: list[Condition], make: Any) -> None:
        """Add the conditions `make()` builds when `key` differs from the group's last key."""
        if self._keys.get(group, self) != key:
            self._keys[group] = key
            for c in make():
                self._current[c.alarm_id] = c
                conds.append(c)

    def resend_conditions(self) -> None:
        """Make the next step emit every condition (after replacing the AlarmManager)."""
        self._keys.clear()

    def conditions(self) -> dict[str, Condition]:
        """Every alarm condition as it stands after the last step (step() emits only changes)."""
        return dict(self._current)

    def step(self, now: float, snapshot: Mapping[str, Any]) -> ClimateStep:
        s = self.settings
        if now < self._now:
            now = self._now  # monotonic time never goes back; be safe anyway
        self._now = now
        conds: list[Condition] = []
        wake = [now + MAX_PERIOD_S]

        # sensors
        tw, rhw = self._tw, self._rhw
        t, t_fault = tw.check(now, snapshot.get(s.temperature))
        if tw.fault_since is not None and t_fault is None:
            wake.append(tw.fault_since + tw.confirm_s)
        rh = rh_fault = None
        if rhw is not None:
            rh, rh_fault = rhw.check(now, snapshot.get(s.humidity))
            if rhw.fault_since is not None and rh_fault is None:
                wake.append(rhw.fault_since + rhw.confirm_s)
        td = dew_point_c(t, rh) if t is not None and rh is not None else None
        if td is not None:
            self._last_td, self._last_td_at = td, now
        mode = "safe" if t_fault is not None else "starting" if t is None else "normal"
        self._emit("sensors", (t_fault, rh_fault), conds, lambda: self._sensor_conditions(t_fault, rh_fault))
        if t is not None:
            self._emit(
                "t",
                t,
                conds,
                lambda: [Condition(aid, pt, sev, False, text, t) for aid, pt, _a, _c, sev, text in self._t_limits],
            )
        if rh is not None:
            self._emit(
                "rh",
                rh,
                conds,
                lambda: [Condition(aid, pt, sev, False, text, rh) for aid, pt, _a, _c, sev, text in self._rh_limits],
            )

        # contacts
        bad: list[str] = []
        door = flood = on_batt = low = repl = False
        if s.door:
            door = self._door.update(now, self._contact(now, s.door.input, snapshot, bad))
            if self._door.pending_until() is not None:
                wake.append(self._door.pending_until())
        flood_shed = False
        if s.flood:
            flood = self._contact(now, s.flood.input, snapshot, bad)
            if flood:
                self._flood_seen = now
            if self._flood_seen is not None:
                end = self._flood_seen + s.flood.release_s
                flood_shed = flood or now < end
                if flood_shed and not flood:
                    wake.append(end)
        u = s.ups
        if u:
            on_batt = self._contact(now, u.on_battery, snapshot, bad)
            low = self._contact(now, u.battery_low, snapshot, bad)
            repl = self._contact(now, u.replace_battery, snapshot, bad)
        if self._contacts_configured:
            self._emit(
                "contacts",
                (door, flood, on_batt, low, repl, tuple(bad)),
                conds,
                lambda: self._contact_conditions(door, flood, on_batt, low, repl, bad),
            )
            for since in self._contact_bad.values():
                if now - since < s.sensor.confirm_s:
                    wake.append(since + s.sensor.confirm_s)

        # shedding and the over-temperature trip
        shed: dict[str, str] = {}
        if flood_shed:
            for p in s.flood.shed:
                shed[p] = "flood: load shed"
        if on_batt:
            for p in self._shed_on_battery:
                shed.setdefault(p, "on battery: load shed")
        if low:
            for p in u.shed_on_battery_low:
                shed.setdefault(p, "battery low: load shed")
        if self._trip_h is not None and t is not None:
            self._trip = self._trip_h.next(self._trip, t)
        trip = self._trip
        trip_text = self._trip_text

        # fans (failures judged on the outputs as they stand, then the decisions)
        decisions: list[OutputDecision] = []
        fans = s.fans
        if fans:
            fw = self._fans
            fw.update(now, t if self._tw.fault is None else None, snapshot, wake)
            self._emit("fans", fw.key(), conds, lambda: fw.conditions(self._messages))
        wants, reasons = [], []
        for i, f in enumerate(fans):
            if t is not None:
                w = self._fan_want[i] = self._fan_h[i].next(self._fan_want[i], t)
                r = f"{t:.1f} °C: on at {f.on_c:g}" if w else f"{t:.1f} °C: off at {f.off_c:g}"
            elif mode == "safe":
                w, r = True, f"safe state: temperature sensor failed ({t_fault})"
            else:
                w, r = False, "waiting for the temperature sensor"
            wants.append(w)
            reasons.append(r)
        failed = self._fans.failed
        missing = sum(1 for i in range(len(fans)) if wants[i] and failed[i])
        for i in range(len(fans)):
            if missing and not wants[i] and not failed[i]:
                wants[i], reasons[i], missing = True, "replaces a failed fan", missing - 1
        stops = s.door is not None and s.door.stops_fans and door
        for i, f in enumerate(fans):
            w, r, tr = wants[i], reasons[i], False
            if stops and w:
                w, r = False, "door open: fans stopped"
            why = shed.get(f.output)
            if why is not None and why[0] == "f":  # flood
                w, r, tr = False, why, True
            elif trip:
                w, r, tr = True, trip_text, True
            elif why is not None:
                w, r, tr = False, why, True
            decisions.append(self._decide(self._fan_sw[i], now, w, r, tr, wake))

        # heater
        if s.heater:
            w, r = self._heater_want(now, t, rh, td, mode)
            tr = False
            why = shed.get(s.heater.output)
            if why is not None and why[0] == "f":
                w, r, tr = False, why, True
            elif trip:
                w, r, tr = False, trip_text, True
            elif why is not None:
                w, r, tr = False, why, True
            decisions.append(self._decide(self._heat_sw, now, w, r, tr, wake))

        self._last = (mode, t, rh, td, t_fault, rh_fault, trip, door, flood_shed, on_batt, low, decisions, shed)
        return ClimateStep(tuple(decisions), shed, tuple(conds), min(wake), mode)

    def _sensor_conditions(self, t_fault: str | None, rh_fault: str | None) -> list[Condition]:
        s, msg = self.settings, self._messages
        out = [
            Condition(
                "climate.temperature_sensor_failed",
                s.temperature,
                "critical",
                t_fault is not None,
                f"temperature sensor failed: {t_fault}" if t_fault else msg["climate.temperature_sensor_failed"],
            )
        ]
        if s.humidity:
            out.append(
                Condition(
                    "climate.humidity_sensor_failed",
                    s.humidity,
                    "warning",
                    rh_fault is not None,
                    f"humidity sensor failed: {rh_fault}" if rh_fault else msg["climate.humidity_sensor_failed"],
                )
            )
        return out

    def _contact_conditions(
        self, door: bool, flood: bool, on_batt: bool, low: bool, repl: bool, bad: list[str]
    ) -> list[Condition]:
        s, msg = self.settings, self._messages
        out = []
        if s.door:
            out.append(Condition("climate.door_open", s.door.input, "warning", door, msg["climate.door_open"]))
            out.append(
                Condition(
                    "climate.door_open_too_long", s.door.input, "warning", door, msg["climate.door_open_too_long"]
                )
            )
        if s.flood:
            out.append(Condition("climate.flood", s.flood.input, "critical", flood, msg["climate.flood"]))
        u = s.ups
        if u:
            for key, val in (("on_battery", on_batt), ("battery_low", low), ("replace_battery", repl)):
                if getattr(u, key):
                    aid = f"climate.ups_{key}"
                    out.append(
                        Condition(
                            aid, getattr(u, key), "critical" if key == "battery_low" else "warning", val, msg[aid]
                        )
                    )
        out.append(
            Condition(
                "climate.input_failed",
                "climate",
                "warning",
                bool(bad),
                f"no good value from {', '.join(bad)}" if bad else msg["climate.input_failed"],
            )
        )
        return out

    def _decide(self, sw: Switch, now: float, want: bool, reason: str, trip: bool, wake: list[float]) -> OutputDecision:
        on = sw.apply(now, want, trip)
        held = sw.held_until
        if held is not None:
            wake.append(held)
            reason = f"{'on' if on else 'off'} for its minimum time until {held:.0f} s (wants {'on' if want else 'off'}: {reason})"
        prev = self._prev.get(sw.point)
        self._prev[sw.point] = on
        return OutputDecision(sw.point, on, reason, trip, prev is not None and prev != on, held)

    def _heater_want(
        self, now: float, t: float | None, rh: float | None, td: float | None, mode: str
    ) -> tuple[bool, str]:
        h, hold = self.settings.heater, self.settings.sensor.hold_s
        basis = ""
        if t is None:
            tw = self._tw
            if mode == "starting" or tw.last is None:
                return False, "waiting for the temperature sensor"
            if now - tw.last_at > hold:
                return False, f"temperature sensor failed more than {hold:g} s ago: heater off"
            t, basis = tw.last, " (last good reading)"
        if td is None and self._last_td is not None and now - self._last_td_at <= hold:
            td, rh = self._last_td, None
            basis = basis or " (last good dew point)"
        self._cold = self._cold_h.next(self._cold, t)
        self._hot = self._hot_h.next(self._hot, t)
        if td is not None:
            margin = t - td
            rh_now = rh if rh is not None else rh_from_dew_point(t, td)
            if self._damp:
                self._damp = not (margin > h.off_margin_k and rh_now < h.off_rh)
            else:
                self._damp = margin < h.on_margin_k or rh_now > h.on_rh
            damp_text = f"dew-point margin {margin:.1f} K, RH {rh_now:.0f} %"
        else:
            self._damp = False
            damp_text = "no humidity"
        if self._hot:
            return False, f"{t:.1f} °C: heater blocked at {h.max_c:g} °C{basis}"
        if self._cold:
            return True, f"{t:.1f} °C: below minimum {h.min_c:g} °C{basis}"
        if self._damp:
            return True, f"condensation risk: {damp_text}{basis}"
        return False, f"dry: {damp_text}{basis}"

    def status(self) -> dict[str, Any]:
        """The last step, JSON-safe: mode, T, RH, dew point, faults, trip, contacts, outputs with reasons."""
        if self._last is None:
            return {"mode": "starting", "outputs": {}, "shed": {}}
        mode, t, rh, td, t_fault, rh_fault, trip, door, flooded, on_batt, low, decisions, shed = self._last
        return {
            "mode": mode,
            "temperature": _round(t),
            "humidity": _round(rh),
            "dew_point": _round(td),
            "temperature_fault": t_fault,
            "humidity_fault": rh_fault,
            "trip": trip,
            "door_open": door,
            "flooded": flooded,
            "on_battery": on_batt,
            "battery_low": low,
            "outputs": {d.point: {"on": d.on, "reason": d.reason, "trip": d.trip} for d in decisions},
            "shed": dict(shed),
            "fan_failed": self._fans.indirect_failed or any(self._fans.failed),
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _or(v: float | None, default: float) -> float:
    return default if v is None else v
