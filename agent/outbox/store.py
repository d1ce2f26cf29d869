"""The outbox's SQLite store: the file and every transaction on it.

Owns opening (lock; the file checks of `agent.outbox.opening`: foreign, corrupt and
too-new files are refused, never replaced; migrations from `agent.outbox.schema`),
transactions that roll back file and counters together, the in-memory counters and
byte total, applying eviction choices from `agent.outbox.policy`, sealing and
acknowledging. `Store` methods run only in the worker thread of
`agent.outbox.writer.Outbox`; `read_unacked`/`read_unsealed` use the caller's read-only
connection.

The disk (docs/uplink.md, "A full disk"): at open, `DiskPolicy.plan` fits the cap, the
WAL's checkpoint size and the reserve file (`agent.outbox.disk`) to the filesystem. A
write that finds the disk full never waits for space it cannot make: `with_room` runs
`on_full()`, which releases the reserve, checkpoints the WAL (which may need the
database file to grow) and, unless the disk still has room to spare, lowers the cap
below what is stored and evicts in a transaction of its own, then holds a reserve for
the next time; the retried write reuses pages the store already holds. While the disk
is full every commit is followed by a checkpoint (the WAL cannot grow, so it is reused
from its start). `regain()` plans anew and takes the reserve and the planned cap back
once the disk has room. A store that cannot record its boot at open (disk full)
records it with its first write that fits.

Sequence numbers are reserved in blocks of SEQ_BLOCK by a committed transaction
before `encode` ever sees one, so a seq is never handed out twice, also after a
crash between seal and commit; unused reserved numbers are skipped (gaps are normal;
loss shows in the eviction counters, not in gaps).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent.outbox.disk import Reserve, free_bytes, own_bytes
from agent.outbox.errors import OutboxBusy, OutboxError, OutboxFull, is_full
from agent.outbox.opening import check_header, migrate
from agent.outbox.policy import Candidate, DiskPolicy, EvictionPolicy, Kind
from agent.outbox.schema import INSERT_ROW, PRIOS

log = logging.getLogger("agent.outbox")  # one logger for the whole outbox
SEQ_BLOCK = 64
START_ROOM = 2**20  # free bytes below which opening releases the reserve first
T = TypeVar("T")


class Store:
    """The SQLite side: every method runs in the worker thread; counters live here."""

    def __init__(self, path: Path, policy: EvictionPolicy, disk: DiskPolicy) -> None:
        self.path, self.policy, self.disk = path, policy, disk
        self.plan = disk.plan(free_bytes=2**62, own_bytes=0)  # until open() measures the disk
        self.cap = policy.max_bytes  # the plan's; lowered while the disk is full
        self.reserve = Reserve(path)
        self.full = self.blind = self.boot_pending = self.measured = False
        self.last_error: str | None = None
        self.full_events, self.page = 0, 4096
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
        self.loaded: tuple[int, ...] = (0, 0, 0, 0)
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
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise OutboxFull(f"outbox {path}: the disk is full, cannot create the file") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxBusy(f"outbox {path}: already open (another agent or Outbox holds it)") from None
        self.lock_fd = fd
        try:
            check_header(path)
            free, own = free_bytes(path.parent), own_bytes(path)
            if free < START_ROOM:  # a full disk: the last run's reserve is room for SQLite's WAL index and this boot
                self.reserve.release()
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._migrate()
            self._load()
            self._fit(free, own)
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        def make_room() -> None:  # the reserve of the last run: room to record this boot
            self.reserve.release()
            self.checkpoint()

        self.boot_pending = not migrate(self.db, self.path, self.tx, make_room)
        if self.boot_pending:
            log.error("outbox %s: disk full at start; this boot is recorded with the first write that fits", self.path)

    def _fit(self, free: int, own: int) -> None:
        """Fit the store to its disk (`free` and `own` bytes measured before opening): the plan
        (cap, WAL sizes, reserve), then evict down to the cap if it is lower than what is stored
        (max_bytes lowered), then take the reserve (when the disk has room for it)."""
        self.page = self.db.execute("PRAGMA page_size").fetchone()[0]
        self._plan(free, own)
        self.measured = True
        if self.policy.excess(self.bytes, self.cap):
            try:
                self.with_room(self.relieve)
            except sqlite3.OperationalError as e:
                log.error("outbox %s: eviction down to the cap at start failed: %s", self.path, e)
        self.regain()
        log.info(
            "outbox %s: byte cap %d (max_bytes %d, disk budget %d), reserve %d of %d bytes",
            self.path,
            self.cap,
            self.policy.max_bytes,
            self.plan.budget,
            self.reserve.held,
            self.plan.reserve,
        )

    def _load(self) -> None:
        c = self.db
        meta = dict(c.execute("SELECT key, value FROM meta"))
        self.boot_epoch, self.seq_hi = meta["boot_epoch"], meta["seq_hi"]
        self.evicted = [meta[f"evicted_rows_{p}"] for p in PRIOS]
        self.evicted_batches = meta["evicted_batches"]
        self.loaded = (*self.evicted, self.evicted_batches)  # the lifetime eviction counts found on open
        top = c.execute("SELECT max(seq) FROM batches").fetchone()[0] or 0
        self.next_seq = max(self.seq_hi, top) + 1  # the rest of a reserved block is skipped
        self.boot_epoch += self.boot_pending  # recorded with the first write that fits
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

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # the last connection: SQLite checkpoints and deletes the WAL
            self.conn = None
            if self.measured and self.reserve.held < self.plan.reserve:  # after a full disk: hold the WAL's room
                try:
                    self.reserve.hold(min(self.plan.reserve, free_bytes(self.path.parent) // 4096 * 4096))
                except OSError as e:
                    log.warning("outbox %s: reserve not taken back on close: %s", self.path, e)
        if self.lock_fd is not None:  # last: closing another fd of the file drops SQLite's POSIX locks
            os.close(self.lock_fd)
            self.lock_fd = None

    # -- transactions ------------------------------------------------------------------------------------
    def tx(self, body: Callable[[], Any]) -> Any:
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
            if self.boot_pending:
                c.execute("UPDATE meta SET value = ? WHERE key = 'boot_epoch'", (self.boot_epoch,))
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
        self.boot_pending = False
        self._refresh()
        return result

    def _refresh(self) -> None:
        row = self.db.execute("SELECT t FROM rows ORDER BY id LIMIT 1").fetchone()
        self.oldest_t = row[0] if row else None

    def write(self, items: Sequence[tuple], points: list[tuple[int, str]]) -> None:
        """Commit queued items (prio, rows, nbytes, monotonic time, ...) and new point names."""
        counts, nbytes = [0, 0, 0], 0
        since: list[float | None] = [None, None, None]
        for prio, rows, nb, mono, *_ in items:
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
            self.evict(self.policy.excess(self.bytes, self.cap))  # the new rows compete: oldest telemetry first

        self.tx(body)

    def relieve(self, room: int = 0) -> None:
        """Evict down to the cap, less `room`, in a transaction of its own (start, or the disk was full)."""
        self.tx(lambda: self.evict(self.policy.excess(self.bytes + room, self.cap)))

    # -- the disk ----------------------------------------------------------------------------------------
    def with_room(self, fn: Callable[[], T], incoming: int = 0) -> T:
        """Run the transaction `fn`; if the disk is full, make room (on_full) and run it once more.
        Raises what the second try raises (sqlite3.OperationalError)."""
        if self.full:
            self.regain()  # space came back: write with the planned cap, not the lowered one
        try:
            result = fn()
        except sqlite3.OperationalError as e:
            if not is_full(e):
                raise
            self.write_errors, self.last_error = self.write_errors + 1, str(e)
            self.on_full(incoming)
            result = fn()
        if self.full:  # the WAL cannot grow: copy it back now, so the next commit reuses it from its start
            self.checkpoint("PASSIVE")
        self.regain()
        return result

    def on_full(self, incoming: int = 0) -> None:
        """The disk refused a write: make room with what the store holds, never asking the disk for
        more first. Release the reserve (room for the checkpoint to grow the database file and for
        the eviction's WAL frames) and checkpoint; then DiskPolicy.after_full decides: with room to
        spare the store may still grow, else the cap goes below what is stored and the store evicts
        (leaving room for `incoming` bytes) and checkpoints again; last, hold the reserve again
        from what is free, so the next recovery has its room too."""
        where, first = self.path.parent, not self.full
        if not self.blind and self.disk.roomy(free_bytes(where), self.plan):
            self.blind = True  # full with room on the disk: a quota or size limit statvfs does not show
            log.warning("outbox %s: writes refused with room on the disk: cap lowered until restart", self.path)
        released = self.reserve.release()
        self.checkpoint()
        self.full, self.full_events = True, self.full_events + 1
        free = 0 if self.blind else free_bytes(where)
        cap, _ = self.disk.after_full(self.plan, free, self.cap, self.bytes, incoming)
        if cap < self.cap:
            self.cap = cap
            try:
                self.relieve(incoming)
            except sqlite3.OperationalError as e:
                log.error("outbox %s: eviction after disk full failed: %s", self.path, e)
            self.checkpoint()
            free = 0 if self.blind else free_bytes(where)
        _, keep = self.disk.after_full(self.plan, free, self.cap, self.bytes, incoming)
        self.reserve.hold(keep // 4096 * 4096)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "outbox %s: disk full at %d bytes stored: released %d bytes of reserve, holding %d; byte cap %d "
            "until the disk has room again",
            self.path,
            self.bytes,
            released,
            self.reserve.held,
            self.cap,
        )

    def checkpoint(self, mode: str = "RESTART") -> bool:
        """Copy the WAL into the database file and restart it (False when that failed or a reader held it)."""
        try:
            ((busy, _, _),) = self.db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.OperationalError as e:
            log.debug("outbox %s: checkpoint failed: %s", self.path, e)
            return False
        return not busy

    def _plan(self, free: int, own: int) -> None:
        """Plan the store's use of its disk (DiskPolicy.plan) and apply the plan."""
        self.plan = self.disk.plan(free, own, self.page, self.bytes)
        self.cap = self.plan.cap
        self.db.execute(f"PRAGMA journal_size_limit={self.plan.wal_limit}")
        self.db.execute(f"PRAGMA wal_autocheckpoint={self.plan.wal_pages}")

    def regain(self) -> None:
        """While the disk was full or the reserve is missing: once the disk has room again, plan
        anew (the disk as it is now, like at start), take the reserve and the planned cap (not when
        statvfs was seen to be blind: then only the reserve)."""
        if not self.full and self.reserve.held >= self.plan.reserve:
            return
        free = free_bytes(self.path.parent)
        if not self.disk.roomy(free, self.plan):
            return
        if not self.blind:
            self._plan(free, own_bytes(self.path))
        if not self.reserve.hold(self.plan.reserve) or not self.full or self.blind:
            return
        self.full = False
        log.warning("outbox %s: the disk has room again; reserve held, byte cap back to %d", self.path, self.cap)

    def evict(self, need: int) -> None:
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
