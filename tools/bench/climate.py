"""Climate benchmark (python -m tools.bench climate --json) and the closed loop it runs.

`ClosedLoop` couples the pure climate controller and an AlarmManager to the plant
model (boards/sim/plant.py), stepped directly in simulated time, no processes:
the T/RH sensor is polled every `poll_s` (values rounded to the XY-MD02's 0.1),
contacts come from the plant, the controller's fan and heater decisions drive the
plant. The controller is stepped the way the agent's wrapper steps it: on every
new sensor value, on scheduled scenario changes and at its own `wake_at`; the plant
is stepped when it is read (each poll; contacts are read then too) or changed.
Scenarios change the plant with `schedule` [(seconds, attribute, value)], e.g.
(3600, "mains_ok", False); `fan_broken` makes the plant ignore the fan output.

Figures:

* step_us: mean cost of one `ClimateController.step` over the snapshots a
  simulated day produced (the controller alone, replayed in a tight loop), and
  step_alarms_us: the same plus `AlarmManager.update` with its conditions.
* week_s: wall seconds for a simulated week of the closed loop (plant, sensor,
  controller, alarms), scaled from `days` when a shorter run is asked for.
  Target <= 10 s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import time
from typing import Any

from agent.control.alarms.manager import AlarmManager
from agent.control.climate.controller import ClimateController
from agent.control.climate.settings import (
    ClimateSettings,
    DoorSettings,
    FanSettings,
    FloodSettings,
    HeaterSettings,
    UpsSettings,
)
from boards.sim.plant import Cabinet, Plant, Site, Weather

TARGET_WEEK_S = 10.0
BERLIN = Site(52.52, 13.41, 34.0, "Europe/Berlin")
T, RH, FAN, HEATER = "climate.temperature", "climate.humidity", "dio.fan", "relays.relay_8"
CONTACTS = {
    "dio.door": lambda p: p.door_open,
    "dio.flood": lambda p: p.flood,
    "dio.ups_on_battery": lambda p: p.ups_on_battery,
    "dio.ups_battery_low": lambda p: p.ups_battery_low,
    "dio.ups_replace_battery": lambda p: p.ups_replace_battery,
}


def example_settings(**changes: Any) -> ClimateSettings:
    """The example cabinet's climate settings (boards/sim/cabinet.toml)."""
    s = ClimateSettings(
        T,
        RH,
        fans=(FanSettings("fan", FAN),),
        heater=HeaterSettings(HEATER),
        door=DoorSettings("dio.door"),
        flood=FloodSettings("dio.flood", shed=(HEATER,)),
        ups=UpsSettings(
            "dio.ups_on_battery", "dio.ups_battery_low", "dio.ups_replace_battery", shed_on_battery=(HEATER,)
        ),
    )
    return dataclasses.replace(s, **changes)


