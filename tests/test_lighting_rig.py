"""A small plant for the lighting controller's unit tests (no tests here).

Rig: a site, a simulated clock (monotonic and UTC moved together), a process image
the plant fills (lux from the sun, relay coils read back what was written, segment
power and an energy counter from the lit level) and switches for faults: stuck relay,
stuck contactor, lamps out, supply loss.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

from agent.control.lighting.calendar import Calendar
from agent.control.lighting.controller import LightingController
from agent.control.lighting.model import Actuation, FailureDetection, LightingSettings, Segment, StepResult, Write
from agent.control.lighting.photocell import PhotocellSettings
from agent.control.lighting.programs import Program, Step

UTC = dt.UTC
SITES = {
    "berlin": (52.52, 13.405, 34.0, "Europe/Berlin"),
    "madinah": (24.47, 39.61, 600.0, "Asia/Riyadh"),
    "tromso": (69.65, 18.96, 0.0, "Europe/Oslo"),
    "melbourne": (-37.81, 144.96, 30.0, "Australia/Melbourne"),
    "santiago": (-33.45, -70.67, 570.0, "America/Santiago"),
}
LUX = "lux.lux"
DIM_FLOOR = 0.1


def seg(name: str = "seg1", **kw) -> Segment:
    base: dict[str, Any] = dict(
        name=name,
        contactor=f"relays.{name}",
        calendar="main",
        power=f"{name}.power",
        energy=f"{name}.energy",
        voltage=f"{name}.voltage",
        expected_w=1000.0,
        luminaires=10,
    )
    base.update(kw)
    return Segment(**base)


def dimmed(name: str = "seg1", **kw) -> Segment:
    return seg(name, dim=f"dali.{name}", power_curve=((0.0, DIM_FLOOR), (100.0, 1.0)), **kw)


EVENING = Program(
    "evening",
    period="astro+sensor",
    steps=(Step(dt.time(12), 100.0), Step(dt.time(22), 70.0), Step(dt.time(0, 30), 40.0), Step(dt.time(5, 30), 100.0)),
)


def settings(
    segments=None,
    programs=None,
    calendars=None,
    photocell: bool | PhotocellSettings = True,
    actuation: Actuation | None = None,
    failure: FailureDetection | None = None,
    **kw,
) -> LightingSettings:
    programs = programs or {"evening": EVENING}
    if isinstance(programs, (list, tuple)):
        programs = {p.name: p for p in programs}
    calendars = calendars or {"main": Calendar("main", next(iter(programs)))}
    if photocell is True:
        photocell = PhotocellSettings(LUX)
    return LightingSettings(
        segments=tuple(segments or (seg(),)),
        calendars=calendars,
        programs=programs,
        photocell=photocell or None,
        actuation=actuation or Actuation(),
        failure=failure or FailureDetection(),
        **kw,
    )


def sun_lux(elevation: float) -> float:
    """Roughly the plant's clear-sky daylight: 400 lx at the horizon, 3 lx at -6 degrees."""
    if elevation >= 0:
        return 400.0 + 1500.0 * elevation
    if elevation > -6:
        return 400.0 * (3.0 / 400.0) ** (-elevation / 6.0)
    return 0.5


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, tz: str = "UTC") -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz)).timestamp()


