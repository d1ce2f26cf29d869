"""A clock that boots unset: a rig's `clock_unset` action (docs/rig.md).

A controller without a battery-backed RTC boots not knowing the time until NTP or the
GPS sets it. `UnsetUntil` wraps the virtual clock of a rig run and says so: `synced` is
False until the wall time `until` (the scenario's `clock_sync`, or never), then the
wrapped clock's own. The time it reads stays the simulated time, so what the agent
stores is stamped on the run's time line; only the agent's trust in it changes
(agent/clock.py `clock_trusted`: calendars off, the lighting's fail-safe on).

`python -m agent run|sim` wrap their virtual clock in it when `$VTIME_CLOCK_UNSET_UNTIL`
is set (a wall time in seconds since the epoch, or `never`); agent/runtime/entry.py.
"""

from __future__ import annotations

import math
from typing import Protocol

ENV = "VTIME_CLOCK_UNSET_UNTIL"


class _Inner(Protocol):
    synced: bool | None

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, deadline: float) -> None: ...


def parse_until(text: str) -> float:
    """The value of $VTIME_CLOCK_UNSET_UNTIL: seconds since the epoch, or "never" (inf)."""
    if text.strip() == "never":
        return math.inf
    v = float(text)
    if math.isnan(v):
        raise ValueError(f"{ENV}={text!r}: a wall time in seconds since the epoch, or never")
    return v


class UnsetUntil:
    """`inner` with `synced` False until its wall time reaches `until`."""

    def __init__(self, inner: _Inner, until: float) -> None:
        self.inner = inner
        self.until = until

    @property
    def synced(self) -> bool | None:
        return self.inner.synced if self.inner.now() >= self.until else False

    @synced.setter
    def synced(self, value: bool | None) -> None:  # a later sync by the agent itself
        self.inner.synced = value
        if value:
            self.until = -math.inf

    def now(self) -> float:
        return self.inner.now()

    def monotonic(self) -> float:
        return self.inner.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        await self.inner.sleep_until(deadline)
