"""The cabinet climate controller: fans, anti-condensation heater, door, flood and
UPS, as one pure object (docs/climate.md has the rules and their defaults).

    ctl = ClimateController(settings)            # settings: agent.control.climate.settings
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
times; everything else waits for them. A step runs in named parts: the sensors,
the contacts, the loads to shed (`Shed`, which decides the order of authority), the
fans (climate_fans judges their failures), the heater (climate_heater), and the
alarm conditions of each part, sent only when they changed. `take_snapshot` builds
a snapshot from the process image. Pure: no I/O, no asyncio, no wall clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from agent.control.alarms.manager import AlarmDef, Condition, Hysteresis
from agent.control.climate.alarms import alarm_definitions, limit_alarms
from agent.control.climate.contacts import Contacts, ContactWatch
from agent.control.climate.fans import FanWatch
from agent.control.climate.heater import HeaterRules
from agent.control.climate.parts import SensorWatch, Switch, dew_point_c
from agent.control.climate.settings import ClimateSettings
from agent.model import Quality, Reading

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


class Shed(enum.Enum):
    """Why a load is held off. FLOOD outranks the over-temperature trip; the UPS causes
    rank below it (see the module docstring)."""

    FLOOD = "flood"
    ON_BATTERY = "on battery"
    BATTERY_LOW = "battery low"

    @property
    def reason(self) -> str:
        return f"{self.value}: load shed"


class ImageView(Protocol):
    """What take_snapshot needs of agent.field.image.ProcessImage."""

    def get(self, name: str, mono: float) -> tuple[Reading | None, float | None]: ...


Entry = tuple[Any, Quality, float | None]  # (value, quality, age_s): a snapshot entry


def take_snapshot(image: ImageView, points: Iterable[str], mono: float) -> dict[str, Entry | None]:
    """{point: (value, quality, age_s) or None} from a ProcessImage at monotonic time `mono`."""
    out: dict[str, Entry | None] = {}
    for p in points:
        reading, age = image.get(p, mono)
        out[p] = None if reading is None else (reading.value, reading.quality, age)
    return out


@dataclass(frozen=True, slots=True)
class Sensors:
    """The temperature and humidity as a step sees them."""

    t: float | None  # the temperature to use (a bridged last good value during an unconfirmed fault)
    t_fault: str | None  # a confirmed temperature fault
    rh: float | None
    rh_fault: str | None
    td: float | None  # the dew point, when both are known
    mode: str  # starting (no temperature yet) | normal | safe (temperature sensor failed)


@dataclass(frozen=True, slots=True)
class LastStep:
    """What status() shows of the last step."""

    sensors: Sensors
    contacts: Contacts
    trip: bool
    outputs: tuple[OutputDecision, ...]
    shed: Mapping[str, str]  # point -> why it is shed


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
        self._heater = (
            (Switch(h.output, _or(h.min_on_s, s.min_on_s), _or(h.min_off_s, s.min_off_s)), HeaterRules(h, sen.hold_s))
            if h
            else None
        )
        self._trip_h = Hysteresis(s.trip_c, s.trip_c - s.trip_band_k) if s.trip_c is not None else None
        self._trip = False
        self._contacts = ContactWatch(settings)
        self._fans = FanWatch(s, self._fan_sw)
        self._prev: dict[str, bool] = {}
        self._now = -INF
        self._last: LastStep | None = None
        self._keys: dict[str, object] = {}
        self._current: dict[str, Condition] = {}
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

    def _emit(self, group: str, key: object, conds: list[Condition], make: Callable[[], Iterable[Condition]]) -> None:
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

    # ---- the step --------------------------------------------------------------------

    def step(self, now: float, snapshot: Mapping[str, Any]) -> ClimateStep:
        if now < self._now:
            now = self._now  # monotonic time never goes back; be safe anyway
        self._now = now
        conds: list[Condition] = []
        wake = [now + MAX_PERIOD_S]
        sensors = self._sensors(now, snapshot, conds, wake)
        contacts = self._contacts.read(now, snapshot, wake)
        if self._contacts.configured:
            key = contacts.condition_key()
            self._emit("contacts", key, conds, lambda: self._contacts.conditions(contacts, self._messages))
        shed = self._shedding(contacts)
        if self._trip_h is not None and sensors.t is not None:
            self._trip = self._trip_h.next(self._trip, sensors.t)
        decisions = self._fan_outputs(now, sensors, contacts.door, shed, snapshot, conds, wake)
        if self._heater is not None:
            decisions.append(self._heater_output(*self._heater, now, sensors, shed, wake))
        reasons = {p: cause.reason for p, cause in shed.items()}
        outputs = tuple(decisions)
        self._last = LastStep(sensors, contacts, self._trip, outputs, reasons)
        return ClimateStep(outputs, reasons, tuple(conds), min(wake), sensors.mode)

    def _sensors(self, now: float, snapshot: Mapping[str, Any], conds: list[Condition], wake: list[float]) -> Sensors:
        """Judge the temperature and humidity; their fault and limit conditions."""
        tw, rhw = self._tw, self._rhw
        t, t_fault = tw.check(now, snapshot.get(tw.name))
        if tw.fault_since is not None and t_fault is None:
            wake.append(tw.fault_since + tw.confirm_s)
        rh = rh_fault = None
        if rhw is not None:
            rh, rh_fault = rhw.check(now, snapshot.get(rhw.name))
            if rhw.fault_since is not None and rh_fault is None:
                wake.append(rhw.fault_since + rhw.confirm_s)
        td = dew_point_c(t, rh) if t is not None and rh is not None else None
        mode = "safe" if t_fault is not None else "starting" if t is None else "normal"
        self._emit("sensors", (t_fault, rh_fault), conds, lambda: self._sensor_conditions(t_fault, rh_fault))
        if t is not None:
            self._emit("t", t, conds, lambda: _limit_conditions(self._t_limits, t))
        if rh is not None:
            self._emit("rh", rh, conds, lambda: _limit_conditions(self._rh_limits, rh))
        return Sensors(t, t_fault, rh, rh_fault, td, mode)

    def _shedding(self, c: Contacts) -> dict[str, Shed]:
        """The loads to hold off, each with its strongest cause (flood, then the UPS's)."""
        s = self.settings
        shed: dict[str, Shed] = {}
        if c.flood_shed and s.flood is not None:
            for p in s.flood.shed:
                shed[p] = Shed.FLOOD
        if c.on_battery:
            for p in self._shed_on_battery:
                shed.setdefault(p, Shed.ON_BATTERY)
        if c.battery_low and s.ups is not None:
            for p in s.ups.shed_on_battery_low:
                shed.setdefault(p, Shed.BATTERY_LOW)
        return shed

    def _authority(self, want: bool, reason: str, cause: Shed | None, on_in_trip: bool) -> tuple[bool, str, bool]:
        """(on, reason, trip) after the safety trips, highest first: flood shedding, the
        over-temperature trip (`on_in_trip`: fans on, heater off), UPS shedding."""
        if cause is Shed.FLOOD:
            return False, cause.reason, True
        if self._trip:
            return on_in_trip, self._trip_text, True
        if cause is not None:
            return False, cause.reason, True
        return want, reason, False

    def _fan_outputs(
        self,
        now: float,
        sensors: Sensors,
        door_open: bool,
        shed: Mapping[str, Shed],
        snapshot: Mapping[str, Any],
        conds: list[Condition],
        wake: list[float],
    ) -> list[OutputDecision]:
        """Fan failures (judged on the outputs as they stand), then each fan's decision."""
        s, t = self.settings, sensors.t
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
            elif sensors.mode == "safe":
                w, r = True, f"safe state: temperature sensor failed ({sensors.t_fault})"
            else:
                w, r = False, "waiting for the temperature sensor"
            wants.append(w)
            reasons.append(r)
        failed = self._fans.failed
        missing = sum(1 for i in range(len(fans)) if wants[i] and failed[i])
        for i in range(len(fans)):
            if missing and not wants[i] and not failed[i]:
                wants[i], reasons[i], missing = True, "replaces a failed fan", missing - 1
        stops = s.door is not None and s.door.stops_fans and door_open
        decisions = []
        for i, f in enumerate(fans):
            w, r = wants[i], reasons[i]
            if stops and w:
                w, r = False, "door open: fans stopped"
            w, r, tr = self._authority(w, r, shed.get(f.output), on_in_trip=True)
            decisions.append(self._decide(self._fan_sw[i], now, w, r, tr, wake))
        return decisions

    def _heater_output(
        self,
        sw: Switch,
        rules: HeaterRules,
        now: float,
        sensors: Sensors,
        shed: Mapping[str, Shed],
        wake: list[float],
    ) -> OutputDecision:
        w, r = rules.want(now, sensors.t, sensors.rh, sensors.td, sensors.mode == "starting", self._tw)
        w, r, tr = self._authority(w, r, shed.get(sw.point), on_in_trip=False)
        return self._decide(sw, now, w, r, tr, wake)

    def _decide(self, sw: Switch, now: float, want: bool, reason: str, trip: bool, wake: list[float]) -> OutputDecision:
        on = sw.apply(now, want, trip)
        held = sw.held_until
        if held is not None:
            wake.append(held)
            state, wanted = "on" if on else "off", "on" if want else "off"
            reason = f"{state} for its minimum time until {held:.0f} s (wants {wanted}: {reason})"
        prev = self._prev.get(sw.point)
        self._prev[sw.point] = on
        return OutputDecision(sw.point, on, reason, trip, prev is not None and prev != on, held)

    # ---- conditions ------------------------------------------------------------------

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

    # ---- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The last step, JSON-safe: mode, T, RH, dew point, faults, trip, contacts, outputs with reasons."""
        last = self._last
        if last is None:
            return {"mode": "starting", "outputs": {}, "shed": {}}
        sen, con = last.sensors, last.contacts
        return {
            "mode": sen.mode,
            "temperature": _round(sen.t),
            "humidity": _round(sen.rh),
            "dew_point": _round(sen.td),
            "temperature_fault": sen.t_fault,
            "humidity_fault": sen.rh_fault,
            "trip": last.trip,
            "door_open": con.door,
            "flooded": con.flood_shed,
            "on_battery": con.on_battery,
            "battery_low": con.battery_low,
            "outputs": {d.point: {"on": d.on, "reason": d.reason, "trip": d.trip} for d in last.outputs},
            "shed": dict(last.shed),
            "fan_failed": self._fans.indirect_failed or any(self._fans.failed),
        }


def _limit_conditions(limits: Iterable[tuple[str, str, float, float, str, str]], value: float) -> list[Condition]:
    """The limit alarms of one quantity: value alarms (the AlarmManager applies their hysteresis)."""
    return [Condition(aid, point, sev, False, text, value) for aid, point, _at, _clear, sev, text in limits]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _or(v: float | None, default: float) -> float:
    return default if v is None else v
