"""The outbox: every reading, durable on disk until the cloud acknowledged its batch.

Owns the asyncio front: the bounded in-memory queue and its backpressure, the writer
task that commits that queue in groups, the hand-off of every transaction to one
worker thread, and the stats. The SQLite side (file checks, schema migrations,
transactions, eviction, seal/ack) is `agent.outbox.store`; the schema and how a
reading becomes a row is `agent.outbox.schema`; decisions (when to seal, what to
evict) come from the pure `agent.outbox.policy`. Other modules import from here.

Threading: one connection, used only by one worker thread (`outbox-db`); every
transaction runs there whole, so fsyncs never block the event loop. `unacked()` and
`peek()` read through a second, read-only connection on the caller's thread (WAL
readers see committed data only). `encode` passed to `seal()` runs in the worker
thread and must be a pure function.

Durability: WAL with synchronous=FULL, so every COMMIT is fsynced before anything is
reported done: `flush()` returns, `seal()` returns its batch, `ack()` returns.
Readings wait in RAM only between `put()` and the next commit (at most `queue_max`
of them; `put()` then waits). A file that is not an outbox (foreign or corrupt), or
of a newer schema, is refused, never replaced; opening never empties the store.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.model import Priority, Reading
from agent.outbox.errors import (
    OutboxBusy,
    OutboxCorrupt,
    OutboxError,
    OutboxFileError,
    OutboxForeign,
    OutboxTooNew,
    Sealed,
)
from agent.outbox.policy import EvictionPolicy, SealPolicy, age
from agent.outbox.readers import read_sealed, read_unacked, read_unacked_seqs, read_unsealed
from agent.outbox.schema import APP_ID, I64, MIGRATIONS, PRIOS, ROW_BASE, SCHEMA_VERSION, text_len, to_rows
from agent.outbox.store import SEQ_BLOCK, Store

__all__ = [
    "APP_ID",
    "MIGRATIONS",
    "ROW_BASE",
    "SCHEMA_VERSION",
    "SEQ_BLOCK",
    "Outbox",
    "OutboxBusy",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFileError",
    "OutboxForeign",
    "OutboxTooNew",
    "Sealed",
]

log = logging.getLogger("agent.outbox")
SQLITE_FULL = 13


class Outbox:
    """The durable store of readings waiting for the cloud (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Any,
        max_bytes: int = 256 * 2**20,
        queue_max: int = 20_000,
        commit_interval_s: float = 0.1,
        commit_rows: int = 2000,
    ) -> None:
        if queue_max < 1 or commit_rows < 1 or not commit_interval_s >= 0:
            raise ValueError("queue_max and commit_rows must be >= 1, commit_interval_s >= 0")
        self.path = Path(path)
        self._clock = clock
        self._store = Store(self.path, EvictionPolicy(max_bytes))
        self._queue_max, self._interval, self._commit_rows = queue_max, commit_interval_s, commit_rows
        self._queue: collections.deque[tuple[int, list[tuple], int, float]] = collections.deque()
        self._qcount = self._uncommitted = self._appended = self._committed = 0
        self._first_mono = 0.0
        self._ids: dict[str, int] = {}
        self._new_points: list[tuple[int, str]] = []
        self._space: collections.deque[asyncio.Future[None]] = collections.deque()
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._state = "new"
        self._fatal: BaseException | None = None
        self._last_error: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def boot_epoch(self) -> int:
        return self._store.boot_epoch

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        if self._state != "new":
            raise OutboxError(f"outbox {self.path}: start() called twice")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        try:
            await self._call(self._store.open)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._state = "closed"
            raise
        self._ids = {name: pid for pid, name in self._store.names.items()}
        self._reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        self._state = "open"
        self._task = asyncio.create_task(self._run(), name="outbox-writer")
        self._task.add_done_callback(self._writer_done)

    async def close(self) -> None:
        """Commit everything queued, stop the writer, close the file."""
        if self._state in ("new", "closed"):
            return
        self._state = "closing"
        self._wake.set()
        self._wake_space(all_=True)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._reader is not None:
            self._reader.close()
        await self._call(self._store.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._state = "closed"

    async def __aenter__(self) -> Outbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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
        return self._uncommitted == 0 or self._uncommitted + n <= self._queue_max

    async def put(self, readings: Sequence[Reading], priority: Priority = Priority.TELEMETRY) -> None:
        """Queue readings for the next commit; waits while `queue_max` readings are uncommitted."""
        self._check()
        rows, nb = to_rows(readings, int(Priority(priority)), self._ids, self._intern)
        if not rows:
            return
        if self._space or not self._room(len(rows)):
            fut = asyncio.get_running_loop().create_future()
            self._space.append(fut)
            try:
                while True:
                    await fut
                    self._check()
                    if self._room(len(rows)):
                        break
                    fut = asyncio.get_running_loop().create_future()
                    self._space.appendleft(fut)  # keep our place at the head
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake_space()  # pass the wake-up on
                raise
            finally:
                if fut in self._space:
                    self._space.remove(fut)
        self._enqueue(rows, nb, int(priority))
        self._wake_space()

    def put_nowait(self, readings: Sequence[Reading], priority: Priority = Priority.TELEMETRY) -> bool:
        """Queue readings now, or return False when the queue is full (nothing queued)."""
        self._check()
        if self._space or not self._room(len(readings)):
            return False
        rows, nb = to_rows(readings, int(Priority(priority)), self._ids, self._intern)
        if rows:
            self._enqueue(rows, nb, int(priority))
        return True

    def _enqueue(self, rows: list[tuple], nb: int, prio: int) -> None:
        mono = self._clock.monotonic()
        if not self._queue:
            self._first_mono = mono
            self._wake.set()
        self._queue.append((prio, rows, nb, mono))
        n = len(rows)
        self._qcount += n
        self._uncommitted += n
        self._appended += n
        if self._qcount >= self._commit_rows:
            self._wake.set()

    def _wake_space(self, all_: bool = False) -> None:
        for fut in list(self._space) if all_ else list(self._space)[:1]:
            if not fut.done():
                fut.set_result(None)

    async def flush(self) -> None:
        """Return once everything put so far is committed (fsynced)."""
        self._check()
        target = self._appended
        if self._committed >= target:
            return
        fut = asyncio.get_running_loop().create_future()
        self._flushes.append((target, fut))
        self._wake.set()
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._flushes = [(t, f) for t, f in self._flushes if f is not fut]

    # -- the writer --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._state != "open":
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._first_mono + self._interval
            if (
                self._state == "open"
                and not self._flushes
                and self._qcount < self._commit_rows
                and self._clock.monotonic() < due
            ):
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                sleeper = asyncio.ensure_future(self._clock.sleep_until(due))
                try:
                    await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    sleeper.cancel()
                continue
            items, n = list(self._queue), self._qcount
            self._queue.clear()
            self._qcount = 0
            points, self._new_points = self._new_points, []
            await self._commit(items, points)
            self._committed += n
            self._uncommitted -= n
            done = [f for t, f in self._flushes if t <= self._committed]
            self._flushes = [(t, f) for t, f in self._flushes if t > self._committed]
            for f in done:
                if not f.done():
                    f.set_result(None)
            self._wake_space()

    async def _commit(self, items: list, points: list[tuple[int, str]]) -> None:
        delay = 0.05
        while True:
            try:
                return await self._call(self._store.write, items, points)
            except sqlite3.OperationalError as e:  # disk full, I/O error, locked: keep the rows, retry
                self._store.write_errors += 1
                self._last_error = str(e)
                log.error("outbox commit failed, retrying in %.2f s: %s", delay, e)
                if getattr(e, "sqlite_errorcode", None) == SQLITE_FULL:
                    await self._shrink(sum(it[2] for it in items))
                await self._clock.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _shrink(self, incoming: int) -> None:
        """The disk is full below max_bytes: lower the cap to make room for `incoming` bytes."""
        st = self._store
        st.cap = max(1, int(min(st.cap, st.bytes) * 0.95))
        log.warning("outbox: disk full at %d bytes; byte cap lowered to %d until restart", st.bytes, st.cap)
        try:
            await self._call(st.relieve, incoming)
        except sqlite3.OperationalError as e:
            log.error("outbox: eviction after disk full failed: %s", e)

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

    # -- batches -----------------------------------------------------------------------------------------
    async def seal(
        self, encode: Callable[[list[Reading], int], bytes], *, max_readings: int, min_priority_first: bool = True
    ) -> Sealed | None:
        """Seal up to max_readings unsealed readings into the next batch (one transaction); None if none."""
        self._check()
        if max_readings < 1:
            raise ValueError(f"max_readings must be >= 1, got {max_readings}")
        return await self._call(self._store.seal, encode, max_readings, min_priority_first, self._clock.now())

    def unacked(self) -> list[Sealed]:
        """Sealed batches not yet acknowledged, oldest first (committed state)."""
        reader = self._check()
        return read_unacked(reader)

    def unacked_seqs(self) -> list[int]:
        """Sequence numbers of the sealed batches not yet acknowledged, oldest first."""
        reader = self._check()
        return read_unacked_seqs(reader)

    def sealed(self, seqs: Sequence[int]) -> list[Sealed]:
        """The stored sealed batches among `seqs` (acknowledged or evicted ones are absent)."""
        reader = self._check()
        return read_sealed(reader, seqs)

    async def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged batches and their rows (one fsynced transaction); returns rows deleted."""
        self._check()
        todo = sorted({s for s in (int(x) for x in seqs) if 0 < s < I64})
        return await self._call(self._store.ack, todo) if todo else 0

    def peek(self, limit: int = 100) -> list[tuple[Priority, Reading]]:
        """Committed unsealed readings in sealing order (priority, then oldest): diagnostics."""
        reader = self._check()
        return read_unsealed(reader, self._store.names, limit)

    def seal_due(self, policy: SealPolicy) -> bool:
        """Ask `policy` whether to seal now, with this store's pending counts and ages."""
        st, now = self._store, self._clock.monotonic()
        prios = [p for p in Priority if st.pending[p]]
        if not prios:
            return False
        ages = [age(now, st.pending_since[p]) for p in prios]
        return policy.due(sum(st.pending), max((a for a in ages if a is not None), default=None), prios[0], ages[0])

    def stats(self) -> dict[str, Any]:
        """Counts for self-telemetry and the uplink. Rows and bytes describe the committed store;
        `oldest_unsent_t` is the wall time `t` of the oldest stored (unacknowledged) reading;
        `oldest_pending_age_s` (monotonic, inf after a restart) and `pending_priority` (the highest
        Priority waiting, or None) describe unsealed rows; evicted_* are lifetime totals kept in the
        file; appended/committed/acked_rows/commits count since start()."""
        st, now = self._store, self._clock.monotonic()
        names = [p.name.lower() for p in Priority]
        ages = [a for a in (age(now, st.pending_since[p]) for p in PRIOS if st.pending[p]) if a is not None]
        highest = next((Priority(p) for p in PRIOS if st.pending[p]), None)
        return {
            "rows_pending": sum(st.pending),
            "rows_pending_by_priority": dict(zip(names, st.pending, strict=True)),
            "rows_sealed": st.sealed_rows,
            "batches_unacked": st.batches,
            "bytes": st.bytes,
            "max_bytes": st.policy.max_bytes,
            "cap_bytes": st.cap,
            "oldest_unsent_t": st.oldest_t,
            "oldest_pending_age_s": max(ages) if ages else None,
            "pending_priority": highest,
            "evicted_rows": dict(zip(names, st.evicted, strict=True)),
            "evicted_batches": st.evicted_batches,
            "appended": self._appended,
            "committed": self._committed,
            "acked_rows": st.acked_rows,
            "queue_len": self._uncommitted,
            "commits": st.commits,
            "next_seq": st.next_seq,
            "boot_epoch": st.boot_epoch,
            "write_errors": st.write_errors,
            "last_error": self._last_error,
        }
