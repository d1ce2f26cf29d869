"""The outbox's on-disk format: the schema, its migrations, and how a reading is a row.

Owns the table layout and version constants, the byte estimates used for accounting,
and the row codec: `to_rows` (readings to rows, validating them, on the event loop in
`agent.outbox.writer.Outbox.put`) and `to_readings` (rows back to readings, in
`agent.outbox.store`). No I/O here.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.model import QUALITY_CODES, QUALITY_OF_CODE, Priority, Reading

APP_ID = 0x43414F42  # "CAOB"
ROW_BASE = 50  # bytes on disk per row besides its text (record, index entry, page slack; measured)
BATCH_BASE = 64
MAGIC = b"SQLite format 3\x00"
PRIOS = tuple(int(p) for p in Priority)  # 0 alarm, 1 event, 2 telemetry
QCODE = QUALITY_CODES  # the one table (agent.model); also keyed by "good" etc.
QUALITY = QUALITY_OF_CODE
F_BOOL, F_NAN, F_BIG = 4, 8, 16
I64 = 2**63

MIGRATIONS: dict[int, tuple[str, ...]] = {  # version -> statements taking the schema from version-1 to it
    1: (
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TABLE points(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        (
            "CREATE TABLE rows(id INTEGER PRIMARY KEY, prio INTEGER NOT NULL, point INTEGER NOT NULL, t REAL NOT NULL,"
            " v, q INTEGER NOT NULL, reason TEXT, nbytes INTEGER NOT NULL, batch INTEGER)"
        ),
        "CREATE INDEX rows_unsealed ON rows(prio, id) WHERE batch IS NULL",
        "CREATE INDEX rows_batch ON rows(batch) WHERE batch IS NOT NULL",
        (
            "CREATE TABLE batches(seq INTEGER PRIMARY KEY, prio INTEGER NOT NULL, count INTEGER NOT NULL,"
            " created_t REAL NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL)"
        ),
        "CREATE INDEX batches_prio ON batches(prio, seq)",
        (
            "INSERT INTO meta VALUES ('boot_epoch', 0), ('seq_hi', 0), ('evicted_batches', 0),"
            " ('evicted_rows_0', 0), ('evicted_rows_1', 0), ('evicted_rows_2', 0)"
        ),
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)  # the store migrates to max(MIGRATIONS) as it is when a file is opened
ROW_COLUMNS = "id, prio, point, t, v, q, reason, nbytes"  # what `to_readings` reads
INSERT_ROW = "INSERT INTO rows(prio, point, t, v, q, reason, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?)"
SELECT_PENDING = f"SELECT {ROW_COLUMNS} FROM rows WHERE batch IS NULL AND prio = ? ORDER BY id LIMIT ?"


def text_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode())  # also refuses lone surrogates, before SQLite would


def to_rows(
    readings: Sequence[Reading], prio: int, ids: dict[str, int], intern: Callable[[Any], int]
) -> tuple[list[tuple], int]:
    """Validate and convert readings to table rows and their byte estimate; `intern`
    gives a new point name its id (and adds it to `ids`). Raises before anything is queued."""
    out: list[tuple[Any, ...]] = []
    total = 0
    append = out.append
    for point, t, v, q, reason in readings:
        pid = ids.get(point)
        if pid is None:
            pid = intern(point)
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
            nb += text_len(v)
        elif cls is bool:
            qk |= F_BOOL
        elif v is not None:
            v, qk, nb = _odd_value(point, v, qk, nb)
        if reason is not None:
            if reason.__class__ is not str:
                reason = str(reason)
            nb += text_len(reason)
        if t.__class__ is not float:
            t = float(t)
        if t != t:
            raise ValueError(f"outbox: reading of {point}: time is NaN")
        append((prio, pid, t, v, qk, reason, nb))
        total += nb
    return out, total


def _odd_value(point: str, v: Any, qk: int, nb: int) -> tuple[Any, int, int]:
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
        return v, qk, nb + text_len(v)
    raise TypeError(f"outbox: reading of {point}: value {v!r} ({type(v).__name__}) is not bool/int/float/str/None")


def to_readings(names: dict[int, str], rows: Iterable[tuple]) -> list[Reading]:
    """Rows of ROW_COLUMNS back to readings (`names`: point id -> name)."""
    return [
        Reading(
            names[pt],
            t,
            (v if not q >> 2 else bool(v) if q & F_BOOL else math.nan if q & F_NAN else int(v)),
            QUALITY[q & 3],
            reason,
        )
        for _, _, pt, t, v, q, reason, _ in rows
    ]
