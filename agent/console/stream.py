"""Server-sent events for the console: one producer builds the status snapshot and encodes it
once per period (1 s) while at least one client listens, and every client gets those same
bytes. Each client has a queue of one frame: a slow reader skips frames, it never makes the
agent buffer more. No client, no work."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("agent.console")

Sleep = Callable[[float], Awaitable[Any]]


def event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


class Hub:
    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        max_clients: int,
        period_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.snapshot, self.max_clients, self.period_s, self.sleep = snapshot, max_clients, period_s, sleep
        self._queues: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last: bytes | None = None
        self.frames = 0  # snapshots built and encoded (shared by all clients)

    @property
    def clients(self) -> int:
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[bytes] | None:
        """A new client's queue (holding the latest frame, if any), or None when full."""
        if len(self._queues) >= self.max_clients:
            return None
        q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        if self._last is not None:
            q.put_nowait(self._last)
        self._queues.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-events")
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes]) -> None:
        self._queues.discard(q)

    async def _run(self) -> None:
        while self._queues:
            try:
                frame = event("status", json.dumps(self.snapshot(), default=str, separators=(",", ":")))
            except Exception as e:  # noqa: BLE001 - a snapshot that fails must not end every stream
                log.warning("console: status snapshot failed: %s", e)
                frame = event("problem", json.dumps(f"status snapshot failed: {e}"))
            self.frames += 1
            self._last = frame
            for q in list(self._queues):
                if q.full():
                    q.get_nowait()
                q.put_nowait(frame)
            await self.sleep(self.period_s)
        self._last = None

    async def close(self) -> None:
        self._queues.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
