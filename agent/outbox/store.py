"""The outbox's SQLite store: the file and every transaction on it.

Owns opening (lock, header and integrity checks; foreign, corrupt and too-new files
are refused, never replaced; migrations from `agent.outbox.schema`), transactions
that roll back file and counters together, the in-memory counters and byte total,
applying eviction choices from `agent.outbox.policy`, sealing and acknowledging.
`Store` methods run only in the worker thread of `agent.outbox.writer.Outbox`;
`read_unacked`/`read_unsealed` use the caller's read-only connection.

Sequence numbers are reserved in blocks of SEQ_BLOCK by a committed transaction
before `encode` ever sees one, so a seq is never handed out twice, also after a
crash between seal and commit; unused reserved numbers are skipped (gaps are normal;
loss shows in the eviction counters, not in gaps).
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import logging
import math
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.model import Priority, Reading
from agent.outbox.errors import (
    OutboxBusy,
    OutboxCorrupt,
    OutboxError,
    OutboxForeign,
    OutboxTooNew,
    Sealed,
)
from agent.outbox.policy import Candidate, EvictionPolicy, Kind
from agent.outbox.schema import (
    APP_ID,
    BATCH_BASE,
    INSERT_ROW,
    MAGIC,
    MIGRATIONS,
    PRIOS,
    SELECT_PENDING,
    to_readings,
)

log = logging.getLogger("agent.outbox")  # one logger for the whole outbox
SEQ_BLOCK = 64


class Store:
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

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (every transaction method runs between open() and close())."""
        if self.conn is None:
            raise OutboxError(f"outbox {self.path}: not open")
        return self.conn

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
            raise OutboxCorrupt(
                f"outbox {self.path}: not an SQLite database (corrupt or foreign file, "
                f"{self.path.stat().st_size} bytes); refusing to use or replace it"
            )

    def _inspect_and_migrate(self) -> None:
        c, where = self.db, f"outbox {self.path}"
        schema = max(MIGRATIONS)  # the version this code writes: the migration table decides
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
            raise OutboxForeign(
                f"{where}: an SQLite database of something else (application_id {app_id:#x}, "
                f"tables {', '.join(tables) or 'none'}); refusing to use or replace it"
            )
        if version > schema:
            raise OutboxTooNew(
                f"{where}: schema version {version} is newer than this agent knows "
                f"({schema}); refusing to open it (downgrade would lose data)"
            )
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
            c.execute(f"PRAGMA user_version={schema}")
            c.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_epoch'")

        self._tx(migrate)
        if new:  # SQLite syncs the WAL's directory entry, not the new database file's
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _load(self) -> None:
        c = self.db
        meta = dict(c.execute("SELECT key, value FROM meta"))
        self.boot_epoch, self.seq_hi = meta["boot_epoch"], meta["seq_hi"]
        self.evicted = [meta[f"evicted_rows_{p}"] for p in PRIOS]
        self.evicted_batches = meta["evicted_batches"]
        top = c.execute("SELECT max(seq) FROM batches").fetchone()[0] or 0
        self.next_seq = max(self.seq_hi, top) + 1  # the rest of a reserved block is skipped
        self.names = dict(c.execute("SELECT id, name FROM points"))
        for prio, n, nb in c.execute(
            "SELECT prio, count(*), total(nbytes) FROM rows WHERE batch IS NULL GROUP BY prio"
        ):
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
        saved = (
            self.bytes,
            self.sealed_rows,
            self.batches,
            self.evicted_batches,
            self.seq_hi,
            list(self.pending),
            list(self.evicted),
            list(self.pending_since),
        )
        c = self.db
        c.execute("BEGIN IMMEDIATE")
        try:
            result = body()
            for p in PRIOS:
                if not self.pending[p]:
                    self.pending_since[p] = None
            c.execute("COMMIT")
        except BaseException:
            (
                self.bytes,
                self.sealed_rows,
                self.batches,
                self.evicted_batches,
                self.seq_hi,
                self.pending,
                self.evicted,
                self.pending_since,
            ) = saved
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
        row = self.db.execute("SELECT t FROM rows ORDER BY id LIMIT 1").fetchone()
        self.oldest_t = row[0] if row else None

    def write(self, items: list[tuple[int, list[tuple], int, float]], points: list[tuple[int, str]]) -> None:
        counts, nbytes = [0, 0, 0], 0
        since: list[float | None] = [None, None, None]
        for prio, rows, nb, mono in items:
            counts[prio] += len(rows)
            nbytes += nb
            if since[prio] is None:
                since[prio] = mono

        def body() -> None:
            if points:
                self.db.executemany("INSERT OR IGNORE INTO points(id, name) VALUES (?, ?)", points)
            self.db.executemany(INSERT_ROW, itertools.chain.from_iterable(it[1] for it in items))
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
        c, freed = self.db, 0
        for prio, kind in self.policy.order:
            while freed < need:
                if kind is Kind.ROWS:
                    cands = [
                        Candidate(prio, kind, i, nb)
                        for i, nb in c.execute(
                            "SELECT id, nbytes FROM rows WHERE batch IS NULL AND prio = ? ORDER BY id LIMIT 1024",
                            (prio,),
                        )
                    ]
                else:
                    cands = [
                        Candidate(prio, kind, s, nb, n)
                        for s, nb, n in c.execute(
                            "SELECT seq, nbytes, count FROM batches WHERE prio = ? ORDER BY seq LIMIT 64", (prio,)
                        )
                    ]
                chosen = self.policy.choose(need - freed, cands)
                if not chosen:
                    break
                if kind is Kind.ROWS:  # chosen is the oldest prefix of this class
                    c.execute("DELETE FROM rows WHERE batch IS NULL AND prio = ? AND id <= ?", (prio, chosen[-1].key))
                    self.pending[prio] -= len(chosen)
                    self.evicted[prio] += len(chosen)
                else:
                    for b in chosen:
                        for p, n in c.execute(
                            "SELECT prio, count(*) FROM rows WHERE batch = ? GROUP BY prio", (b.key,)
                        ):
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
        c.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(self.evicted[p], f"evicted_rows_{p}") for p in PRIOS] + [(self.evicted_batches, "evicted_batches")],
        )
        log.log(
            logging.DEBUG if self.warned else logging.WARNING,  # warn once per start; counts go to stats
            "outbox over its byte cap (%d bytes): evicted %d bytes",
            self.cap,
            freed,
            extra={
                "evicted_rows": dict(zip(("alarm", "event", "telemetry"), self.evicted, strict=True)),
                "evicted_batches": self.evicted_batches,
            },
        )
        self.warned = True

    # -- sealing and acknowledging -----------------------------------------------------------------------
    def seal(
        self, encode: Callable[[list[Reading], int], bytes], max_readings: int, prio_first: bool, created_t: float
    ) -> Sealed | None:
        if not any(self.pending):
            return None
        if self.next_seq > self.seq_hi:

            def reserve() -> None:
                self.seq_hi = self.next_seq + SEQ_BLOCK - 1
                self.db.execute("UPDATE meta SET value = ? WHERE key = 'seq_hi'", (self.seq_hi,))

            self._tx(reserve)

        def body() -> Sealed | None:
            c, n = self.db, max_readings
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
            readings = to_readings(self.names, rows)
            payload = encode(readings, seq)
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError(f"encode must return bytes, got {type(payload).__name__}")
            payload = bytes(payload)
            prio = min(r[1] for r in rows)
            nb = BATCH_BASE + len(payload)
            c.execute(
                "INSERT INTO batches(seq, prio, count, created_t, nbytes, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (seq, prio, len(rows), created_t, nb + sum(r[7] for r in rows), payload),
            )
            # The rows taken of each priority are a prefix (by id) of its unsealed rows:
            # one range update per priority instead of one statement per row.
            last: dict[int, tuple[int, int]] = {}
            for r in rows:
                top, k = last.get(r[1], (0, 0))
                last[r[1]] = (max(top, r[0]), k + 1)
            for p, (top, k) in last.items():
                cur = c.execute("UPDATE rows SET batch = ? WHERE batch IS NULL AND prio = ? AND id <= ?", (seq, p, top))
                if cur.rowcount != k:  # cannot happen with one writer; never seal a row twice or miss one
                    raise OutboxCorrupt(
                        f"outbox {self.path}: sealing priority {p} up to row {top} marked "
                        f"{cur.rowcount} rows, expected {k}"
                    )
            for p, (_, k) in last.items():
                self.pending[p] -= k
            self.sealed_rows += len(rows)
            self.batches += 1
            self.bytes += nb
            self._evict(self.policy.excess(self.bytes, self.cap))
            return Sealed(seq, payload, len(rows), Priority(prio), created_t)

        return self._tx(body)

    def ack(self, seqs: list[int]) -> int:
        def body() -> int:
            c, deleted = self.db, 0
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
