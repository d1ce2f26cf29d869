"""Failure detection and accounting of one segment, from its meter (domain.md §4.8, §4.9).

Owns what the meter says about a segment:

* failure detection, judged only at steady state (not during warm-up, not within
  `settle_s` of a switch or level change, never on stale/bad meter values), each
  cause confirmed for `confirm_s` before its condition goes active and absent as
  long before it clears:
  - "lamp_failure" (warning): on, power below expected by more than `lamp_share` of
    one luminaire's share (or by `tolerance` when the luminaire count is unknown);
  - "power_too_high" (warning): on, power above expected by more than `tolerance`;
  - "no_power" (critical): on, power below `no_power_share` of expected: contactor
    stuck open or breaker tripped; "supply_loss" (critical) instead when the
    segment's voltage is below `supply_min_v`;
  - "day_burner" (critical): commanded off but more than `off_power_w` flowing:
    contactor stuck closed.
  Expected power = expected_w × the power curve at the commanded level.
* accounting: burning hours (commanded lit, and not without power), switch-on count,
  energy from the meter's kWh counter as deltas (a counter that goes back — meter
  replaced or reset — or jumps beyond what the segment could draw is re-based, not
  counted; bad or stale values are skipped and the next good delta covers the gap),
  and energy at full power over the lit time, so energy saved = full − used.
`state()` / `restore()` are JSON-safe. Pure: times are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agent.control.lighting.model import Actuation, FailureDetection, Segment

SEVERITY = {
    "day_burner": "critical",
    "supply_loss": "critical",
    "no_power": "critical",
    "lamp_failure": "warning",
    "power_too_high": "warning",
}
KINDS = tuple(SEVERITY)
Causes = tuple[bool | None, ...]  # per kind, in KINDS order: the cause now, None = cannot judge
_CANNOT_JUDGE: Causes = (None, None, None, None, None)


class FailureCheck:
    """One failure kind of a segment: its cause confirmed for `delay` before it is
    active, and absent as long before it clears; `message` says what is wrong while
    active. Unlike climate's contact Debounce it starts inactive, and a step that
    cannot judge (None) restarts the confirmation."""

    __slots__ = ("_since", "active", "message")

    def __init__(self) -> None:
        self.active = False
        self._since: float | None = None
        self.message = ""

    def update(self, mono: float, cause: bool | None, delay: float) -> bool:
        """cause None: cannot judge now (the timer restarts). Returns True when `active` flipped."""
        if cause is None or cause == self.active:
            self._since = None
            return False
        if self._since is None:
            self._since = mono
        if mono - self._since >= delay:
            self.active, self._since = cause, None
            return True
        return False


class Monitor:
    __slots__ = (
        "_at_level",
        "_cap_w",
        "_causes",
        "_counter_mono",
        "_last_mono",
        "_no_power",
        "_supply_loss",
        "_timing",
        "a",
        "burning_s",
        "checks",
        "counter",
        "counter_utc",
        "energy_kwh",
        "f",
        "full_kwh",
        "notes",
        "power",
        "seg",
        "switches",
    )

    def __init__(self, segment: Segment, actuation: Actuation, failure: FailureDetection) -> None:
        self.seg, self.a, self.f = segment, actuation, failure
        self.checks = {kind: FailureCheck() for kind in SEVERITY}
        self._causes: Causes = ()
        self._timing = False  # some check's confirmation timer is running
        self.burning_s = 0.0
        self.switches = 0
        self.energy_kwh = 0.0
        self.full_kwh = 0.0
        self.counter: float | None = None  # last good energy counter value
        self._counter_mono: float | None = None
        self.counter_utc: float | None = None
        self._last_mono: float | None = None
        self.power: float | None = None
        self.notes: list[str] = []  # counter re-bases since the last look (the controller turns them into events)
        self._no_power, self._supply_loss = self.checks["no_power"], self.checks["supply_loss"]
        self._cap_w = 2.0 * max(segment.expected_w, 1000.0)  # the counter's plausible rise: twice the draw
        self._at_level: dict[float, tuple[float, float, float, float]] = {}  # level -> thresholds (judge)

    # -- failure detection -------------------------------------------------------------------------

    def judge(self, mono: float, on: bool, level: float, steady: bool, image: Mapping[str, Any]) -> list[str]:
        """Update the checks; returns the kinds whose state flipped."""
        seg, f = self.seg, self.f
        if seg.power is None:
            return []
        sample = image.get(seg.power)
        if type(sample) is tuple and len(sample) == 3:
            p, quality, age = sample
            if not (
                quality == "good" and type(p) is float and age is not None and age <= f.max_age_s and -1e300 < p < 1e300
            ):  # else _value()'s common case
                p = _value(sample, f.max_age_s)
        else:
            p = _value(sample, f.max_age_s)
        self.power = p
        if seg.expected_w <= 0:
            return []
        exp = 0.0
        v: float | None = 0.0  # the segment's voltage, when it was needed
        if p is None or not steady:
            causes: Causes = _CANNOT_JUDGE
        elif not on:
            causes = (p > f.off_power_w, False, False, False, False)
        else:
            exp, no_power_w, low_w, high_w = self._at_level.get(level) or self._thresholds(level)
            none = p < no_power_w
            supply = False
            if none and seg.voltage:
                v = _value(image.get(seg.voltage), f.max_age_s)
                supply = v is not None and v < f.supply_min_v
            causes = (False, supply, none and not supply, not none and p < low_w, p > high_w)
        if causes == self._causes and not self._timing:
            return []  # nothing new and no confirmation running
        self._causes = causes
        flipped = []
        checks, delay = self.checks, f.confirm_s
        for kind, cause in zip(KINDS, causes, strict=True):
            chk = checks[kind]
            if chk._since is None and (cause is None or cause == chk.active):
                continue  # nothing pending, nothing new (the common case, kept cheap)
            if chk.update(mono, cause, delay):
                flipped.append(kind)
                chk.message = self._message(kind, p, exp, level, v) if chk.active else ""
        self._timing = any(c._since is not None for c in checks.values())
        return flipped

    def _thresholds(self, level: float) -> tuple[float, float, float, float]:
        """(expected, no-power, lamp-failure and too-high thresholds) in W at `level`."""
        seg, f = self.seg, self.f
        exp = seg.expected_at(level)
        drop = f.lamp_share * exp / seg.luminaires if seg.luminaires > 0 else f.tolerance * exp
        if len(self._at_level) > 256:  # ramps pass through many levels
            self._at_level.clear()
        th = self._at_level[level] = (exp, f.no_power_share * exp, exp - drop, exp * (1 + f.tolerance))
        return th

    def _message(self, kind: str, p: Any, exp: float, level: float, v: Any) -> str:
        n = self.seg.luminaires
        if kind == "day_burner":
            return f"contactor stuck closed: {p:.0f} W while commanded off"
        if kind == "supply_loss":
            return f"supply loss: {v} V, no power while commanded on"
        if kind == "no_power":
            return (
                f"no power while commanded on ({p:.0f} W, expected {exp:.0f} W): "
                f"contactor stuck open or breaker tripped"
            )
        if kind == "lamp_failure":
            lamps = f", about {max(1, round((exp - p) / (exp / n)))} of {n} luminaires out" if n > 0 and exp > 0 else ""
            return f"lamp failure: {p:.0f} W at {level:.0f} %, expected {exp:.0f} W{lamps}"
        return f"power too high: {p:.0f} W at {level:.0f} %, expected {exp:.0f} W"

    # -- accounting ------------------------------------------------------------------------------------

    def account(self, mono: float, utc: float | None, lit: bool, switched_on: bool, image: Mapping[str, Any]) -> None:
        if switched_on:
            self.switches += 1
        last = self._last_mono
        if lit and last is not None:
            dt_s = mono - last
            if not dt_s > 0.0:
                dt_s = 0.0  # = max(0.0, dt_s)
            if not (self._no_power.active or self._supply_loss.active):
                self.burning_s += dt_s
            self.full_kwh += self.seg.expected_w * dt_s / 3.6e6
        self._last_mono = mono
        if self.seg.energy is None:
            return
        sample = image.get(self.seg.energy)
        if (
            type(sample) is tuple
            and len(sample) == 3
            and type(sample[0]) is float
            and type(sample[2]) is float
            and sample[1] == "good"
            and sample[2] >= 0.0
            and -1e300 < sample[0] < 1e300
        ):
            v, _, age = sample  # _value()'s common case, and a reading age
            at = mono - age
        else:
            v = _value(sample, math.inf)
            if v is None:
                return
            age = sample[2] if isinstance(sample, tuple) and len(sample) == 3 else getattr(sample, "age", None)
            at = mono - age if isinstance(age, (int, float)) and age >= 0 else mono
        # `at`: when the meter read it: a counter polled every N s shows one delta per poll
        counter, counter_mono = self.counter, self._counter_mono
        if counter_mono is not None and at <= counter_mono + 1e-6 and v == counter:
            return  # the same reading as last step
        if counter is not None:
            if counter_mono is not None:
                elapsed = at - counter_mono
            elif utc is not None and self.counter_utc is not None:
                elapsed = utc - self.counter_utc  # restored: the downtime counts
            else:
                elapsed = None
            delta = v - counter
            cap = None if elapsed is None else 0.01 + self._cap_w * (elapsed if elapsed > 0.0 else 0.0) / 3.6e6
            if delta < 0:
                self.notes.append(
                    f"energy counter went back from {self.counter} to {v} kWh (meter reset or replaced): re-based"
                )
            elif cap is None:
                self.notes.append(f"energy counter {v} kWh after a restart with no clock: re-based")
            elif delta > cap:
                self.notes.append(
                    f"energy counter jumped by {delta:.3f} kWh in {elapsed:.0f} s (more than {cap:.3f}): re-based"
                )
            else:
                self.energy_kwh += delta
        self.counter, self._counter_mono, self.counter_utc = v, at, None if utc is None else utc - (mono - at)

    def state(self) -> dict[str, Any]:
        return {
            "burning_h": self.burning_s / 3600.0,
            "switches": self.switches,
            "energy_kwh": self.energy_kwh,
            "full_power_kwh": self.full_kwh,
            "saved_kwh": self.full_kwh - self.energy_kwh if self.seg.expected_w > 0 else None,
            "counter_kwh": self.counter,
            "counter_utc": self.counter_utc,
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        def num(key: str, default: float = 0.0) -> float:
            v = d.get(key, default)
            return (
                float(v)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                else default
            )

        self.burning_s = num("burning_h") * 3600.0
        self.switches = int(num("switches"))
        self.energy_kwh = num("energy_kwh")
        self.full_kwh = num("full_power_kwh")
        c, cu = d.get("counter_kwh"), d.get("counter_utc")
        self.counter = float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else None
        self.counter_utc = float(cu) if isinstance(cu, (int, float)) and not isinstance(cu, bool) else None
        self._counter_mono = None


def _value(sample: Any, max_age: float) -> float | None:
    """A good, fresh, finite number from a snapshot entry, else None."""
    if sample is None:
        return None
    if isinstance(sample, tuple) and len(sample) == 3:  # the common case, kept cheap
        value, quality, age = sample
        if quality == "good" and type(value) is float and age is not None and age <= max_age and -1e300 < value < 1e300:
            return value
    try:
        value, quality, age = sample[0], sample[1], sample[2] if len(sample) > 2 else 0.0
    except (TypeError, IndexError, KeyError):
        return None
    if quality != "good" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or (isinstance(age, (int, float)) and age > max_age):
        return None
    return float(value)
