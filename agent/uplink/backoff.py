"""Reconnect backoff for the uplink, pure: how long to wait before the next attempt.

After the n-th consecutive failure the wait is `initial_s * factor**(n-1)`, capped at
`max_s`, spread by ±`jitter` (a fraction) so a fleet that lost its broker at the same
moment does not come back at the same moment. The jitter is deterministic per seed
(the cabinet id), so tests and replays see the same delays. Any number of failures
is safe: the exponent stops growing once the cap is reached.
"""

from __future__ import annotations

import math
import random


class Backoff:
    def __init__(
        self, initial_s: float, max_s: float, *, factor: float = 2.0, jitter: float = 0.3, seed: int | str = 0
    ) -> None:
        if not (0 < initial_s <= max_s) or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s, factor >= 1, 0 <= jitter < 1")
        self.initial_s, self.max_s, self.factor, self.jitter = initial_s, max_s, factor, jitter
        # the first exponent whose delay reaches the cap: beyond it the delay stays max_s
        self._top = 0 if factor == 1 else math.ceil(math.log(max_s / initial_s) / math.log(factor))
        self._rng = random.Random(seed)
        self.failures = 0  # consecutive
        self.reason: str | None = None

    def failure(self, reason: str) -> float:
        """Record a failed attempt; the delay before the next one."""
        self.failures += 1
        self.reason = reason
        return self.delay()

    def success(self) -> None:
        self.failures, self.reason = 0, None

    def delay(self) -> float:
        """The wait after the current number of consecutive failures (0 after a success)."""
        if self.failures == 0:
            return 0.0
        base = min(self.max_s, self.initial_s * self.factor ** min(self.failures - 1, self._top))
        return base * (1.0 + self.jitter * (2 * self._rng.random() - 1))
