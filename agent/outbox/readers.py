"""Reads of the outbox on the read-only connection (WAL readers see committed data only):
what is sealed and not yet acknowledged, and what is waiting to be sealed. They run on
the caller's thread, beside the writer's worker thread (agent/outbox/writer.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from agent.model import Priority, Reading
from agent.outbox.errors import Sealed
from agent.outbox.schema import ROW_COLUMNS, to_readings


def read_unacked(reader: sqlite3.Connection) -> list[Sealed]:
    """Sealed batches not yet acknowledged, oldest first."""
    rows = reader.execute("SELECT seq, payload, count, prio, created_t FROM batches ORDER BY seq").fetchall()
    return [Sealed(seq, payload, n, Priority(p), t) for seq, payload, n, p, t in rows]


def read_unacked_seqs(reader: sqlite3.Connection) -> list[int]:
    return [seq for (seq,) in reader.execute("SELECT seq FROM batches ORDER BY seq")]


def read_sealed(reader: sqlite3.Connection, seqs: Sequence[int]) -> list[Sealed]:
    out: list[Sealed] = []
    seqs = list(seqs)
    for i in range(0, len(seqs), 500):  # stay under SQLite's variable limit
        part = seqs[i : i + 500]
        rows = reader.execute(
            f"SELECT seq, payload, count, prio, created_t FROM batches WHERE seq IN "
            f"({','.join('?' * len(part))}) ORDER BY seq",
            part,
        ).fetchall()
        out += [Sealed(seq, payload, n, Priority(p), t) for seq, payload, n, p, t in rows]
    return out


def read_unsealed(reader: sqlite3.Connection, names: dict[int, str], limit: int) -> list[tuple[Priority, Reading]]:
    """Unsealed rows in sealing order (priority, then oldest)."""
    rows = reader.execute(
        f"SELECT {ROW_COLUMNS} FROM rows WHERE batch IS NULL ORDER BY prio, id LIMIT ?", (limit,)
    ).fetchall()
    return list(zip((Priority(r[1]) for r in rows), to_readings(names, rows), strict=True))
