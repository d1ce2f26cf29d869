"""The outbox: every reading, durable on disk until the cloud acknowledged its batch.

Owns the SQLite file, the bounded in-memory queue in front of it, the writer task
that commits that queue in groups, and the sealing, acknowledging and evicting of
stored data. Decisions (when to seal, what to evict) come from the pure
`agent.outbox_policy`; this module only applies them.

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

Storage layout (schema version 1, PRAGMA user_version; application_id 0x43414f42):
  meta(key TEXT PRIMARY KEY, value INTEGER)  boot_epoch; seq_hi (highest reserved
      batch sequence number); evicted_rows_<prio>, evicted_batches (lifetime counts)
  points(id INTEGER PRIMARY KEY, name TEXT UNIQUE)  point names, interned
  rows(id INTEGER PRIMARY KEY, prio, point, t REAL, v, q, reason, nbytes, batch)
      one reading each; `v` is stored natively (NULL/INTEGER/REAL/TEXT); `q` is the
      quality code (0 good, 1 stale, 2 bad, 3 substituted) + flags (4 bool, 8 NaN,
      16 integer beyond 64 bits kept as text); `batch` is NULL until sealed.
      Indexes: (prio, id) over unsealed rows; (batch) over sealed rows.
  batches(seq INTEGER PRIMARY KEY, prio, count, created_t, nbytes, payload BLOB)
      `prio` is the highest priority (lowest number) of its rows; `nbytes` counts
      the payload and its rows.
Byte accounting: each row and batch carries an estimate of its size on disk
(`nbytes`, calibrated against the file size); the running total is kept in memory,
recomputed on start, and eviction keeps it at or under `max_bytes`.

Sequence numbers are reserved in blocks of SEQ_BLOCK by a committed transaction
before `encode` ever sees one, so a seq is never handed out twice, also after a
crash between seal and commit; unused reserved numbers are skipped (gaps are normal;
loss shows in the eviction counters, not in gaps).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import heapq
import itertools
import logging
import math
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from agent.model import Priority, Quality, Reading
from agent.outbox_policy import Candidate, EvictionPolicy, Kind, SealPolicy, age

log = logging.getLogger("agent.outbox")

APP_ID = 0x43414F42  # "CAOB"
SEQ_BLOCK = 64
ROW_BASE = 50  # bytes on disk per row besides its text (record, index entry, page slack; measured)
BATCH_BASE = 64
MAGIC = b"SQLite format 3\x00"
SQLITE_FULL = 13
PRIOS = tuple(int(p) for p in Priority)  # 0 alarm, 1 event, 2 telemetry
QCODE = {Quality.GOOD: 0, Quality.STALE: 1, Quality.BAD: 2, Quality.SUBSTITUTED: 3}  # also keyed by "good" etc.
QUALITY = {v: k for k, v in QCODE.items()}
F_BOOL, F_NAN, F_BIG = 4, 8, 16
I64 = 2**63

MIGRATIONS: dict[int, tuple[str, ...]] = {  # version -> statements taking the schema from version-1 to it
    1: ("CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TABLE points(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        "CREATE TABLE rows(id INTEGER PRIMARY KEY, prio INTEGER NOT NULL, point INTEGER NOT NULL, t REAL NOT NULL,"
        " v, q INTEGER NOT NULL, reason TEXT, nbytes INTEGER NOT NULL, batch INTEGER)",
        "CREATE INDEX rows_unsealed ON rows(prio, id) WHERE batch IS NULL",
        "CREATE INDEX rows_batch ON rows(batch) WHERE batch IS NOT NULL",
        "CREATE TABLE batches(seq INTEGER PRIMARY KEY, prio INTEGER NOT NULL, count INTEGER NOT NULL,"
        " created_t REAL NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL)",
        "CREATE INDEX batches_prio ON batches(prio, seq)",
        "INSERT INTO meta VALUES ('boot_epoch', 0), ('seq_hi', 0), ('evicted_batches', 0),"
        " ('evicted_rows_0', 0), ('evicted_rows_1', 0), ('evicted_rows_2', 0)"),
}
SCHEMA_VERSION = max(MIGRATIONS)
INSERT_ROW = "INSERT INTO rows(prio, point, t, v, q, reason, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?)"
SELECT_PENDING = ("SELECT id, prio, point, t, v, q, reason, nbytes FROM rows"
                  " WHERE batch IS NULL AND prio = ? ORDER BY id LIMIT ?")


class OutboxError(RuntimeError):
    """The outbox cannot be used (closed, or its writer failed)."""


class OutboxFileError(OutboxError):
    """The file is not an outbox this code may use; it was left untouched."""


class OutboxCorrupt(OutboxFileError):
    pass


class OutboxForeign(OutboxFileError):
    pass


class OutboxTooNew(OutboxFileError):
    pass


class OutboxBusy(OutboxFileError):
    pass


class Sealed(NamedTuple):
    seq: int
    payload: bytes
    count: int
    priority: Priority
    created_t: float


def _text_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode())  # also refuses lone surrogates, before SQLite would


class _Store:
    """The SQLite side: every method runs in the worker thread; counters live here."""

    def __init__(self, path: Path, policy: EvictionPolicy) -> None:
        self.path, self.policy = path, policy
        self.cap = policy.max_bytes  # lowered when the disk itself is full
        self.conn: sqlite3.Connection | None = None
        self.lock_fd: int | None = None
        self.names: dict[int, str] = {}
        self.bytes = self.sealed_rows = self.batches = self.evicted_batches = 0
        self.pending, self.evicted = [0, 0, 0], [0, 0, 0]
        self.pending_since: list[float | None] = [None, None, None]  # monotonic, per priority
        self.oldest_t: float | None = None
        self.boot_epoch = self.seq_hi = 0
        self.next_seq = 1
        self.commits = self.acked_rows = self.write_errors = 0
        self.warned = False

    # -- opening -----------------------------------------------------------------------------------------
    def open(self) -> None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxBusy(f"outbox {path}: already open (another agent or Outbox holds it)") from None
        self.lock_fd = fd
        try:
            self._check_header()
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._inspect_and_migrate()
            self._load()
        except BaseException:
            self.close()
            raise

    def _check_header(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(100)
        if head and (len(head) < 100 or not head.startswith(MAGIC)):
            raise OutboxCorrupt(f"outbox {self.path}: not an SQLite database (corrupt or foreign file, "
                                f"{self.path.stat().st_size} bytes); refusing to use or replace it")

    def _inspect_and_migrate(self) -> None:
        c, where = self.conn, f"outbox {self.path}"
        try:
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            tables = sorted(r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            check = [r[0] for r in c.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as e:
            raise OutboxCorrupt(f"{where}: unreadable database ({e}); refusing to use or replace it") from e
        if check != ["ok"]:
            raise OutboxCorrupt(f"{where}: database is corrupt ({'; '.join(check[:3])}); refusing to use or replace it")
        new = app_id == 0 and version == 0 and not tables
        if not new and app_id != APP_ID:
            raise OutboxForeign(f"{where}: an SQLite database of something else (application_id {app_id:#x}, "
                                f"tables {', '.join(tables) or 'none'}); refusing to use or replace it")
        if version > SCHEMA_VERSION:
            raise OutboxTooNew(f"{where}: schema version {version} is newer than this agent knows "
                               f"({SCHEMA_VERSION}); refusing to open it (downgrade would lose data)")
        if not new and version < 1:
            raise OutboxCorrupt(f"{where}: outbox without a schema version; refusing to use or replace it")
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise OutboxError(f"{where}: cannot use WAL journal mode (got {mode!r})")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA journal_size_limit=8388608")

        def migrate() -> None:
            for v in sorted(MIGRATIONS):
                if v > version:
                    for stmt in MIGRATIONS[v]:
                        c.execute(stmt)
            if new:
                c.execute(f"PRAGMA application_id={APP_ID}")
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            c.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_epoch'")
        self._tx(migrate)
        if new:  # SQLite syncs the WAL's directory entry, not the new database file's
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _load(self) -> None:
        c = self.conn
        meta = dict(c.execute("SELECT key, value FROM meta"))
        self.boot_epoch, self.seq_hi = meta["boot_epoch"], meta["seq_hi"]
        self.evicted = [meta[f"evicted_rows_{p}"] for p in PRIOS]
        self.evicted_batches = meta["evicted_batches"]
        top = c.execute("SELECT max(seq) FROM batches").fetchone()[0] or 0
        self.next_seq = max(self.seq_hi, top) + 1  # the rest of a reserved block is skipped
        self.names = dict(c.execute("SELECT id, name FROM points"))
        for prio, n, nb in c.execute("SELECT prio, count(*), total(nbytes) FROM rows WHERE batch IS NULL GROUP BY prio"):
            self.pending[prio], self.bytes = n, self.bytes + int(nb)
            self.pending_since[prio] = -math.inf  # restored rows: waited for an unknown, long time
        self.sealed_rows = c.execute("SELECT count(*) FROM rows WHERE batch IS NOT NULL").fetchone()[0]
        n, nb = c.execute("SELECT count(*), total(nbytes) FROM batches").fetchone()
        self.batches, self.bytes = n, self.bytes + int(nb)
        self._refresh()
        if self.policy.excess(self.bytes, self.cap):  # max_bytes was lowered
            self.relieve()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.lock_fd is not None:  # last: closing another fd of the file drops SQLite's POSIX locks
            os.close(self.lock_fd)
            self.lock_fd = None

    # -- transactions ------------------------------------------------------------------------------------
    def _tx(self, body: Callable[[], Any]) -> Any:
        """Run body in one write transaction; on failure roll back the file and the counters."""
        saved = (self.bytes, self.sealed_rows, self.batches, self.evicted_batches, self.seq_hi,
                 list(self.pending), list(self.evicted), list(self.pending_since))
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            result = body()
            for p in PRIOS:
                if not self.pending[p]:
                    self.pending_since[p] = None
            c.execute("COMMIT")
        except BaseException:
            (self.bytes, self.sealed_rows, self.batches, self.evicted_batches, self.seq_hi,
             self.pending, self.evicted, self.pending_since) = saved
            if c.in_transaction:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("outbox: rollback failed")
            raise
        self.commits += 1
        self._refresh()
        return result

    def _refresh(self) -> None:
        row = self.conn.execute("SELECT t FROM rows ORDER BY id LIMIT 1").fetchone()
        self.oldest_t = row[0] if row else None

    def write(self, items: list[tuple[int, list[tuple], int, float]], points: list[tuple[int, str]]) -> None:
        counts, since, nbytes = [0, 0, 0], [None, None, None], 0
        for prio, rows, nb, mono in items:
            counts[prio] += len(rows)
            nbytes += nb
            if since[prio] is None:
                since[prio] = mono

        def body() -> None:
            if points:
                self.conn.executemany("INSERT OR IGNORE INTO points(id, name) VALUES (?, ?)", points)
            self.conn.executemany(INSERT_ROW, itertools.chain.from_iterable(it[1] for it in items))
            self.bytes += nbytes
            for p in PRIOS:
                if counts[p]:
                    if not self.pending[p]:
                        self.pending_since[p] = since[p]
                    self.pending[p] += counts[p]
            self._evict(self.policy.excess(self.bytes, self.cap))
        self._tx(body)

    def relieve(self, room: int = 0) -> None:
        """Evict down to the cap, less `room`, in a transaction of its own (start, or the disk was full)."""
        self._tx(lambda: self._evict(self.policy.excess(self.bytes + room, self.cap)))

    def _evict(self, need: int) -> None:
        if need <= 0:
            return
        c, freed = self.conn, 0
        for prio, kind in self.policy.order:
            while freed < need:
                if kind is Kind.ROWS:
                    cands = [Candidate(prio, kind, i, nb) for i, nb in c.execute(
                        "SELECT id, nbytes FROM rows WHERE batch IS NULL AND prio = ? ORDER BY id LIMIT 1024", (prio,))]
                else:
                    cands = [Candidate(prio, kind, s, nb, n) for s, nb, n in c.execute(
                        "SELECT seq, nbytes, count FROM batches WHERE prio = ? ORDER BY seq LIMIT 64", (prio,))]
                chosen = self.policy.choose(need - freed, cands)
                if not chosen:
                    break
                if kind is Kind.ROWS:  # chosen is the oldest prefix of this class
                    c.execute("DELETE FROM rows WHERE batch IS NULL AND prio = ? AND id <= ?", (prio, chosen[-1].key))
                    self.pending[prio] -= len(chosen)
                    self.evicted[prio] += len(chosen)
                else:
                    for b in chosen:
                        for p, n in c.execute("SELECT prio, count(*) FROM rows WHERE batch = ? GROUP BY prio", (b.key,)):
                            self.evicted[p] += n
                        c.execute("DELETE FROM rows WHERE batch = ?", (b.key,))
                        c.execute("DELETE FROM batches WHERE seq = ?", (b.key,))
                        self.sealed_rows -= b.count
                        self.batches -= 1
                        self.evicted_batches += 1
                nb = sum(x.nbytes for x in chosen)
                freed += nb
                self.bytes -= nb
            if freed >= need:
                break
        c.executemany("UPDATE meta SET value = ? WHERE key = ?",
                      [(self.evicted[p], f"evicted_rows_{p}") for p in PRIOS] + [(self.evicted_batches, "evicted_batches")])
        log.log(logging.DEBUG if self.warned else logging.WARNING,  # warn once per start; counts go to stats
                "outbox over its byte cap (%d bytes): evicted %d bytes", self.cap, freed,
                extra={"evicted_rows": dict(zip(("alarm", "event", "telemetry"), self.evicted)),
                       "evicted_batches": self.evicted_batches})
        self.warned = True

    # -- sealing and acknowledging -----------------------------------------------------------------------
    def seal(self, encode: Callable[[list[Reading], int], bytes], max_readings: int, prio_first: bool,
             created_t: float) -> Sealed | None:
        if not any(self.pending):
            return None
        if self.next_seq > self.seq_hi:
            def reserve() -> None:
                self.seq_hi = self.next_seq + SEQ_BLOCK - 1
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'seq_hi'", (self.seq_hi,))
            self._tx(reserve)

        def body() -> Sealed | None:
            c, n = self.conn, max_readings
            if prio_first:
                rows: list[tuple] = []
                for p in PRIOS:
                    if len(rows) < n and self.pending[p]:
                        rows += c.execute(SELECT_PENDING, (p, n - len(rows))).fetchall()
            else:
                per = [c.execute(SELECT_PENDING, (p, n)).fetchall() for p in PRIOS if self.pending[p]]
                rows = list(itertools.islice(heapq.merge(*per), n))
            if not rows:
                return None
            seq = self.next_seq
            self.next_seq += 1  # burnt even if encode fails: encode has seen it
            names = self.names
            readings = [Reading(names[pt], t, (v if not q >> 2 else bool(v) if q & F_BOOL else math.nan if q & F_NAN
                                               else int(v)), QUALITY[q & 3], reason)
                        for _, _, pt, t, v, q, reason, _ in rows]
            payload = encode(readings, seq)
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError(f"encode must return bytes, got {type(payload).__name__}")
            payload = bytes(payload)
            prio = min(r[1] for r in rows)
            nb = BATCH_BASE + len(payload)
            c.execute("INSERT INTO batches(seq, prio, count, created_t, nbytes, payload) VALUES (?, ?, ?, ?, ?, ?)",
                      (seq, prio, len(rows), created_t, nb + sum(r[7] for r in rows), payload))
            c.executemany("UPDATE rows SET batch = ? WHERE id = ?", [(seq, r[0]) for r in rows])
            for r in rows:
                self.pending[r[1]] -= 1
            self.sealed_rows += len(rows)
            self.batches += 1
            self.bytes += nb
            self._evict(self.policy.excess(self.bytes, self.cap))
            return Sealed(seq, payload, len(rows), Priority(prio), created_t)
        return self._tx(body)

    def ack(self, seqs: list[int]) -> int:
        def body() -> int:
            c, deleted = self.conn, 0
            for seq in seqs:
                row = c.execute("SELECT count, nbytes FROM batches WHERE seq = ?", (seq,)).fetchone()
                if row is None:
                    continue  # unknown, acked before or evicted: acks are idempotent
                deleted += c.execute("DELETE FROM rows WHERE batch = ?", (seq,)).rowcount
                c.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                self.sealed_rows -= row[0]
                self.batches -= 1
                self.bytes -= row[1]
            return deleted
        n = self._tx(body)
        self.acked_rows += n
        return n


class Outbox:
    """The durable store of readings waiting for the cloud (see the module docstring)."""

    def __init__(self, path: str | Path, *, clock: Any, max_bytes: int = 256 * 2**20, queue_max: int = 20_000,
                 commit_interval_s: float = 0.1, commit_rows: int = 2000) -> None:
        if queue_max < 1 or commit_rows < 1 or not commit_interval_s >= 0:
            raise ValueError("queue_max and commit_rows must be >= 1, commit_interval_s >= 0")
        self.path = Path(path)
        self._clock = clock
        self._store = _Store(self.path, EvictionPolicy(max_bytes))
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
        self._reader.close()
        await self._call(self._store.close)
        self._executor.shutdown(wait=True)
        self._state = "closed"

    async def __aenter__(self) -> "Outbox":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check(self) -> None:
        if self._fatal is not None:
            raise OutboxError(f"outbox {self.path}: writer failed: {self._fatal!r}") from self._fatal
        if self._state != "open":
            raise OutboxError(f"outbox {self.path}: not open ({self._state})")

    # -- appending ---------------------------------------------------------------------------------------
    def _rows(self, readings: Sequence[Reading], prio: int) -> tuple[list[tuple], int]:
        """Validate and convert readings to table rows (raises before anything is queued)."""
        ids, out, total = self._ids, [], 0
        append = out.append
        for point, t, v, q, reason in readings:
            pid = ids.get(point)
            if pid is None:
                pid = self._intern(point)
            qk = QCODE.get(q)
            if qk is None:
                raise ValueError(f"outbox: reading of {point}: quality {q!r} is not one of good/stale/bad/substituted")
            nb, cls = ROW_BASE, v.__class__
            if cls is float:
                if v != v:
                    v, qk = None, qk | F_NAN
            elif cls is int:
                if not -I64 <= v < I64:
                    v, qk = str(v), qk | F_BIG
                    nb += len(v)
            elif cls is str:
                nb += _text_len(v)
            elif cls is bool:
                qk |= F_BOOL
            elif v is not None:
                v, qk, nb = self._odd_value(point, v, qk, nb)
            if reason is not None:
                if reason.__class__ is not str:
                    reason = str(reason)
                nb += _text_len(reason)
            if t.__class__ is not float:
                t = float(t)
            if t != t:
                raise ValueError(f"outbox: reading of {point}: time is NaN")
            append((prio, pid, t, v, qk, reason, nb))
            total += nb
        return out, total

    def _odd_value(self, point: str, v: Any, qk: int, nb: int) -> tuple[Any, int, int]:
        if isinstance(v, bool):
            return bool(v), qk | F_BOOL, nb
        if isinstance(v, int):
            v = int(v)
            return (v, qk, nb) if -I64 <= v < I64 else (str(v), qk | F_BIG, nb + len(str(v)))
        if isinstance(v, float):
            v = float(v)
            return (None, qk | F_NAN, nb) if v != v else (v, qk, nb)
        if isinstance(v, str):
            v = str(v)
            return v, qk, nb + _text_len(v)
        raise TypeError(f"outbox: reading of {point}: value {v!r} ({type(v).__name__}) is not bool/int/float/str/None")

    def _intern(self, point: Any) -> int:
        if not isinstance(point, str) or not point:
            raise TypeError(f"outbox: point name must be a non-empty str, got {point!r}")
        _text_len(point)
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
        rows, nb = self._rows(readings, int(Priority(priority)))
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
        rows, nb = self._rows(readings, int(Priority(priority)))
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
            if (self._state == "open" and not self._flushes and self._qcount < self._commit_rows
                    and self._clock.monotonic() < due):
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
    async def seal(self, encode: Callable[[list[Reading], int], bytes], *, max_readings: int,
                   min_priority_first: bool = True) -> Sealed | None:
        """Seal up to max_readings unsealed readings into the next batch (one transaction); None if none."""
        self._check()
        if max_readings < 1:
            raise ValueError(f"max_readings must be >= 1, got {max_readings}")
        return await self._call(self._store.seal, encode, max_readings, min_priority_first, self._clock.now())

    def unacked(self) -> list[Sealed]:
        """Sealed batches not yet acknowledged, oldest first (committed state)."""
        self._check()
        rows = self._reader.execute("SELECT seq, payload, count, prio, created_t FROM batches ORDER BY seq").fetchall()
        return [Sealed(seq, payload, n, Priority(p), t) for seq, payload, n, p, t in rows]

    async def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged batches and their rows (one fsynced transaction); returns rows deleted."""
        self._check()
        todo = sorted({s for s in (int(x) for x in seqs) if 0 < s < I64})
        return await self._call(self._store.ack, todo) if todo else 0

    def peek(self, limit: int = 100) -> list[tuple[Priority, Reading]]:
        """Committed unsealed readings in sealing order (priority, then oldest): diagnostics."""
        self._check()
        names, out = self._store.names, []
        for prio, pt, t, v, q, reason in self._reader.execute(
                "SELECT prio, point, t, v, q, reason FROM rows WHERE batch IS NULL ORDER BY prio, id LIMIT ?", (limit,)):
            if q >> 2:
                v = bool(v) if q & F_BOOL else math.nan if q & F_NAN else int(v)
            out.append((Priority(prio), Reading(names[pt], t, v, QUALITY[q & 3], reason)))
        return out

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
            "rows_pending": sum(st.pending), "rows_pending_by_priority": dict(zip(names, st.pending)),
            "rows_sealed": st.sealed_rows, "batches_unacked": st.batches, "bytes": st.bytes,
            "max_bytes": st.policy.max_bytes, "cap_bytes": st.cap, "oldest_unsent_t": st.oldest_t,
            "oldest_pending_age_s": max(ages) if ages else None, "pending_priority": highest,
            "evicted_rows": dict(zip(names, st.evicted)), "evicted_batches": st.evicted_batches,
            "appended": self._appended, "committed": self._committed, "acked_rows": st.acked_rows,
            "queue_len": self._uncommitted, "commits": st.commits, "next_seq": st.next_seq,
            "boot_epoch": st.boot_epoch, "write_errors": st.write_errors, "last_error": self._last_error,
        }
