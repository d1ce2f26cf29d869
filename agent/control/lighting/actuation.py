"""Actuation of one segment: from the level asked for to what is written, and read-back.

Owns the output side of a segment:

* cool-down: the contactor does not switch again sooner than `min_switch_interval_s`
  after its last switch (every source obeys it; the very first decision after start
  is free);
* warm-up: for `warm_up_s` after switch-on a dimmable segment is held at 100 % (no
  dimming; HID run-up) and power alarms are suppressed (see lighting_monitor);
* ramps: a new level is approached linearly over the program's ramp-up/-down time;
* writes: the contactor coil (inverted when the contactor hangs on NC contacts) and
  the dimming value are written on change and at start, and written again
  ("reassert") when the read-back disagrees, at most every `reassert_s` — so outputs
  come back after a device lost its state or reconnected;
* read-back: the written point's value in the process image must match within
  `readback_delay_s`, else "relay_failure" (contactor coil) or "dimming_failure";
  a contactor auxiliary contact (`feedback`) that disagrees with the command is
  "contactor_failure".
Pure: monotonic time in, Write tuples and condition states out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agent.control.lighting.model import Actuation, Segment, Write


class SegmentActuation:
    """The output side of one segment (see the module docstring)."""

    __slots__ = (
        "_dim_at",
        "_last_write",
        "_mismatch",
        "_ramp",
        "_target",
        "_tol",
        "_written",
        "a",
        "changed_at",
        "last_switch",
        "level",
        "level_changed",
        "on",
        "on_since",
        "readback",
        "readback_changed",
        "seg",
        "switched",
    )

    def __init__(self, segment: Segment, actuation: Actuation) -> None:
        self.seg = segment
        self.a = actuation
        self.on: bool | None = None  # commanded state; None before the first step
        self.level = 0.0  # output level now (after warm-up and ramp)
        self.last_switch: float | None = None  # the last switch (not the first decision after start)
        self.changed_at: float | None = None  # the last change of the commanded state, the first one included
        self.on_since: float | None = None
        self.level_changed = 0.0  # monotonic time the output level last moved (ramps included)
        self._ramp: tuple[float, float, float, float] | None = None  # (from, to, start, duration)
        self._target: float | None = None
        self._written: dict[str, Any] = {}
        self._last_write: dict[str, float] = {}
        self._mismatch: dict[str, float] = {}  # point -> monotonic time a mismatch was first seen
        self.switched = False  # the last `apply` switched the contactor
        self.readback: dict[str, str | None] = {
            "relay_failure": None,
            "contactor_failure": None,
            "dimming_failure": None,
        }  # kind -> message when failing
        self.readback_changed = False  # some entry of `readback` went from None to a message or back
        self._tol = abs(segment.dim_range[1] - segment.dim_range[0]) * 0.01  # dimming read-back tolerance
        self._dim_at: tuple[float, float] = (math.nan, 0.0)  # (level, seg.dim_value(level)) of the last write

    def steady(self, mono: float) -> bool:
        """Settled `settle_s` since the last switch or level change, and not warming up:
        power can be judged."""
        changed_at, level_changed = self.changed_at, self.level_changed
        return (
            changed_at is not None
            and mono - (level_changed if level_changed > changed_at else changed_at) >= self.a.settle_s
            and not self.warming(mono)
        )

    def warming(self, mono: float) -> bool:
        return self.on is True and self.on_since is not None and mono - self.on_since < self.a.warm_up_s

    def settled(self, mono: float, want_on: bool, target: float) -> bool:
        """apply(mono, want_on, target, ...) would return (on, level, "") and change nothing but
        `switched` (no switch, no warm-up, no ramp, the level already there)."""
        on = self.on
        if on is None or want_on != on:
            return False
        if not on:
            return self.level == 0.0 and self._target is None
        if self.seg.dim is None:
            return self.level == 100.0
        return self._ramp is None and target == self._target and target == self.level and not self.warming(mono)

    def apply(
        self, mono: float, want_on: bool, target: float, ramp_up_s: float = 0.0, ramp_down_s: float = 0.0
    ) -> tuple[bool, float, str]:
        """Move toward (want_on, target); returns (on, output level, note) where note is
        "cool-down", "warm-up", "ramp" or ""."""
        note = ""
        self.switched = False
        if self.on is None or want_on != self.on:
            if (
                self.on is not None
                and self.last_switch is not None
                and mono - self.last_switch < self.a.min_switch_interval_s
            ):
                note = "cool-down"
            else:
                # the first decision after start is not a switch for the cool-down (the state was unknown)
                self.last_switch = mono if self.on is not None else None
                self.on, self.switched, self.changed_at = want_on, True, mono
                self.on_since = mono if want_on else None
                self._ramp = None
        if not self.on:
            self._set_level(mono, 0.0)
            self._target = None
            return False, 0.0, note
        if self.seg.dim is None:
            self._set_level(mono, 100.0)
            return True, 100.0, note
        target = self.level if not want_on else target  # held on by the cool-down: stay as lit as now
        if self.warming(mono):
            self._target = None
            self._set_level(mono, 100.0)
            return True, 100.0, note or "warm-up"
        if target != self._target:
            duration = ramp_up_s if target > self.level else ramp_down_s
            self._ramp = (self.level, target, mono, duration) if duration > 0 and not self.switched else None
            self._target = target
        if self._ramp is not None:
            start, end, t0, duration = self._ramp
            frac = (mono - t0) / duration
            if frac >= 1.0:
                self._ramp = None
                self._set_level(mono, end)
            else:
                self._set_level(mono, start + (end - start) * max(0.0, frac))
                return True, self.level, note or "ramp"
        else:
            self._set_level(mono, target)
        return True, self.level, note

    def _set_level(self, mono: float, level: float) -> None:
        if level != self.level:
            self.level = level
            self.level_changed = mono

    # -- writes and read-back -------------------------------------------------------------------

    def writes(self, mono: float, image: Mapping[str, Any]) -> list[Write]:
        """The writes due now, and the read-back judgement (updates `readback`)."""
        seg = self.seg
        coil = (not self.on) if seg.invert else bool(self.on)
        w = self._output(mono, seg.contactor, coil, image, "relay_failure", True)
        out = [] if w is None else [w]
        if seg.dim is not None and self.on:
            level, value = self._dim_at
            if level != self.level:
                level, value = self._dim_at = (self.level, seg.dim_value(self.level))
            w = self._output(mono, seg.dim, value, image, "dimming_failure", False, self._tol)
            if w is not None:
                out.append(w)
        elif seg.dim is not None:
            if self._mismatch:
                self._mismatch.pop(seg.dim, None)
            if self.readback["dimming_failure"] is not None:
                self._fail("dimming_failure", None)
        if seg.feedback is not None:
            self._feedback(mono, seg.feedback, image)
        return out

    def _output(
        self,
        mono: float,
        point: str,
        want: Any,
        image: Mapping[str, Any],
        kind: str,
        exact: bool = False,
        tol: float = 0.0,
    ) -> Write | None:
        """The write due on `point` now, if any (at most one), and its read-back judgement."""
        written = self._written.get(point, NO_VALUE)
        if written is NO_VALUE or written != want:
            self._written[point], self._last_write[point] = want, mono
            self._mismatch.pop(point, None)
            return Write(point, want, self.seg.name, "start" if written is NO_VALUE else "change")
        sample = image.get(point)
        if type(sample) is tuple and len(sample) == 3 and sample[1] == "good" and sample[0] is not None:
            got = sample[0]  # good_value()'s common case
        else:
            got = good_value(sample)
            if got is NO_VALUE:
                return None  # no read-back now: no judgement (the device may be away)
        if exact:
            same = bool(got) == want
        elif type(got) is float and type(want) is float:
            same = abs(got - want) <= tol + 1e-9  # _close()'s common case
        else:
            same = _close(got, want, tol)
        if same:
            if self._mismatch:
                self._mismatch.pop(point, None)
            if self.readback[kind] is not None:
                self._fail(kind, None)
            return None
        out = None
        since = self._mismatch.setdefault(point, mono)
        if mono - self._last_write[point] >= self.a.reassert_s:
            out = Write(point, want, self.seg.name, "reassert")
            self._last_write[point] = mono
        if mono - since >= self.a.readback_delay_s:
            self._fail(kind, f"{point} reads back {got!r}, commanded {want!r}")
        return out

    def _feedback(self, mono: float, point: str, image: Mapping[str, Any]) -> None:
        """Judge the contactor's auxiliary contact `point` against the command."""
        got = good_value(image.get(point))
        if got is NO_VALUE or self.readback["relay_failure"]:
            self._mismatch.pop(point, None)
            if self.readback["relay_failure"]:
                self._fail("contactor_failure", None)
            return
        if bool(got) == bool(self.on):
            self._mismatch.pop(point, None)
            self._fail("contactor_failure", None)
            return
        since = self._mismatch.setdefault(point, mono)
        since = max(since, self.last_switch or since)
        if mono - since >= self.a.readback_delay_s:
            state = "closed" if got else "open"
            self._fail(
                "contactor_failure",
                f"contactor auxiliary contact {point} says {state} while commanded {'on' if self.on else 'off'}",
            )

    def _fail(self, kind: str, message: str | None) -> None:
        if (self.readback[kind] is None) != (message is None):
            self.readback_changed = True
            self.readback[kind] = message


NO_VALUE = object()


def good_value(sample: Any) -> Any:
    """The value of a good snapshot entry (value, quality, age), else NO_VALUE."""
    if sample is None:
        return NO_VALUE
    try:
        value, quality = sample[0], sample[1]
    except (TypeError, IndexError, KeyError):
        return NO_VALUE
    if quality != "good" or value is None:
        return NO_VALUE
    return value


def _close(got: Any, want: float, tol: float) -> bool:
    try:
        return abs(float(got) - float(want)) <= tol + 1e-9
    except (TypeError, ValueError):
        return False
