"""`cabinet ingest stats`: what an ingest database holds, per cabinet, for people (a table,
local times) or machines (--json), and waiting until enough readings have arrived
(`--wait-rows N --timeout S`, what a script or a journey waits on).

The JSON document: the totals of `Store.stats()` (batches_ok, readings, duplicates,
rejected by reason, rejected_total, acks_sent, cabinets, batches_to_materialize) and
"by_cabinet": one object per cabinet as `Store.cabinets()` returns it, with last_seen
(ISO 8601, UTC) beside last_seen_t.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any, TextIO


def local_time(t: float) -> str:
    """Unix seconds as this machine's local time, with its zone."""
    return dt.datetime.fromtimestamp(t, dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


def parse_when(text: str, option: str) -> float:
    """An ISO 8601 date or date and time (UTC unless it names an offset) as Unix seconds."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{option} {text}: give an ISO 8601 date or time, e.g. 2026-01-15 or 2026-01-15T18:00+01:00"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def report(
    store: Any, cabinet: str | None = None, since: float | None = None, until: float | None = None
) -> dict[str, Any]:
    """The totals and per-cabinet rows; with a window (since/until, Unix seconds, the batches the
    ingest stored then) the per-cabinet rows are the window's and "window" sums them up."""
    cabinets = store.cabinets(cabinet, since, until)
    for c in cabinets:
        c["last_seen"] = iso(c["last_seen_t"])
    doc = {**store.stats(), "by_cabinet": cabinets}
    if since is not None or until is not None:
        doc["window"] = {
            "since": None if since is None else iso(since),
            "until": None if until is None else iso(until),
            "cabinets": len(cabinets),
            "batches": sum(c["batches"] for c in cabinets),
            "readings": sum(c["rows"] for c in cabinets),
        }
    return doc


def rows_of(doc: dict[str, Any], cabinet: str | None) -> int:
    """The readings stored: of one cabinet, or of all."""
    if cabinet is None:
        return int(doc["readings"])
    return sum(c["rows"] for c in doc["by_cabinet"])


def wait_rows(
    read: Callable[[], dict[str, Any]], n: int, timeout_s: float, cabinet: str | None, poll_s: float = 0.25
) -> tuple[bool, dict[str, Any]]:
    """Read until at least `n` readings are stored (of `cabinet`, or of all), for at most
    `timeout_s` seconds: (reached, the last document)."""
    deadline = time.monotonic() + timeout_s
    while True:
        doc = read()
        if rows_of(doc, cabinet) >= n or time.monotonic() >= deadline:
            return rows_of(doc, cabinet) >= n, doc
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def print_report(doc: dict[str, Any], out: TextIO, as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2), file=out)
        return
    head = ("cabinet", "rows", "batches", "last seen", "last seq", "gaps")
    lines = [
        (
            c["cabinet"],
            str(c["rows"]),
            str(c["batches"]) + (f" ({c['pending']} to store)" if c["pending"] else ""),
            local_time(c["last_seen_t"]),
            str(c["last_seq"]),
            f"{c['gaps']} ({c['missing_seqs']} seqs)" if c["gaps"] else "0",
        )
        for c in doc["by_cabinet"]
    ]
    if lines:
        widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
        for r in [head, *lines]:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)
    else:
        print("no batches stored yet", file=out)
    if "window" in doc:
        w = doc["window"]
        print(
            f"stored from {w['since'] or 'the start'} until {w['until'] or 'now'}: {w['readings']} readings in "
            f"{w['batches']} batches from {w['cabinets']} cabinet(s)",
            file=out,
        )
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(doc["rejected"].items())) or "none"
    print(
        f"total: {doc['readings']} readings in {doc['batches_ok']} batches from {doc['cabinets']} cabinet(s); "
        f"duplicates {doc['duplicates']}; acks sent {doc['acks_sent']}; "
        f"to materialize {doc['batches_to_materialize']}; rejected {doc['rejected_total']} ({rejected})",
        file=out,
    )
