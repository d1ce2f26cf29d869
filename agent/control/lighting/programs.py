"""Control programs (TALQ ControlProgram): when a segment is lit, and at which level.

Owns the program model and its evaluation at one instant:

* active period (`period`): "absolute" (local on/off times, may wrap midnight),
  "astro" (sunset/sunrise ± offsets), "sensor" (the photocell alone), "astro+sensor"
  (the photocell decides only inside an astronomical window, and the astro clock is
  the backstop: on at the latest at sunset + `latest_on_sunset_min`, off at the
  latest at sunrise + `latest_off_sunrise_min`; between those and the photocell's
  window the lights are on regardless). A sensor period whose photocell is degraded
  runs on the astro clock (sunset/sunrise offsets) instead: "astro-fallback".
* level: `level` (default 100), overlaid by fixed-time steps (local wall time, each
  holds until the next, cyclic over the day; a step inside a spring-forward gap takes
  effect when the clock jumps over it, a step in the repeated autumn hour at its first
  occurrence) and astronomical steps (sunset/sunrise + offset), most recent wins.
  A level of 0 means off.
* dynamic boost from a motion input: hold time, operation "max" (never dims) or
  "set", a cap on its duration (a stuck sensor does not boost forever).
* ramp times: rampToLevel up/down, applied by the actuation layer.

Astro days and their dark intervals come from astro.AstroClock. Pure: times are UTC
seconds, the local time of day is handed in.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from agent.control.lighting.astro import AstroClock, Night

PERIODS = ("absolute", "astro", "sensor", "astro+sensor")
BOOST_OPERATIONS = ("max", "set")
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Step:
    """A fixed-time control: from local wall time `at` on, `level` (until the next step)."""

    at: dt.time
    level: float


@dataclass(frozen=True, slots=True)
class AstroStep:
    """An astronomical time control: from `event` ("sunset"/"sunrise") + `offset_min` on, `level`."""

    event: str
    offset_min: float
    level: float


@dataclass(frozen=True, slots=True)
class Boost:
    """Dynamic control: motion on `point` raises the level for `hold_s` after the last detection."""

    point: str
    level: float = 100.0
    hold_s: float = 300.0
    operation: str = "max"
    max_s: float = 1800.0  # a detection lasting longer than this is ignored (stuck sensor)


@dataclass(frozen=True, slots=True)
class Program:
    name: str
    period: str = "astro"
    on: dt.time | None = None  # absolute period
    off: dt.time | None = None
    sunset_offset_min: float = 0.0  # astro period (and the fallback of sensor periods)
    sunrise_offset_min: float = 0.0
    sensor_from_sunset_min: float = -45.0  # astro+sensor: the photocell may switch on from here ...
    latest_on_sunset_min: float = 30.0  # ... and the lights are on from here at the latest
    sensor_from_sunrise_min: float = -30.0  # the photocell may switch off from here ...
    latest_off_sunrise_min: float = 45.0  # ... and the lights are off from here at the latest
    level: float = 100.0
    steps: tuple[Step, ...] = ()
    astro_steps: tuple[AstroStep, ...] = ()
    boost: Boost | None = None
    ramp_up_s: float = 0.0
    ramp_down_s: float = 0.0

    @property
    def uses_photocell(self) -> bool:
        return self.period in ("sensor", "astro+sensor")

    def on_off_s(self) -> tuple[int, int]:
        """The local times of day (seconds) of an absolute period's `on` and `off`."""
        if self.on is None or self.off is None:
            raise ValueError(f"program {self.name}: an absolute period needs `on` and `off`")
        return _seconds(self.on), _seconds(self.off)


