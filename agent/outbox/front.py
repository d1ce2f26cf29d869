"""The outbox's write path (for `agent.outbox.writer.Outbox`, its subclass): `put()` into the
in-memory queue (agent/outbox/queue.py) with its backpressure, and while commits fail its
shedding; `flush()`; the writer task that commits the queue in groups on the worker
thread and retries what fails; the `event.outbox.evicted` readings.

While commits succeed, a full queue makes producers wait. When a commit fails (after the
store made room, agent/outbox/store.py), the rows go back to the queue, commits are
retried with backoff (0.05 s doubling to 5 s) in halved sizes (they then fit in pages and
WAL the store already holds), and no producer waits: a full queue drops by
`agent.outbox.policy.shed` (oldest telemetry first, alarms last), counted in
`dropped_rows`. Closing tries CLOSE_TRIES commits, then gives up what is queued (logged).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.model import Priority, Reading
from agent.outbox import report
from agent.outbox.errors import OutboxError
from agent.outbox.queue import Item, WriteQueue
from agent.outbox.schema import text_len, to_rows
from agent.outbox.store import Store

log = logging.getLogger("agent.outbox")
CLOSE_TRIES = 3  # commits tried when closing while the disk refuses writes; then the queue is given up


class Front:
    """The write path of the outbox (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        clock: Any,
        store: Store,
        queue_max: int,
        commit_interval_s: float,
        commit_rows: int,
        event_interval_s: float | None,
    ) -> None:
        if queue_max < 1 or commit_rows < 1 or not commit_interval_s >= 0:
            raise ValueError("queue_max and commit_rows must be >= 1, commit_interval_s >= 0")
        self.path = path
        self._clock = clock
        self._store = store
        self._queue_max, self._interval, self._commit_rows = queue_max, commit_interval_s, commit_rows
        self._event_interval = event_interval_s
        self._q = WriteQueue()
        self._tx_bytes = store.plan.tx_bytes
        self._failing = False  # the last commit failed (after the store tried to make room)
        self._ids: dict[str, int] = {}
        self._new_points: list[tuple[int, str]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._state = "new"
        self._fatal: BaseException | None = None
        self._reported: tuple = ()
        self._reported_at = -math.inf
        self._executor: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _check(self) -> sqlite3.Connection:
        """The read-only connection, once the outbox is open and its writer healthy."""
        if self._fatal is not None:
            raise OutboxError(f"outbox {self.path}: writer failed: {self._fatal!r}") from self._fatal
        if self._state != "open" or self._reader is None:
            raise OutboxError(f"outbox {self.path}: not open ({self._state})")
        return self._reader

    # -- appending ---------------------------------------------------------------------------------------
    def _intern(self, point: Any) -> int:
        if not isinstance(point, str) or not point:
            raise TypeError(f"outbox: point name must be a non-empty str, got {point!r}")
        text_len(point)
        pid = max(self._store.names, default=0) + 1  # new names are rare: configured points
        self._store.names[pid] = point
        self._ids[point] = pid
        self._new_points.append((pid, point))
        return pid

    def _room(self, n: int) -> bool:
        return self._q.uncommitted == 0 or self._q.uncommitted + n <= self._queue_max

    def _admit(self, n: int, prio: int) -> bool:
        """While commits fail: make room by dropping (policy.shed); False when the incoming is dropped."""
        kept = self._q.shed(self._q.uncommitted + n - self._queue_max, prio, n)
        self._settle_flushes()  # a flush waiting for dropped readings returns
        return kept

    async def put(self, readings: Sequence[Reading], priority: Priority = Priority.TELEMETRY) -> None:
        """Queue readings for the next commit. While `queue_max` readings are uncommitted it waits
        for the writer, unless commits are failing (disk full): then it never waits, and the
        oldest telemetry (alarms last) is dropped and counted instead."""
        self._check()
        prio = int(Priority(priority))
        rows, nb = to_rows(readings, prio, self._ids, self._intern)
        if not rows:
            return
        if self._waiters or not self._room(len(rows)):
            if self._failing:
                if not self._admit(len(rows), prio):
                    return
            elif not await self._wait_room(len(rows), prio):
                return
        self._enqueue(rows, nb, prio)
        self._wake_space()

    async def _wait_room(self, n: int, prio: int) -> bool:
        """Wait in line for queue room; False when the commits started failing and the incoming was dropped."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            while True:
                await fut
                self._check()
                if self._room(n):
                    return True
                if self._failing:
                    return self._admit(n, prio)
                fut = asyncio.get_running_loop().create_future()
                self._waiters.insert(0, fut)  # keep our place at the head
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._wake_space()  # pass the wake-up on
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def put_nowait(self, readings: Sequence[Reading], priority: Priority = Priority.TELEMETRY) -> bool:
        """Queue readings now, or return False when the queue is full (nothing queued; while commits
        fail, False only when these readings were the ones to drop)."""
        self._check()
        prio = int(Priority(priority))
        if (self._waiters or not self._room(len(readings))) and not self._failing:
            return False
        rows, nb = to_rows(readings, prio, self._ids, self._intern)
        if not rows:
            return True
        if not self._room(len(rows)) and not self._admit(len(rows), prio):
            return False
        self._enqueue(rows, nb, prio)
        return True

    def _enqueue(self, rows: list[tuple], nb: int, prio: int) -> None:
        if not self._q.items:
            self._wake.set()
        self._q.add(prio, rows, nb, self._clock.monotonic())
        if self._q.queued >= self._commit_rows:
            self._wake.set()

    def _wake_space(self, all_: bool = False) -> None:
        for fut in list(self._waiters) if all_ else self._waiters[:1]:
            if not fut.done():
                fut.set_result(None)

    async def flush(self) -> None:
        """Return once everything put so far is committed (fsynced), or dropped because the disk
        refused writes (counted in stats()["dropped_rows"])."""
        self._check()
        target = self._q.appended
        if self._q.settled(target):
            return
        fut = asyncio.get_running_loop().create_future()
        self._flushes.append((target, fut))
        self._wake.set()
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._flushes = [(t, f) for t, f in self._flushes if f is not fut]

    def _settle_flushes(self) -> None:
        done = [f for t, f in self._flushes if self._q.settled(t)]
        self._flushes = [(t, f) for t, f in self._flushes if not self._q.settled(t)]
        for f in done:
            if not f.done():
                f.set_result(None)

    # -- the writer --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay, tries = 0.05, 0
        while True:
            first = self._q.first_mono()
            if first is None:
                if self._state != "open":
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = first + self._interval
            if (
                self._state == "open"
                and not self._flushes
                and self._q.queued < self._commit_rows
                and self._clock.monotonic() < due
            ):
                await self._sleep_or_wake(due)
                continue
            items = self._q.take(self._tx_bytes)
            points, self._new_points = self._new_points, []
            try:
                await self._call(self._write, items, points)
            except sqlite3.Error as e:  # disk full, I/O error: keep the rows, retry; producers do not wait
                self._q.put_back()
                self._new_points = points + self._new_points
                self._failed(e, delay)
                tries += 1
                if self._state != "open" and tries >= CLOSE_TRIES:
                    n = self._q.drop_all()
                    log.error("outbox %s: closing with the disk refusing writes: %d readings not stored", self.path, n)
                    self._settle_flushes()
                    return
                self._report()
                await self._clock.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._failing:
                log.warning("outbox %s: commits work again", self.path)
            self._failing, delay, tries = False, 0.05, 0
            if not self._store.full:  # while the disk is full, commits stay at the size that fits
                self._tx_bytes = min(self._store.plan.tx_bytes, self._tx_bytes * 2)
            self._q.done()
            self._settle_flushes()
            self._wake_space()
            self._report()

    async def _sleep_or_wake(self, due: float) -> None:
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep_until(due))
        try:
            await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    def _write(self, items: list[Item], points: list[tuple[int, str]]) -> None:
        """In the worker: one commit; a full disk gets room made once (Store.with_room)."""
        st = self._store
        st.with_room(lambda: st.write(items, points), sum(it.nbytes for it in items))

    def _failed(self, e: sqlite3.Error, delay: float) -> None:
        st = self._store
        st.write_errors += 1
        self._store.last_error = str(e)
        if not self._failing:
            log.error("outbox %s: commit failed (%s); retrying, readings queued in memory meanwhile", self.path, e)
        else:
            log.debug("outbox %s: commit failed again, retrying in %.2f s: %s", self.path, delay, e)
        self._failing = True
        self._tx_bytes = max(1, self._tx_bytes // 2)  # smaller commits fit in pages and WAL the store holds
        self._wake_space(all_=True)  # waiting producers stop waiting: they drop instead

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fatal = task.exception()
            log.error("outbox writer failed", exc_info=self._fatal)
            err = OutboxError(f"outbox {self.path}: writer failed: {self._fatal!r}")
            for _, f in self._flushes:
                if not f.done():
                    f.set_exception(err)
            self._flushes = []
            self._wake_space(all_=True)

    # -- eviction events ---------------------------------------------------------------------------------
    def _report(self) -> None:
        """Queue an `event.outbox.evicted` reading when rows were evicted or dropped since the last one
        (at most one per event_interval_s; never with None)."""
        counts, now, gap = report.counts(self._store, self._q), self._clock.monotonic(), self._event_interval
        if gap is None or counts == self._reported or now - self._reported_at < gap or self._state != "open":
            return
        r = report.evicted_event(self._store, self._reported, counts, self._clock.now())
        rows, nb = to_rows([r], int(Priority.EVENT), self._ids, self._intern)
        self._enqueue(rows, nb, int(Priority.EVENT))  # past queue_max if need be: one small reading
        self._reported, self._reported_at = counts, now
