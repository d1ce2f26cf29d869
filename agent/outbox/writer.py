"""The outbox: every reading, durable on disk until the cloud acknowledged its batch.

Owns `Outbox`: opening and closing, sealing and acknowledging, the reads and the stats.
Its write path (the bounded in-memory queue and its backpressure or shedding, the
writer task that commits that queue in groups, the eviction events) is
`agent.outbox.front`; the SQLite side (file checks, schema migrations, transactions,
eviction, the disk) is `agent.outbox.store`, sealing and acknowledging
`agent.outbox.sealing`; the schema and how a reading becomes a row is
`agent.outbox.schema`; decisions (when to seal, what to evict, how much disk to use,
what to drop) come from the pure `agent.outbox.policy`. Other modules import from here.

Threading: one connection, used only by one worker thread (`outbox-db`); every
transaction runs there whole, so fsyncs never block the event loop. `unacked()` and
`peek()` read through a second, read-only connection on the caller's thread (WAL
readers see committed data only). `encode` passed to `seal()` runs in the worker
thread and must be a pure function.

Durability: WAL with synchronous=FULL, so every COMMIT is fsynced before anything is
reported done: `flush()` returns, `seal()` returns its batch, `ack()` returns.
Readings wait in RAM only between `put()` and the next commit (at most `queue_max`
of them; `put()` then waits while commits succeed). A file that is not an outbox
(foreign or corrupt), or of a newer schema, is refused, never replaced; opening never
empties the store.

A full disk never stops the producers: the store makes room with what it holds
(agent/outbox/store.py), and while commits still fail `put()` never waits: the queue
keeps the newest readings, dropping the oldest telemetry first (alarms last) and
counting them (`dropped_rows`); what it holds is committed once the disk takes writes
again. Evictions and drops are reported as `event.outbox.evicted` readings (an EVENT,
at most one per `event_interval_s`, counts since the last one). `seal()` and `ack()`
(and the reads) raise only OutboxError: OutboxWriteError (OutboxFull for the disk)
means nothing changed and the call may be retried.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from agent.model import Priority, Reading
from agent.outbox import report, sealing
from agent.outbox.errors import (
    OutboxBusy,
    OutboxCorrupt,
    OutboxError,
    OutboxFileError,
    OutboxForeign,
    OutboxFull,
    OutboxTooNew,
    OutboxWriteError,
    Sealed,
    is_full,
)
from agent.outbox.front import Front
from agent.outbox.policy import DiskPolicy, EvictionPolicy, SealPolicy, age
from agent.outbox.readers import read_sealed, read_unacked, read_unacked_seqs, read_unsealed
from agent.outbox.report import EVICTED_POINT
from agent.outbox.schema import APP_ID, I64, MIGRATIONS, ROW_BASE, SCHEMA_VERSION
from agent.outbox.store import SEQ_BLOCK, Store

__all__ = [
    "APP_ID",
    "EVICTED_POINT",
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
    "OutboxFull",
    "OutboxTooNew",
    "OutboxWriteError",
    "Sealed",
]

log = logging.getLogger("agent.outbox")
T = TypeVar("T")


class Outbox(Front):
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
        disk_share: float = 0.5,
        event_interval_s: float | None = 600.0,
    ) -> None:
        super().__init__(
            Path(path),
            clock,
            Store(Path(path), EvictionPolicy(max_bytes), DiskPolicy(max_bytes, disk_share)),
            queue_max,
            commit_interval_s,
            commit_rows,
            event_interval_s,
        )
        self._seal_gap = self._seal_after = 0.0  # after a failed seal: wait this long, until then
        self._task: asyncio.Task[None] | None = None

    @property
    def boot_epoch(self) -> int:
        return self._store.boot_epoch

    async def start(self) -> None:
        if self._state != "new":
            raise OutboxError(f"outbox {self.path}: start() called twice")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        try:
            await self._call(self._store.open)
        except BaseException as e:
            self._executor.shutdown(wait=True)
            self._state = "closed"
            if isinstance(e, sqlite3.Error):
                raise self._error("open", e) from e
            raise
        self._ids = {name: pid for pid, name in self._store.names.items()}
        self._tx_bytes = self._store.plan.tx_bytes
        self._reported = (*self._store.loaded, *self._q.dropped)  # evictions at open are reported too
        self._reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        self._state = "open"
        self._task = asyncio.create_task(self._run(), name="outbox-writer")
        self._task.add_done_callback(self._writer_done)

    async def close(self) -> None:
        """Commit everything queued (given up after a few tries if the disk refuses), stop the writer, close."""
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

    def _error(self, what: str, e: sqlite3.Error) -> OutboxError:
        self._store.last_error = str(e)
        if is_full(e):
            return OutboxFull(f"outbox {self.path}: {what} failed, the disk is full (nothing changed; retry later)")
        return OutboxWriteError(f"outbox {self.path}: {what} failed: {e} (nothing changed; retry later)")

    # -- batches -----------------------------------------------------------------------------------------
    async def seal(
        self, encode: Callable[[list[Reading], int], bytes], *, max_readings: int, min_priority_first: bool = True
    ) -> Sealed | None:
        """Seal up to max_readings unsealed readings into the next batch (one transaction); None if none.
        Raises OutboxWriteError (OutboxFull: the disk) when the transaction failed: nothing changed."""
        self._check()
        if max_readings < 1:
            raise ValueError(f"max_readings must be >= 1, got {max_readings}")
        now = self._clock.now()
        try:
            sealed = await self._call(sealing.seal, self._store, encode, max_readings, min_priority_first, now)
        except sqlite3.Error as e:
            self._seal_gap = min(2 * self._seal_gap, 30.0) if self._seal_gap else 1.0
            self._seal_after = self._clock.monotonic() + self._seal_gap
            raise self._error("seal", e) from e
        self._seal_gap = 0.0
        self._report()
        return sealed

    def _read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A read on the read-only connection; its SQLite errors as OutboxError (nothing changed)."""
        try:
            return fn(self._check(), *args)
        except sqlite3.Error as e:
            raise self._error(what, e) from e

    def unacked(self) -> list[Sealed]:
        """Sealed batches not yet acknowledged, oldest first (committed state)."""
        return self._read("reading unacknowledged batches", read_unacked)

    def unacked_seqs(self) -> list[int]:
        """Sequence numbers of the sealed batches not yet acknowledged, oldest first."""
        return self._read("reading unacknowledged batches", read_unacked_seqs)

    def sealed(self, seqs: Sequence[int]) -> list[Sealed]:
        """The stored sealed batches among `seqs` (acknowledged or evicted ones are absent)."""
        return self._read("reading sealed batches", read_sealed, seqs)

    async def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged batches and their rows (one fsynced transaction); returns rows deleted.
        Raises OutboxWriteError (OutboxFull: the disk) when the transaction failed: nothing changed."""
        self._check()
        todo = sorted({s for s in (int(x) for x in seqs) if 0 < s < I64})
        if not todo:
            return 0
        try:
            return int(await self._call(sealing.ack, self._store, todo))
        except sqlite3.Error as e:
            raise self._error("ack", e) from e

    def peek(self, limit: int = 100) -> list[tuple[Priority, Reading]]:
        """Committed unsealed readings in sealing order (priority, then oldest): diagnostics."""
        return self._read("reading pending readings", read_unsealed, self._store.names, limit)

    def seal_due(self, policy: SealPolicy) -> bool:
        """Ask `policy` whether to seal now, with this store's pending counts and ages (not yet
        after a failed seal: 1 s, doubling to 30 s while seals keep failing)."""
        st, now = self._store, self._clock.monotonic()
        prios = [p for p in Priority if st.pending[p]]
        if not prios or (self._seal_gap and now < self._seal_after):
            return False
        ages = [age(now, st.pending_since[p]) for p in prios]
        return policy.due(sum(st.pending), max((a for a in ages if a is not None), default=None), prios[0], ages[0])

    def stats(self) -> dict[str, Any]:
        """Counts for self-telemetry, status and the uplink (the keys: agent.outbox.report.stats)."""
        return report.stats(self._store, self._q, self._clock.monotonic(), self._failing)
