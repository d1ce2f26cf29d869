"""The lighting controller's vocabulary: its settings and what a step returns.

Owns the data shapes shared by the controller, the config parser and the asyncio
wrapper: LightingSettings (segments, calendars, programs, photocell, actuation and
failure-detection settings), LightingConfig (what the controller needs of the
agent's Config, which agent/control does not import) and the step's outputs Decision, Write, Event and
StepResult, each with a JSON-safe `to_dict()`. The alarm conditions a step returns
are the alarm framework's `Condition` (agent.control.alarms.model), as climate's are.
No logic beyond small helpers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple, Protocol

from agent.control.alarms.model import Condition
from agent.control.lighting.calendar import Calendar
from agent.control.lighting.overrides import DEFAULT_EXPIRY_S
from agent.control.lighting.photocell import PhotocellSettings
from agent.control.lighting.programs import Program


@dataclass(frozen=True, slots=True)
class Segment:
    """A switched lighting circuit: its contactor, optional dimming output and meter points."""

    name: str
    contactor: str  # writable point of the relay coil that drives the contactor
    calendar: str
    invert: bool = False  # coil energised = lights OFF (contactor through NC contacts: fails on)
    feedback: str | None = None  # contactor auxiliary contact, read only; true = contactor closed
    dim: str | None = None  # writable dimming point (DALI gateway level, analogue output register)
    dim_range: tuple[float, float] = (0.0, 100.0)  # value written for 0 % and for 100 %
    power: str | None = None  # meter active power, W
    energy: str | None = None  # meter import energy counter, kWh
    voltage: str | None = None  # meter voltage, V (tells supply loss from a stuck contactor)
    expected_w: float = 0.0  # power at 100 % (0: no power-based failure detection)
    luminaires: int = 0  # number of luminaires (0: unknown; lamp failure then uses the tolerance)
    power_curve: tuple[tuple[float, float], ...] = ((0.0, 0.0), (100.0, 1.0))  # level % -> share of expected_w
    poles: tuple[str, ...] = ()  # pole_node devices on the segment, in cable order (lighting/poles.py)

    def expected_at(self, level: float) -> float:
        """Expected power (W) at a level, from the curve by linear interpolation."""
        pts = self.power_curve
        if level <= pts[0][0]:
            return self.expected_w * pts[0][1]
        for (x0, y0), (x1, y1) in pairwise(pts):
            if level <= x1:
                return self.expected_w * (y0 + (y1 - y0) * (level - x0) / (x1 - x0))
        return self.expected_w * pts[-1][1]

    def dim_value(self, level: float) -> float:
        lo, hi = self.dim_range
        v = lo + (hi - lo) * level / 100.0
        return float(round(v)) if float(lo).is_integer() and float(hi).is_integer() else v


@dataclass(frozen=True, slots=True)
class Actuation:
    min_switch_interval_s: float = 60.0  # cool-down: no switching sooner than this after a switch
    warm_up_s: float = 60.0  # after switch-on: held at 100 %, power alarms suppressed
    settle_s: float = 30.0  # after a level change or ramp: power not judged yet
    readback_delay_s: float = 10.0  # read-back may lag the write this long before it is a failure
    reassert_s: float = 10.0  # a mismatching output is written again at most this often


@dataclass(frozen=True, slots=True)
class FailureDetection:
    tolerance: float = 0.15  # power above expected by more than this share: power too high
    lamp_share: float = 0.8  # a drop of this share of one luminaire's power: lamp(s) out
    no_power_share: float = 0.1  # below this share of expected while on: no power
    off_power_w: float = 20.0  # above this while commanded off: day burner (contactor stuck closed)
    supply_min_v: float = 100.0  # below this voltage: supply loss (not a contactor fault)
    confirm_s: float = 120.0  # a failure must hold this long at steady state (and clears as slowly)
    max_age_s: float = 60.0  # meter values older than this are not judged


@dataclass(frozen=True, slots=True)
class LightingSettings:
    segments: tuple[Segment, ...]
    calendars: Mapping[str, Calendar]
    programs: Mapping[str, Program]
    photocell: PhotocellSettings | None = None
    override_expiry_s: float = DEFAULT_EXPIRY_S
    day_start: dt.time = dt.time(12, 0)  # the calendar day runs from here to here (a night is one day)
    actuation: Actuation = Actuation()
    failure: FailureDetection = FailureDetection()

    def points(self) -> dict[str, str]:
        """Every point the controller reads or writes -> what it is used for."""
        out: dict[str, str] = {}
        for s in self.segments:
            for role in ("contactor", "feedback", "dim", "power", "energy", "voltage"):
                p = getattr(s, role)
                if p:
                    out[p] = f"{s.name}.{role}"
            for pole in s.poles:
                out[f"{pole}.status"] = f"{s.name}.pole"
        if self.photocell:
            out[self.photocell.point] = "photocell"
        for prog in self.programs.values():
            if prog.boost:
                out.setdefault(prog.boost.point, f"boost ({prog.name})")
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    segment: str
    on: bool
    level: float | None  # 0..100 (0 when off); None when the segment has no dimming output
    reason: str  # "override", "failsafe:clock-unknown", "failsafe:no-clock-no-photocell", "program:<name>"
    detail: str = ""  # how: "astro", "photocell", "astro-fallback", "step", "boost", "cool-down", "warm-up", ...
    target: float = 0.0  # the level asked for before cool-down, warm-up and ramp

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Write(NamedTuple):
    """Write `value` to `point` (then read it back). `why`: "change", "start", "reassert"."""

    point: str
    value: Any
    segment: str
    why: str


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "switched", "level", "reason", "mode", "photocell", "override", "counter", "site"
    message: str
    segment: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "segment": self.segment, "data": dict(self.data)}


@dataclass(slots=True)
class StepResult:
    decisions: dict[str, Decision]
    writes: list[Write]
    events: list[Event]
    conditions: list[Condition]  # alarm conditions whose state changed in this step
    mode: str  # "normal", "failsafe:clock-unknown", "failsafe:no-clock-no-photocell"


class SiteConfig(Protocol):
    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...
    @property
    def elevation(self) -> float: ...
    @property
    def timezone(self) -> str: ...


class LightingConfig(Protocol):
    """What from_config needs of an agent.config.Config (which agent/control does not import)."""

    @property
    def site(self) -> SiteConfig: ...
    @property
    def lighting(self) -> LightingSettings | None: ...