class Rig:
    def __init__(
        self, site: str = "berlin", s: LightingSettings | None = None, start: float | None = None, clock: bool = True
    ) -> None:
        lat, lon, elev, tz = SITES[site]
        self.tz = tz
        self.s = s or settings()
        self.ctl = LightingController(self.s, latitude=lat, longitude=lon, elevation=elev, timezone=tz)
        self.mono = 1000.0
        self.t = start if start is not None else ts(2024, 3, 20, 12, tz=tz)
        self.clock = clock  # False: the controller is told the clock is unknown
        self.image: dict[str, tuple] = {}
        # "sun", a number, None (missing) or a (value, quality, age) tuple
        self.lux: float | str | tuple[Any, ...] | None = "sun"
        self.motion: dict[str, bool] = {}
        self.relay_stuck: dict[str, bool] = {}  # segment -> coil stuck at this value
        self.contactor_stuck: dict[str, bool] = {}  # segment -> contactor stuck closed (True) / open (False)
        self.lamps_out: dict[str, int] = {}
        self.supply_lost: set[str] = set()
        self.meter_ok = True
        self.kwh: dict[str, float] = {x.name: 100.0 for x in self.s.segments}
        self.coil: dict[str, bool] = {}
        self.dim: dict[str, float] = {}
        self.events: list = []
        self.conditions: list = []
        self.writes: list[Write] = []
        self.result: StepResult | None = None

    # -- plant ----------------------------------------------------------------------------------

    def lit_level(self, name: str) -> float:
        """The level the segment's lamps actually burn at (0 when dark)."""
        sg = next(x for x in self.s.segments if x.name == name)
        coil = self.relay_stuck.get(name, self.coil.get(name, False))
        closed = coil != sg.invert
        closed = self.contactor_stuck.get(name, closed)
        if not closed or name in self.supply_lost:
            return 0.0
        return self.dim.get(name, 100.0) if sg.dim else 100.0

    def power(self, name: str) -> float:
        sg = next(x for x in self.s.segments if x.name == name)
        level = self.lit_level(name)
        if level <= 0:
            return 0.0
        share = (DIM_FLOOR + (1 - DIM_FLOOR) * level / 100.0) if sg.dim else 1.0
        ok = 1.0 - self.lamps_out.get(name, 0) / max(1, sg.luminaires)
        return sg.expected_w * share * ok

    def _fill(self, dt_s: float) -> None:
        img = self.image
        if self.lux == "sun":
            img[LUX] = (sun_lux(self.ctl.astro.elevation(self.t)), "good", 1.0)
        elif self.lux is None:
            img.pop(LUX, None)
        elif isinstance(self.lux, tuple):
            img[LUX] = self.lux
        else:
            img[LUX] = (float(self.lux), "good", 1.0)
        for point, on in self.motion.items():
            img[point] = (on, "good", 0.1)
        for sg in self.s.segments:
            n = sg.name
            img[sg.contactor] = (self.relay_stuck.get(n, self.coil.get(n, False)), "good", 0.5)
            if sg.dim:
                img[sg.dim] = (sg.dim_value(self.dim.get(n, 100.0)), "good", 0.5)
            if sg.feedback:
                img[sg.feedback] = (self.lit_level(n) > 0 or self.contactor_stuck.get(n) is True, "good", 0.5)
            p = self.power(n)
            self.kwh[n] += p * dt_s / 3.6e6
            q = "good" if self.meter_ok else "bad"
            if sg.power:
                img[sg.power] = (p, q, 1.0)
            if sg.energy:
                img[sg.energy] = (round(self.kwh[n], 3), q, 1.0)
            if sg.voltage:
                img[sg.voltage] = (0.0 if n in self.supply_lost else 230.0, q, 1.0)

    def _apply(self, writes: list[Write]) -> None:
        for w in writes:
            sg = next(x for x in self.s.segments if x.name == w.segment)
            if w.point == sg.contactor:
                self.coil[sg.name] = bool(w.value)
            elif w.point == sg.dim:
                lo, hi = sg.dim_range
                self.dim[sg.name] = (float(w.value) - lo) / (hi - lo) * 100.0

    # -- driving --------------------------------------------------------------------------------

    def step(self, dt_s: float = 1.0):
        self.mono += dt_s
        self.t += dt_s
        self._fill(dt_s)
        r = self.ctl.step(self.mono, self.t if self.clock else None, self.image)
        self._apply(r.writes)
        self.writes += r.writes
        self.events += r.events
        self.conditions += r.conditions
        self.result = r
        return r

    def run(self, seconds: float, dt_s: float = 10.0, until=None):
        end = self.t + seconds
        while self.t < end:
            r = self.step(min(dt_s, end - self.t))
            if until is not None and until(r):
                return r
        return self.result

    def decision(self, name: str = "seg1"):
        assert self.result is not None, "Rig.decision: no step yet"
        return self.result.decisions[name]

    def active(self, cid: str) -> bool:
        c = next((c for c in self.ctl.conditions() if c.alarm_id == cid), None)
        return bool(c and c.active)

    def local(self, t: float | None = None) -> dt.datetime:
        from zoneinfo import ZoneInfo

        return dt.datetime.fromtimestamp(self.t if t is None else t, ZoneInfo(self.tz))

    def switch_times(self, name: str = "seg1") -> list[tuple[float, bool]]:
        return [(e.data.get("t", 0.0), e.data["on"]) for e in self.events if e.kind == "switched" and e.segment == name]


class Recorder(Rig):
    """A Rig that notes the UTC time of every switch of every segment."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.switches: dict[str, list[tuple[float, bool]]] = {}

    def step(self, dt_s: float = 1.0):
        r = super().step(dt_s)
        for e in r.events:
            if e.kind == "switched":
                self.switches.setdefault(e.segment, []).append((self.t, e.data["on"]))
        return r


def with_segments(s: LightingSettings, *segments: Segment) -> LightingSettings:
    return replace(s, segments=tuple(segments))


def finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)
