"""Building blocks of the climate controller, each a small pure object:

* `dew_point_c(t, rh)` / `rh_from_dew_point(t, td)`: the Magnus formula with
  Sonntag's constants (17.62, 243.12 °C; Sensirion's application note), over water
  at every temperature (below 0 °C the heater's minimum temperature rule rules).
* `Switch`: one output with minimum on and off times; a safety trip bypasses them.
* `Debounce`: a contact accepted only after it held its new state `delay_s` (the
  first value at once; lighting's failure checks are a different thing:
  lighting_monitor.FailureCheck).
* `SensorWatch`: judges a T or RH point each step (missing, bad, stale, out of
  range, stuck), bridges a short fault with the last good value, and keeps that
  value and its time for the controller's bounded hold.

A snapshot entry is `(value, quality, age_s)` (quality a `Quality` or its string),
or None when the point has no value yet.
"""

from __future__ import annotations

import math
from typing import Any

A = 17.62
B = 243.12  # °C
E0 = 6.112  # hPa


def dew_point_c(t_c: float, rh: float) -> float:
    """Dew point (°C) of air at `t_c` °C and `rh` % relative humidity (RH clamped to 0.01..100)."""
    rh = 0.01 if rh < 0.01 else 100.0 if rh > 100.0 else rh
    g = math.log(rh / 100.0) + A * t_c / (B + t_c)
    return B * g / (A - g)


def rh_from_dew_point(t_c: float, td_c: float) -> float:
    """Relative humidity (%) of air at `t_c` with dew point `td_c` (the inverse of dew_point_c)."""
    return min(100.0, 100.0 * math.exp(A * td_c / (B + td_c) - A * t_c / (B + t_c)))


def saturation_vp_hpa(t_c: float) -> float:
    return E0 * math.exp(A * t_c / (B + t_c))


class Switch:
    """An on/off output with minimum on and off times.

    `apply(now, want, trip)` returns the state to command. The first call sets the
    state without delay (the timers start there). A change is held until the output
    has been in its current state `min_on_s`/`min_off_s`, unless `trip` is True (a
    safety trip switching towards the safe state). `held_until` says when a held
    change becomes possible (None when nothing is held).
    """

    __slots__ = ("changed_at", "held_until", "min_off_s", "min_on_s", "on", "point", "switches")

    def __init__(self, point: str, min_on_s: float, min_off_s: float) -> None:
        self.point = point
        self.min_on_s = min_on_s
        self.min_off_s = min_off_s
        self.on: bool | None = None
        self.changed_at: float | None = None
        self.held_until: float | None = None
        self.switches = 0

    def apply(self, now: float, want: bool, trip: bool = False) -> bool:
        self.held_until = None
        if self.on is None or self.changed_at is None:  # the first call (both are set together)
            self.on, self.changed_at = want, now
            return want
        if want == self.on:
            return want
        ready = self.changed_at + (self.min_on_s if self.on else self.min_off_s)
        if trip or now >= ready:
            self.on, self.changed_at = want, now
            self.switches += 1
            return want
        self.held_until = ready
        return self.on


class Debounce:
    """A boolean accepted once it held its new value `delay_s` (the first value at once)."""

    __slots__ = ("_cand", "_since", "delay_s", "state")

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.state: bool | None = None
        self._cand: bool | None = None
        self._since = 0.0

    def update(self, now: float, value: bool) -> bool:
        if self.state is None:
            self.state = value
        elif value == self.state:
            self._cand = None
        elif value != self._cand:
            self._cand, self._since = value, now
            if self.delay_s <= 0:
                self.state, self._cand = value, None
        elif now - self._since >= self.delay_s:
            self.state, self._cand = value, None
        return self.state

    def pending_until(self) -> float | None:
        return None if self._cand is None else self._since + self.delay_s


def good_value(entry: Any, max_age_s: float) -> tuple[Any, str | None]:
    """(value, None) for a usable snapshot entry, else (None, what is wrong)."""
    if entry is None:
        return None, "no value"
    value, quality, age = entry
    if quality != "good" and quality != "substituted":
        return None, str(quality)
    if value is None:
        return None, "no value"
    if age is not None and age > max_age_s:
        return None, f"stale ({age:.0f} s old)"
    return value, None


class SensorWatch:
    """Judges one analogue sensor point each step; see the module docstring.

    `check(now, entry)` returns (value to use or None, confirmed fault or None). A
    fault is confirmed after it lasted `confirm_s`; until then the last good value
    is returned. `last` / `last_at` are the last good value and when it was seen.
    """

    __slots__ = (
        "_started",
        "_stuck_since",
        "_stuck_value",
        "confirm_s",
        "fault",
        "fault_since",
        "hi",
        "last",
        "last_at",
        "lo",
        "max_age_s",
        "name",
        "stuck_s",
    )

    def __init__(
        self, name: str, valid: tuple[float, float], max_age_s: float, confirm_s: float, stuck_s: float
    ) -> None:
        self.name = name
        self.lo, self.hi = valid
        self.max_age_s = max_age_s
        self.confirm_s = confirm_s
        self.stuck_s = stuck_s
        self.last: float | None = None
        self.last_at: float | None = None
        self.fault: str | None = None  # the current (maybe unconfirmed) fault
        self.fault_since: float | None = None
        self._stuck_value: float | None = None
        self._stuck_since = 0.0
        self._started: float | None = None

    def _judge(self, now: float, entry: Any) -> tuple[float | None, str | None]:
        value, why = good_value(entry, self.max_age_s)
        if why is not None:
            return None, why
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, f"not a number ({value!r})"
        if not self.lo <= value <= self.hi:
            return None, f"out of range ({value:g} not in {self.lo:g}..{self.hi:g})"
        if self.stuck_s > 0:
            if value != self._stuck_value:
                self._stuck_value, self._stuck_since = value, now
            elif now - self._stuck_since >= self.stuck_s:
                return None, f"stuck at {value:g} for {now - self._stuck_since:.0f} s"
        return float(value), None

    def check(self, now: float, entry: Any) -> tuple[float | None, str | None]:
        started = self._started
        if started is None:
            started = self._started = now
        value, why = self._judge(now, entry)
        if why is None:
            self.last, self.last_at = value, now
            self.fault = self.fault_since = None
            return value, None
        since = self.fault_since
        if self.fault is None or since is None:  # a new fault (fault and fault_since are set together)
            since = self.fault_since = now if self.last_at is not None else started
        self.fault = why
        if now - since >= self.confirm_s:
            return None, why
        return self.last, None  # bridged (None before the first good value)
