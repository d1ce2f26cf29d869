"""A test rig for the pure climate controller: settings, a snapshot that tests set
point by point, an AlarmManager fed with every step, and a record of every switch."""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any

from agent.control.alarms.manager import AlarmManager
from agent.control.climate.controller import ClimateController, ClimateStep
from agent.control.climate.settings import (
    ClimateSettings,
    DoorSettings,
    FanSettings,
    FloodSettings,
    HeaterSettings,
    UpsSettings,
)

T, RH = "climate.temperature", "climate.humidity"
FAN, FAN2, HEATER = "dio.fan", "relays.relay_7", "relays.relay_8"
DOOR, FLOOD = "dio.door", "dio.flood"
ON_BATT, LOW, REPL = "dio.ups_on_battery", "dio.ups_battery_low", "dio.ups_replace_battery"


def settings(**changes: Any) -> ClimateSettings:
    base = ClimateSettings(
        T,
        RH,
        fans=(FanSettings("fan", FAN),),
        heater=HeaterSettings(HEATER),
        door=DoorSettings(DOOR),
        flood=FloodSettings(FLOOD, shed=(HEATER, "relays.relay_1")),
        ups=UpsSettings(ON_BATT, LOW, REPL),
    )
    return dataclasses.replace(base, **changes)


class Rig:
    def __init__(self, s: ClimateSettings | None = None, t: float = 20.0, rh: float = 50.0) -> None:
        self.ctl = ClimateController(s or settings())
        self.alarms = AlarmManager(self.ctl.definitions())
        self.snap: dict[str, Any] = dict.fromkeys((DOOR, FLOOD, ON_BATT, LOW, REPL), (False, "good", 0.1))
        self.set(T, t)
        self.set(RH, rh)
        self.now = 0.0
        self.events: list[Any] = []
        self.switches: dict[str, list[tuple[float, bool, bool]]] = {}  # point -> (time, on, trip)
        self._last: ClimateStep | None = None

    @property
    def last(self) -> ClimateStep:
        """The latest step (tests read it only after stepping)."""
        assert self._last is not None, "Rig.last: no step yet"
        return self._last

    def set(self, point: str, value: Any, quality: str = "good", age: float = 1.0) -> None:
        self.snap[point] = (value, quality, age)

    def step(self, at: float | None = None) -> ClimateStep:
        if at is not None:
            self.now = at
        st = self.ctl.step(self.now, self.snap)
        self.events += self.alarms.update(self.now, st.conditions)
        for d in st.outputs:
            hist = self.switches.setdefault(d.point, [])
            if not hist or hist[-1][1] != d.on:
                hist.append((self.now, d.on, d.trip))
        self._last = st
        return st

    def run(self, until: float, dt: float = 1.0) -> ClimateStep:
        st = self._last
        while self.now + dt <= until + 1e-9:
            st = self.step(self.now + dt)
        assert st is not None, "Rig.run: no step taken"
        return st

    def out(self, point: str) -> Any:
        return next(d for d in self.last.outputs if d.point == point)

    def on(self, point: str) -> bool:
        return self.out(point).on

    def raised(self) -> list[str]:
        return [e.alarm_id for e in self.events if e.transition == "raised"]

    def active(self) -> builtins.set[str]:  # `set` alone would name the method above
        return {a["id"] for a in self.alarms.active()}

    def cond(self, alarm_id: str) -> bool:
        return self.ctl.conditions()[alarm_id].active
