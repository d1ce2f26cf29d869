"""Per-device health and exponential backoff; bad frames per device. Pure.

A device that stops answering is retried after `initial_s`, then twice as long
each time up to `max_s` (with a little deterministic jitter), so a dead device
cannot steal the line from the others. Any number of consecutive failures gives a
finite delay: once `initial_s * factor ** n` is past `max_s` (or past the float
range) the delay stays at `max_s` (and its jitter). Transitions (ok <-> failing, or
a new failure reason) are reported so the caller logs once per state change, never
per failed request. Time is passed in (`now` is monotonic seconds).

FrameHealth counts the bad frames of one device (replies addressed to it that are
not the reply asked for) by kind, and says when to log: at the first bad frame
after a clean spell, and at the first good frame once `quiet_s` have passed
without a bad one. In between bad frames are only counted, never logged one by one.
"""

from __future__ import annotations

import math
import random
from typing import Any


class DeviceHealth:
    __slots__ = (
        "_rng",
        "errors",
        "factor",
        "failures",
        "initial_s",
        "jitter",
        "max_s",
        "next_try",
        "reason",
        "since",
        "state",
        "successes",
    )

    def __init__(
        self, initial_s: float = 1.0, max_s: float = 60.0, factor: float = 2.0, jitter: float = 0.1, seed: int | str = 0
    ) -> None:
        # NaN fails every comparison; a finite max_s / initial_s is what _capped() relies on
        if not (0 < initial_s <= max_s and math.isfinite(max_s / initial_s) and 1 <= factor < math.inf):
            raise ValueError("backoff needs 0 < initial_s <= max_s (a finite ratio), 1 <= factor < inf")
        if not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 <= jitter < 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = random.Random(seed)
        self.state = "unknown"  # unknown | ok | failing
        self.reason: str | None = None
        self.failures = 0  # consecutive
        self.next_try = 0.0
        self.since = 0.0  # when the current state began
        self.successes = 0
        self.errors = 0

    def ready(self, now: float) -> bool:
        """May the device be polled at `now`?"""
        return self.state != "failing" or now >= self.next_try

    def delay(self) -> float:
        """The backoff delay after the current number of consecutive failures."""
        if self.failures == 0:
            return 0.0
        base = self._capped(self.failures - 1)
        return base * (1.0 + self.jitter * (2 * self._rng.random() - 1))

    def _capped(self, n: int) -> float:
        """min(max_s, initial_s * factor ** n), for any n >= 0."""
        try:
            grown = self.initial_s * self.factor**n
        except OverflowError:  # factor ** n is past the float range, so past max_s / initial_s too
            return self.max_s
        return min(self.max_s, grown)

    def success(self, now: float) -> bool:
        """Record an answer. True when this is a state change (log it)."""
        self.successes += 1
        changed = self.state != "ok"
        if changed:
            self.since = now
        self.state, self.reason, self.failures, self.next_try = "ok", None, 0, 0.0
        return changed

    def failure(self, now: float, reason: str) -> bool:
        """Record a failed transaction. True when state or reason changed (log it)."""
        self.errors += 1
        self.failures += 1
        changed = self.state != "failing" or reason != self.reason
        if self.state != "failing":
            self.since = now
        self.state, self.reason = "failing", reason
        self.next_try = now + self.delay()
        return changed

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "consecutive_failures": self.failures,
            "retry_in_s": round(max(0.0, self.next_try - now), 3) if self.state == "failing" else 0.0,
            "since_s": round(now - self.since, 3),
            "successes": self.successes,
            "errors": self.errors,
        }


class FrameHealth:
    """Bad frames from one device: counted by kind, logged once per state change."""

    __slots__ = ("by_kind", "last", "last_at", "quiet_s", "since", "state", "total")

    def __init__(self, quiet_s: float = 60.0) -> None:
        if not 0 <= quiet_s < math.inf:
            raise ValueError("quiet_s must be >= 0 and finite")
        self.quiet_s = quiet_s
        self.state = "clean"  # clean | bad_frames
        self.total = 0
        self.by_kind: dict[str, int] = {}
        self.last: str | None = None  # the last bad frame's reason
        self.last_at = 0.0
        self.since = 0.0  # when the current state began

    def bad(self, now: float, kind: str, reason: str) -> bool:
        """Record a bad frame. True when the device goes from clean to sending bad frames (log it)."""
        self.total += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.last, self.last_at = reason, now
        if self.state == "bad_frames":
            return False
        self.state, self.since = "bad_frames", now
        return True

    def good(self, now: float) -> bool:
        """Record a good frame. True when the device is clean again (log it): no bad
        frame for `quiet_s`."""
        if self.state != "bad_frames" or now - self.last_at < self.quiet_s:
            return False
        self.state, self.since = "clean", now
        return True

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "bad_frames": self.total,
            "bad_frame_kinds": dict(self.by_kind),
            "last_bad_frame": self.last,
            "last_bad_frame_s_ago": round(now - self.last_at, 3) if self.last is not None else None,
        }
