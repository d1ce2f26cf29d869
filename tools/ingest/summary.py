"""What an ingest database holds, in numbers: the totals and the per-cabinet summary that
`cabinet ingest stats` prints (both engines; `read` runs one query and returns its rows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Read = Callable[..., list[tuple]]  # (sql, args=()) -> rows


def totals(read: Read) -> dict[str, Any]:
    """The totals of an ingest database: counters, cabinets, batches still to materialize."""
    counters = {n: int(v) for n, v in read("SELECT name, value FROM counters")}
    cabinets = int(read("SELECT COUNT(DISTINCT cabinet) FROM batches")[0][0])
    pending = int(read("SELECT COUNT(*) FROM batches WHERE state = 'new'")[0][0])
    rejected = {k[len("rejected.") :]: v for k, v in counters.items() if k.startswith("rejected.")}
    return {
        "batches_ok": counters.get("batches_ok", 0),
        "readings": counters.get("readings", 0),
        "duplicates": counters.get("duplicates", 0),
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "acks_sent": counters.get("acks_sent", 0),
        "cabinets": cabinets,
        "batches_to_materialize": pending,
        "catalogues": counters.get("catalogues", 0),
        "catalogue_missing": counters.get("catalogue_missing", 0),
    }


def per_cabinet(
    read: Read, cabinet: str | None = None, since: float | None = None, until: float | None = None
) -> list[dict[str, Any]]:
    """Per cabinet, from the batches table: rows (readings materialized), batches, pending
    (stored, not yet materialized), bad, first_seq, last_seq, last_seen_t (when the ingest
    stored its newest batch, Unix seconds), gaps (holes in the stored seqs) and missing_seqs
    (the seqs in those holes). Gaps are normal: a cabinet skips the unused rest of a
    reserved block of 64 seqs at every restart (docs/cloud.md). Only `cabinet`, and only the
    batches the ingest stored in [since, until) (Unix seconds), when given."""
    where, args = window(cabinet, since, until)
    rows = read(
        "SELECT cabinet, COUNT(*), SUM(CASE WHEN state = 'done' THEN readings ELSE 0 END), "
        "SUM(CASE WHEN state = 'new' THEN 1 ELSE 0 END), SUM(CASE WHEN state = 'bad' THEN 1 ELSE 0 END), "
        f"MIN(seq), MAX(seq), MAX(received_t) FROM batches {where} GROUP BY cabinet ORDER BY cabinet",
        args,
    )
    holes = {
        c: (int(n), int(m))
        for c, n, m in read(
            "SELECT cabinet, COUNT(*), SUM(d - 1) FROM (SELECT cabinet, seq - LAG(seq) OVER "
            f"(PARTITION BY cabinet ORDER BY seq) AS d FROM batches {where}) AS g WHERE d > 1 GROUP BY cabinet",
            args,
        )
    }
    return [
        {
            "cabinet": c,
            "rows": int(done or 0),
            "batches": int(n),
            "pending": int(new or 0),
            "bad": int(bad or 0),
            "first_seq": int(lo),
            "last_seq": int(hi),
            "last_seen_t": float(seen),
            "gaps": holes.get(c, (0, 0))[0],
            "missing_seqs": holes.get(c, (0, 0))[1],
        }
        for c, n, done, new, bad, lo, hi, seen in rows
    ]


def window(cabinet: str | None, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    """The WHERE clause (with ? marks) and its arguments for a cabinet and a time window."""
    terms, args = [], []
    for sql, value in (("cabinet = ?", cabinet), ("received_t >= ?", since), ("received_t < ?", until)):
        if value is not None:
            terms.append(sql)
            args.append(value)
    return ("WHERE " + " AND ".join(terms) if terms else ""), args
