"""The photocell: a lux sensor turned into "dark" / "light" with hysteresis and delays,
and the judgement whether the sensor can be trusted at all.

Owns the lux point's interpretation. Dark when the illuminance stays at or below
`on_lux` for `on_delay_s`; light again when it stays at or above `off_lux` for
`off_delay_s` (defaults 35 / 55 lx, 90 s: a passing cloud or headlight does not
switch). The first value after start (or after a fault) decides at once.

Faults, each held `fault_delay_s` before it is declared (a single failed poll is not
a fault) and cleared only after `recover_s` of good values:

* "missing": no value in the snapshot; "bad": quality bad/substituted or not a number;
* "stale": quality stale, or older than `max_age_s`;
* "out-of-range": outside `min_lux`..`max_lux`;
* "stuck": the value has not changed (beyond `stuck_tolerance_lux`) while the sun
  went from day to night or night to day (the controller hands in the astro phase),
  or, with the clock unknown, for `stuck_after_s`;
* "implausible": daylight (at least `night_max_lux`) while the sun is 6 degrees or more
  below the horizon — a shorted or mis-scaled sensor would otherwise keep the lights
  off in the dark part of twilight, where the time-based backstop does not reach at
  low latitudes (the sun rises fast there).

Whether the photocell is *used* (only inside an astronomical window, or as the
fail-safe when the clock is unknown) is the program's and controller's business.
Pure: the monotonic time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FAULTS = ("missing", "bad", "stale", "out-of-range", "stuck", "implausible")


@dataclass(frozen=True, slots=True)
class PhotocellSettings:
    point: str
    on_lux: float = 35.0
    off_lux: float = 55.0
    on_delay_s: float = 90.0
    off_delay_s: float = 90.0
    max_age_s: float = 60.0
    min_lux: float = 0.0
    max_lux: float = 100_000.0
    stuck_tolerance_lux: float = 0.0
    stuck_after_s: float = 30 * 3600.0  # with no clock: unchanged this long is stuck
    fault_delay_s: float = 30.0
    recover_s: float = 60.0
    night_max_lux: float = 1000.0  # more than this with the sun 6 degrees down is not daylight


class Photocell:
    __slots__ = (
        "_changed_at",
        "_cross_since",
        "_good_since",
        "_last_value",
        "_pending",
        "_pending_since",
        "_seen_day",
        "_seen_night",
        "dark",
        "fault",
        "lux",
        "s",
    )

    def __init__(self, settings: PhotocellSettings) -> None:
        self.s = settings
        self.dark: bool | None = None  # None until a first good value
        self.fault: str | None = None  # a declared fault (see FAULTS), None when trusted
        self.lux: float | None = None
        self._pending: str | None = None  # a fault seen but not yet declared
        self._pending_since = 0.0
        self._good_since: float | None = None
        self._cross_since: float | None = None  # the value has been across the threshold since
        self._last_value: float | None = None
        self._changed_at = 0.0
        self._seen_day = self._seen_night = False

    @property
    def healthy(self) -> bool:
        return self.fault is None and self.dark is not None

    def update(self, mono: float, sample: Any, phase: str | None = None) -> None:
        """Feed one snapshot entry (value, quality, age) or None. `phase`: "day", "night",
        "twilight" from the astro clock, or None when the clock is unknown."""
        s = self.s
        problem: str | None
        value: float | None
        if (
            type(sample) is tuple
            and len(sample) == 3
            and sample[1] == "good"
            and type(sample[0]) is float
            and sample[2] is not None
            and sample[2] <= s.max_age_s
            and s.min_lux <= sample[0] <= s.max_lux
        ):
            problem, value = None, sample[0]  # _classify()'s common case
        else:
            problem, value = self._classify(sample)
        if problem is None and value is not None:  # (_classify gives a value exactly when no problem)
            if phase == "night" and value >= s.night_max_lux:
                problem = "implausible"
            else:
                problem = self._track_stuck(mono, value, phase)
            if problem is None:
                self._good(mono, value)
                return
        self._good_since = None
        if problem == "stuck":  # the stuck judgement has its own long delay built in
            self.fault = problem
            return
        if self._pending != problem:
            self._pending, self._pending_since = problem, mono
        if self.fault is not None or mono - self._pending_since >= s.fault_delay_s:
            self.fault = problem

    def _good(self, mono: float, value: float) -> None:
        """A trusted value: recover from a fault after `recover_s`, then dark or light."""
        s = self.s
        self.lux = value
        self._pending = None
        good_since = self._good_since
        if good_since is None:
            good_since = self._good_since = mono
        if self.fault is not None and mono - good_since >= s.recover_s:
            self.fault = None
            self.dark = None  # decide afresh from the current value
        dark = self.dark
        if dark is not None and not (value >= s.off_lux if dark else value <= s.on_lux):
            self._cross_since = None  # _hysteresis()'s common case: not across the threshold
            return
        self._hysteresis(mono, value)

    def _classify(self, sample: Any) -> tuple[str | None, float | None]:
        if sample is None:
            return "missing", None
        if isinstance(sample, tuple) and len(sample) == 3:  # the common case, kept cheap
            value, quality, age = sample
            if (
                quality == "good"
                and type(value) is float
                and age is not None
                and age <= self.s.max_age_s
                and self.s.min_lux <= value <= self.s.max_lux
            ):
                return None, value
        try:
            value, quality, age = sample
        except (TypeError, ValueError):
            return "bad", None
        q = str(quality)
        if q == "stale" or (isinstance(age, (int, float)) and age > self.s.max_age_s):
            return "stale", None
        if q != "good":
            return "bad", None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "bad", None
        if not self.s.min_lux <= value <= self.s.max_lux:
            return "out-of-range", None
        return None, float(value)

    def _track_stuck(self, mono: float, value: float, phase: str | None) -> str | None:
        if self._last_value is None or abs(value - self._last_value) > self.s.stuck_tolerance_lux:
            self._last_value, self._changed_at = value, mono
            self._seen_day = self._seen_night = False
            return None
        if phase == "day":
            self._seen_day = True
        elif phase == "night":
            self._seen_night = True
        if (self._seen_day and self._seen_night) or (phase is None and mono - self._changed_at >= self.s.stuck_after_s):
            return "stuck"
        return None

    def _hysteresis(self, mono: float, lux: float) -> None:
        s = self.s
        if self.dark is None:
            self.dark = lux <= s.on_lux or (lux < s.off_lux and lux < (s.on_lux + s.off_lux) / 2)
            self._cross_since = None
            return
        crossing = lux >= s.off_lux if self.dark else lux <= s.on_lux
        if not crossing:
            self._cross_since = None
            return
        if self._cross_since is None:
            self._cross_since = mono
        if mono - self._cross_since >= (s.off_delay_s if self.dark else s.on_delay_s):
            self.dark = not self.dark
            self._cross_since = None

    def status(self) -> dict[str, Any]:
        return {"point": self.s.point, "lux": self.lux, "dark": self.dark, "fault": self.fault, "trusted": self.healthy}