def _seconds(t: dt.time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


class PhotocellView(NamedTuple):
    """What a program needs of the photocell: is it trusted, and does it say dark."""

    healthy: bool
    dark: bool | None


class Outcome(NamedTuple):
    active: bool  # the active period holds (a level of 0 inside it is still "off")
    level: float
    how: str  # "astro", "absolute", "photocell", "astro-fallback", "astro-backstop"


def local_instant(day: dt.date, at: dt.time, tz: ZoneInfo) -> float:
    """UTC seconds when the local wall clock of `day` reaches `at` (see the module doc for DST)."""
    naive = dt.datetime.combine(day, at)
    a, b = naive.replace(tzinfo=tz, fold=0).timestamp(), naive.replace(tzinfo=tz, fold=1).timestamp()
    first = min(a, b)
    if dt.datetime.fromtimestamp(first, tz).replace(tzinfo=None) == naive:
        return first  # exists (first occurrence when repeated)
    lo, hi = min(a, b), max(a, b)  # a gap: local time before `at` at lo, after it at hi
    while hi - lo > 0.5:
        mid = (lo + hi) / 2
        if dt.datetime.fromtimestamp(mid, tz).replace(tzinfo=None) < naive:
            lo = mid
        else:
            hi = mid
    return float(round(hi))


# per window kind (0: the active period, 1: astro+sensor's backstop, 2: its photocell window),
# the (start, end) intervals in UTC seconds
Windows = tuple[tuple[tuple[float, float], ...], ...]


class Schedule:
    """Evaluates programs at the site; caches each astro day's windows and level timeline."""

    def __init__(self, astro: AstroClock) -> None:
        self.astro = astro
        self._windows: dict[tuple[str, dt.date], Windows] = {}
        self._timelines: dict[tuple[str, dt.date], tuple[list[float], list[float]]] = {}
        # program -> (t_lo, t_hi, tod_lo, tod_hi, photocell, Outcome): see outcome()
        self._outcomes: dict[str, tuple[float, float, float, float, PhotocellView | None, Outcome]] = {}

    def clear(self) -> None:
        self._windows.clear()
        self._timelines.clear()
        self._outcomes.clear()

    def outcome(self, program: Program, t: float, tod_s: float, photocell: PhotocellView | None) -> Outcome:
        """evaluate(), cached: an outcome holds, for the same photocell view, until the next
        boundary of its astro day, windows, level steps or (absolute) on/off time."""
        c = self._outcomes.get(program.name)
        if c is not None and c[0] <= t < c[1] and c[2] <= tod_s < c[3] and c[4] == photocell:
            return c[5]
        out = self.evaluate(program, t, tod_s, photocell)
        self._outcomes[program.name] = (*self._span(program, t, tod_s), photocell, out)
        return out

    def _span(self, p: Program, t: float, tod_s: float) -> tuple[float, float, float, float]:
        """(t_lo, t_hi, tod_lo, tod_hi): nothing evaluate() compares `t` or `tod_s` with lies
        inside, so its outcome is the same for every t in [t_lo, t_hi), tod in [tod_lo, tod_hi)."""
        night = self.astro.night_at(t)
        lo, hi, tod_lo, tod_hi = night.noon, night.next_noon, -math.inf, math.inf
        bounds: list[float] = []
        if p.period == "absolute":
            for edge in p.on_off_s():
                if edge <= tod_s:
                    tod_lo = max(tod_lo, edge)
                else:
                    tod_hi = min(tod_hi, edge)
        else:
            bounds = [b for kind in self._window(p, night) for iv in kind for b in iv]
        if p.steps or p.astro_steps:
            times = self._timeline_of(p, night)[0]
            i = bisect.bisect_right(times, t)
            bounds += times[max(0, i - 1) : i + 1]
        for b in bounds:
            if b <= t:
                lo = max(lo, b)
            else:
                hi = min(hi, b)
        return lo, hi, tod_lo, tod_hi

    def evaluate(self, program: Program, t: float, tod_s: float, photocell: PhotocellView | None) -> Outcome:
        """Is `program` active at UTC `t` (local time of day `tod_s` seconds), and at which level."""
        active, how = self._active(program, t, tod_s, photocell)
        return Outcome(active, self.level(program, t) if active else 0.0, how)

    # -- active period --------------------------------------------------------------------

    def _active(self, p: Program, t: float, tod_s: float, pc: PhotocellView | None) -> tuple[bool, str]:
        kind = p.period
        if kind == "absolute":
            on, off = p.on_off_s()
            inside = on <= tod_s < off if on <= off else (tod_s >= on or tod_s < off)
            return inside, "absolute"
        dark = pc.dark if pc is not None and pc.healthy else None  # None: the photocell cannot say
        if kind == "astro" or dark is None:  # a sensor period with a degraded photocell: the astro clock
            return self._in_windows(p, t, 0), "astro" if kind == "astro" else "astro-fallback"
        if kind == "sensor":
            return dark, "photocell"
        if self._in_windows(p, t, 1):  # astro+sensor: deep night, on regardless of the photocell
            return True, "astro-backstop"
        if self._in_windows(p, t, 2):
            return dark, "photocell"
        return False, "astro"

    def _in_windows(self, p: Program, t: float, which: int) -> bool:
        night = self.astro.night_at(t)
        return any(lo <= t < hi for lo, hi in self._window(p, night)[which])

    def _window(self, p: Program, night: Night) -> Windows:
        """For each window kind, the intervals of this astro day and its neighbours (offsets may
        push a window over the span's ends: short nights near polar day and night)."""
        key = (p.name, night.day)
        w = self._windows.get(key)
        if w is None:
            if len(self._windows) > 64:
                self._windows.clear()
            nights = (night, self.astro.night_of(night.day - _DAY), self.astro.night_of(night.day + _DAY))
            w = self._windows[key] = tuple(
                tuple(iv for n in nights if (iv := self._shift(n, a, b))[0] < iv[1])
                for a, b in (
                    (p.sunset_offset_min, p.sunrise_offset_min),
                    (p.latest_on_sunset_min, p.sensor_from_sunrise_min),
                    (p.sensor_from_sunset_min, p.latest_off_sunrise_min),
                )
            )
        return w

    @staticmethod
    def _shift(night: Night, start_min: float, end_min: float) -> tuple[float, float]:
        """The dark interval with offsets; the span's own ends (polar night) are not shifted."""
        if night.dark_from is None:
            return (0.0, 0.0)
        lo = night.dark_from + (60.0 * start_min if night.dark_from != night.noon else 0.0)
        end = night.dark_until or 0.0
        hi = end + (60.0 * end_min if end != night.next_noon else 0.0)
        return (lo, hi) if lo < hi else (0.0, 0.0)

    # -- level -------------------------------------------------------------------------------

    def level(self, p: Program, t: float) -> float:
        if not p.steps and not p.astro_steps:
            return p.level
        times, levels = self._timeline_of(p, self.astro.night_at(t))
        i = bisect.bisect_right(times, t)
        return levels[i - 1] if i else p.level

    def _timeline_of(self, p: Program, night: Night) -> tuple[list[float], list[float]]:
        key = (p.name, night.day)
        tl = self._timelines.get(key)
        if tl is None:
            if len(self._timelines) > 64:
                self._timelines.clear()
            tl = self._timelines[key] = self._timeline(p, night)
        return tl

    def _timeline(self, p: Program, night: Night) -> tuple[list[float], list[float]]:
        tz = self.astro.tz
        events: list[tuple[float, int, float]] = []
        for day in (night.day - _DAY, night.day, night.day + _DAY):
            for s in p.steps:
                events.append((local_instant(day, s.at, tz), 0, s.level))
        for nt in (self.astro.night_of(night.day - _DAY), night):
            for a in p.astro_steps:
                base = nt.sunset if a.event == "sunset" else nt.sunrise
                if base is not None:  # no such event (polar): the step is skipped that night
                    events.append((base + 60.0 * a.offset_min, 1, a.level))
        events.sort()
        return [e[0] for e in events], [e[2] for e in events]


class BoostState:
    """Motion detections of one input: boost is on while detected and `hold_s` after."""

    __slots__ = ("boost", "capped", "last", "since")

    def __init__(self, boost: Boost) -> None:
        self.boost = boost
        self.last: float | None = None  # monotonic time of the last detection
        self.since: float | None = None  # start of the current continuous detection
        self.capped = False  # a detection lasted longer than max_s: ignored until it ends

    def update(self, mono: float, value: Any, good: bool) -> None:
        detected = good and _truthy(value)
        if not detected:
            self.since = None
            self.capped = False
            return
        if self.since is None:
            self.since = mono
        if mono - self.since > self.boost.max_s:
            self.capped = True
            return
        self.last = mono

    def active(self, mono: float) -> bool:
        return not self.capped and self.last is not None and mono - self.last < self.boost.hold_s

    def apply(self, level: float) -> float:
        return max(level, self.boost.level) if self.boost.operation == "max" else self.boost.level


def _truthy(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v == v and v > 0  # NaN is not a detection
    return False
