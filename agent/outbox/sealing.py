"""Sealing and acknowledging, on the store of `agent.outbox.store` (in the outbox's worker
thread, like every Store method): `seal` takes the next pending readings into a batch
(payload from the caller's pure `encode`), `ack` deletes acknowledged batches and their
rows. Both make room when the disk is full (`Store.with_room`).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import sqlite3
from collections.abc import Callable

from agent.model import Priority, Reading
from agent.outbox.errors import OutboxCorrupt, Sealed, is_full
from agent.outbox.schema import BATCH_BASE, PRIOS, SELECT_PENDING, to_readings
from agent.outbox.store import SEQ_BLOCK, Store

MIN_SHRUNK = 64  # readings: the smallest batch a full disk makes seal() try


def seal(
    st: Store, encode: Callable[[list[Reading], int], bytes], max_readings: int, prio_first: bool, created_t: float
) -> Sealed | None:
    """Seal the next batch; None if nothing is pending. When the disk is full: make room (see
    Store.with_room), and if the batch still does not fit, seal a quarter as many readings (a
    smaller batch touches fewer pages: it fits in the WAL the store already holds), down to
    MIN_SHRUNK; then the error is raised and nothing changed."""
    n = max_readings
    while True:
        try:
            return st.with_room(functools.partial(_seal, st, encode, n, prio_first, created_t))
        except sqlite3.OperationalError as e:
            if not is_full(e) or n <= MIN_SHRUNK:
                raise
            n = max(MIN_SHRUNK, n // 4)


def _seal(
    st: Store, encode: Callable[[list[Reading], int], bytes], max_readings: int, prio_first: bool, created_t: float
) -> Sealed | None:
    if not any(st.pending):
        return None
    if st.next_seq > st.seq_hi:

        def reserve() -> None:
            st.seq_hi = st.next_seq + SEQ_BLOCK - 1
            st.db.execute("UPDATE meta SET value = ? WHERE key = 'seq_hi'", (st.seq_hi,))

        st.tx(reserve)

    def body() -> Sealed | None:
        c, n = st.db, max_readings
        if prio_first:
            rows: list[tuple] = []
            for p in PRIOS:
                if len(rows) < n and st.pending[p]:
                    rows += c.execute(SELECT_PENDING, (p, n - len(rows))).fetchall()
        else:
            per = [c.execute(SELECT_PENDING, (p, n)).fetchall() for p in PRIOS if st.pending[p]]
            rows = list(itertools.islice(heapq.merge(*per), n))
        if not rows:
            return None
        seq = st.next_seq
        st.next_seq += 1  # burnt even if encode fails: encode has seen it
        readings = to_readings(st.names, rows)
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
                    f"outbox {st.path}: sealing priority {p} up to row {top} marked {cur.rowcount} rows, expected {k}"
                )
        for p, (_, k) in last.items():
            st.pending[p] -= k
        st.sealed_rows += len(rows)
        st.batches += 1
        st.bytes += nb
        st.evict(st.policy.excess(st.bytes, st.cap))
        return Sealed(seq, payload, len(rows), Priority(prio), created_t)

    return st.tx(body)


def ack(st: Store, seqs: list[int]) -> int:
    def body() -> int:
        c, deleted = st.db, 0
        for seq in seqs:
            row = c.execute("SELECT count, nbytes FROM batches WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                continue  # unknown, acked before or evicted: acks are idempotent
            deleted += c.execute("DELETE FROM rows WHERE batch = ?", (seq,)).rowcount
            c.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            st.sealed_rows -= row[0]
            st.batches -= 1
            st.bytes -= row[1]
        return deleted

    n = st.with_room(lambda: st.tx(body))
    st.acked_rows += n
    return n
