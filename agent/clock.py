"""Clocks: the only place the agent learns what time it is.

Logic never calls time.time(); it asks a clock. Three kinds:

* WallClock: the real wall clock and the real monotonic clock.
* ScaledClock: real time run `speed` times faster from a chosen start (rigs, demos).
* SimClock: virtual time moved by hand (`advance`), for deterministic tests of
  asyncio loops; sleepers wake in deadline order.

`now()` is wall time (seconds since the epoch, UTC) for timestamps and calendars;
`monotonic()` is for intervals, periods and timeouts. `synced` says whether the wall
clock is known to be right (NTP/GPS), False when it is known to be unset, None when
unknown.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    synced: bool | None

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, deadline: float) -> None: ...


TRUSTED_AFTER = 1_767_225_600.0  # 2026-01-01T00:00:00Z: no cabinet runs this software earlier


def clock_trusted(clock: Clock) -> bool:
    """Is the clock's wall time usable for calendars and command expiry? Not when it says
    it is unset, nor when it reads before TRUSTED_AFTER (a board that booted at 1970)."""
    return clock.synced is not False and clock.now() >= TRUSTED_AFTER


class WallClock:
    """The real clocks of this machine."""

    def __init__(self) -> None:
        self.synced: bool | None = None

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


class ScaledClock:
    """Real time, `speed` times faster, starting at wall time `start` (default: now)."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self.synced: bool | None = True
        self._real0 = time.monotonic()
        self._wall0 = time.time() if start is None else start

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.speed

    def now(self) -> float:
        return self._wall0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, deadline: float) -> None:
        await self.sleep(deadline - self.monotonic())


class SimClock:
    """Virtual time that only moves when `advance` is called.

    `await clock.advance(dt)` wakes every sleeper whose deadline falls inside the step,
    in deadline order, letting the event loop run the woken tasks before moving on.
    """

    def __init__(self, start: float = 1_700_000_000.0, synced: bool | None = True) -> None:
        self._mono = 0.0
        self._wall0 = start
        self.synced = synced
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._wall0 + self._mono

    def monotonic(self) -> float:
        return self._mono

    def set_wall(self, wall: float) -> None:
        """Step the wall clock (as NTP or GPS would) without moving monotonic time."""
        self._wall0 = wall - self._mono

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._mono + max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._mono:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):  # let woken tasks run and re-arm their sleeps
                await asyncio.sleep(0)
        self._mono = target
        await asyncio.sleep(0)