class ClosedLoop:
    def __init__(
        self,
        weather: Weather,
        start: str,
        settings: ClimateSettings | None = None,
        *,
        site: Site = BERLIN,
        seed: int = 1,
        poll_s: float = 10.0,
        cabinet: Cabinet | None = None,
        schedule: list[tuple[float, str, Any]] | None = None,
        fan_broken: bool = False,
        control: bool = True,
        measure_from_s: float = 0.0,
    ) -> None:
        self.t0 = dt.datetime.fromisoformat(start).timestamp()
        self.plant = Plant(site, seed=seed, start=self.t0, weather=weather, cabinet=cabinet)
        self.settings = settings or example_settings()
        self.ctl = ClimateController(self.settings)
        self.alarms = AlarmManager(self.ctl.definitions())
        self.poll_s = poll_s
        self.schedule = sorted(schedule or [], key=lambda x: x[0])
        self.fan_broken = fan_broken
        self.control = control  # False: outputs stay off (the cabinet without climate control)
        self.mono = 0.0
        self.snap: dict[str, Any] = {}
        self._polled = -math.inf
        self.steps = 0
        self.events: list[Any] = []
        self.switches: dict[str, list[tuple[float, bool, bool]]] = {}
        self.measure_from_s = measure_from_s  # t_min, t_max, margin_min from then on (the start settles)
        self.t_min, self.t_max = math.inf, -math.inf
        self.margin_min = math.inf
        self.record: list[tuple[float, dict[str, Any]]] | None = None

    def _poll(self) -> None:
        p = self.plant
        self.snap[T] = (round(p.cabinet_c, 1), "good", 0.0)
        self.snap[RH] = (round(min(100.0, p.cabinet_rh), 1), "good", 0.0)
        self._polled = self.mono

    def run(self, seconds: float) -> ClosedLoop:
        end = self.mono + seconds
        p, ctl, alarms, snap, poll_s = self.plant, self.ctl, self.alarms, self.snap, self.poll_s
        outs = {FAN: "fan_on", HEATER: "heater_on"}
        wake = self.mono
        while self.mono <= end:
            # the plant is stepped when something is read or changed (its inputs are constant in between)
            if self.schedule and self.schedule[0][0] <= self.mono:
                p.step(self.t0 + self.mono)
                while self.schedule and self.schedule[0][0] <= self.mono:
                    _, attr, value = self.schedule.pop(0)
                    setattr(p, attr, value)
            if self.mono - self._polled >= poll_s:
                p.step(self.t0 + self.mono)
                self._poll()
                if self.mono >= self.measure_from_s:
                    c = p.cabinet_c
                    self.t_min, self.t_max = min(self.t_min, c), max(self.t_max, c)
                    self.margin_min = min(self.margin_min, c - p.cabinet_dew_point_c)
                for name, get in CONTACTS.items():
                    snap[name] = (get(p), "good", 0.0)
            age = self.mono - self._polled
            snap[T] = (snap[T][0], "good", age)
            snap[RH] = (snap[RH][0], "good", age)
            if self.record is not None:
                self.record.append((self.mono, dict(snap)))
            st = ctl.step(self.mono, snap)
            self.steps += 1
            self.events += alarms.update(self.mono, st.conditions, wall=self.t0 + self.mono)
            for d in st.outputs:
                hist = self.switches.setdefault(d.point, [])
                on = d.on and self.control
                if not hist or hist[-1][1] != on:
                    hist.append((self.mono, on, d.trip))
                output = outs.get(d.point)
                if output is not None and getattr(p, output) != on and not (output == "fan_on" and self.fan_broken):
                    p.step(self.t0 + self.mono)
                    setattr(p, output, on)
            wake = min(st.wake_at, self._polled + poll_s)
            if self.schedule:
                wake = min(wake, self.schedule[0][0])
            self.mono = max(wake, self.mono + 0.001)
        return self

    def shortest_runs(self) -> dict[str, tuple[float | None, float | None]]:
        """Per output: (shortest on time, shortest off time) between switches."""
        out: dict[str, tuple[float | None, float | None]] = {}
        for point, hist in self.switches.items():
            on = [b[0] - a[0] for a, b in itertools.pairwise(hist) if a[1]]
            off = [b[0] - a[0] for a, b in itertools.pairwise(hist) if not a[1]]
            out[point] = (min(on) if on else None, min(off) if off else None)
        return out

    def raised(self) -> list[tuple[float, str]]:
        return [(e.t - self.t0, e.alarm_id) for e in self.events if e.transition == "raised"]


def run(days: float = 7.0) -> dict[str, Any]:
    weather = Weather(mean_c=22.0, swing_c=8.0, mean_rh=65.0, swing_rh=20.0, cloud=0.3, day_to_day_c=3.0)
    # step_us: replay one simulated day's snapshots through a fresh controller
    day = ClosedLoop(weather, "2026-07-01T00:00:00+02:00")
    day.record = []
    day.run(min(days, 1.0) * 86_400.0)
    frames = day.record
    ctl = ClimateController(day.settings)
    t = time.perf_counter()
    for mono, snap in frames:
        ctl.step(mono, snap)
    step_us = (time.perf_counter() - t) / len(frames) * 1e6
    ctl, alarms = ClimateController(day.settings), AlarmManager(day.ctl.definitions())
    t = time.perf_counter()
    for mono, snap in frames:
        alarms.update(mono, ctl.step(mono, snap).conditions)
    step_alarms_us = (time.perf_counter() - t) / len(frames) * 1e6
    # week_s: the closed loop in accelerated time
    loop = ClosedLoop(weather, "2026-07-01T00:00:00+02:00")
    t = time.perf_counter()
    loop.run(days * 86_400.0)
    elapsed = time.perf_counter() - t
    week_s = elapsed * 7.0 / days
    switches = {p: max(0, len(h) - 1) for p, h in loop.switches.items()}
    shortest = loop.shortest_runs()
    return {
        "step_us": round(step_us, 2),
        "step_alarms_us": round(step_alarms_us, 2),
        "week_s": round(week_s, 2),
        "days": days,
        "steps": loop.steps,
        "steps_per_s": round(loop.steps / elapsed),
        "switches": switches,
        "shortest_on_off_s": {p: [None if x is None else round(x, 1) for x in v] for p, v in shortest.items()},
        "cabinet_c": [round(loop.t_min, 1), round(loop.t_max, 1)],
        "min_dew_margin_k": round(loop.margin_min, 2),
        "alarms_raised": len(loop.raised()),
        "met": {"week_s<=10": week_s <= TARGET_WEEK_S},
    }
