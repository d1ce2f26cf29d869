"""Stored batches -> reading rows on PostgreSQL, safe with any number of workers at once.

One transaction: claim up to `limit` batches in state new with `FOR UPDATE SKIP LOCKED`
in (received_t, cabinet, seq) order (a batch another worker is materializing is skipped,
never waited for, so two workers never hold each other's rows: no deadlock), decode them,
COPY their rows into `readings`, move them to done (or bad), add the counters, commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from tools.ingest.pg.migrations import READINGS_COLUMNS

# (cabinet, envelope) -> (point, t, kind, num, text, quality, reason) rows; it runs inside the claiming
# transaction, so its own queries (a catalogue) must not end it
Decode = Callable[[str, bytes], list[tuple]]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def typed(cabinet: str, seq: int, row: tuple) -> tuple:
    """A readings row (bodies.rows_of) as the partitioned table's columns: t as a timestamptz,
    booleans in `flag`, JSON objects (alarms, events) in `doc`."""
    point, t, kind, num, text, quality, reason = row
    flag = None
    doc = None
    if kind == "b":
        flag, num = bool(num), None
    elif kind == "s" and text is not None and text.startswith("{"):
        try:
            doc = json.dumps(json.loads(text))
            text = None
        except ValueError:
            doc = None
    return (cabinet, seq, point, EPOCH + dt.timedelta(seconds=t), kind, num, flag, text, doc, quality, reason)


def insert_typed(cur: Any, rows: list[tuple]) -> None:
    """INSERT (cabinet, seq, point, t, kind, num, text, quality, reason) rows as typed rows."""
    marks = ", ".join(["%s"] * 11)
    cur.executemany(
        f"INSERT INTO readings ({READINGS_COLUMNS}) VALUES ({marks})", [typed(r[0], r[1], r[2:]) for r in rows]
    )


def materialize(conn: Any, decode: Decode, limit: int) -> tuple[int, int]:
    """Materialize up to `limit` new batches (module doc): (batches, readings) written."""
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT cabinet, seq, envelope FROM batches WHERE state = 'new' "
            "ORDER BY received_t, cabinet, seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        )
        claimed = cur.fetchall()
        if not claimed:
            conn.rollback()
            return 0, 0
        done: list[tuple[int, str, int]] = []
        bad: list[tuple[str, str, int]] = []
        rows: list[tuple] = []
        for cabinet, seq, env in claimed:  # all decoded before the COPY: decoding may look up a catalogue
            try:
                got = [typed(cabinet, seq, r) for r in decode(cabinet, bytes(env))]
            except (ValueError, OverflowError) as e:  # BatchError, CatalogueError, VerifyError; a time out of range
                bad.append((str(e)[:500], cabinet, seq))
                continue
            rows += got
            done.append((len(got), cabinet, seq))
        n = len(rows)
        with cur.copy(f"COPY readings ({READINGS_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.executemany("UPDATE batches SET state = 'done', readings = %s WHERE cabinet = %s AND seq = %s", done)
        cur.executemany("UPDATE batches SET state = 'bad', error = %s WHERE cabinet = %s AND seq = %s", bad)
        for name, k in (("readings", n), ("rejected.bad_body", len(bad))):  # sorted: one lock order
            if k:
                cur.execute(
                    "INSERT INTO counters (name, value) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
                    (name, k),
                )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return len(claimed), n
