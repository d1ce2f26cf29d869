"""`Store.save_decoded`: decoded batches (`store.Decoded`) written in one transaction, each
batch's rows by the one worker that moves it out of state new (both engines; PostgreSQL's
workers use pg/materialize.py, which claims batches instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def save_decoded(store: Any, decoded: Sequence[Any]) -> tuple[int, int]:
    """Write decoded batches in one transaction: each batch's state goes from new to done
    (or bad) and only the worker that moves it writes its rows; a batch another worker
    saved first is skipped. Returns (batches, readings) written."""
    if not decoded:
        return 0, 0
    rows: list[tuple] = []
    batches = bad = 0
    cur = store.begin()
    try:
        where = "WHERE cabinet = ? AND seq = ? AND state = 'new'"
        for d in decoded:
            if d.error is None:
                cur.execute(
                    store.sql(f"UPDATE batches SET state = 'done', readings = ? {where}"),
                    (len(d.rows), d.cabinet, d.seq),
                )
            else:
                cur.execute(
                    store.sql(f"UPDATE batches SET state = 'bad', error = ? {where}"), (d.error, d.cabinet, d.seq)
                )
            if cur.rowcount != 1:  # another worker materialized it meanwhile
                continue
            batches += 1
            bad += d.error is not None
            rows += [(d.cabinet, d.seq, *r) for r in d.rows]
        if store.pg:  # PostgreSQL's typed columns (materialize does this with COPY)
            from tools.ingest.pg.materialize import insert_typed

            insert_typed(cur, rows)
        else:
            cur.executemany(
                "INSERT INTO readings (cabinet, seq, point, t, kind, num, text, quality, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        for name, n in {"readings": len(rows), "rejected.bad_body": bad}.items():
            if n:
                cur.execute(store.sql(store.upsert_add("counters", "name", "value")), (name, n))
        store.conn.commit()
    except BaseException:
        store.conn.rollback()
        raise
    return batches, len(rows)
