"""Outbox benchmark: durable appends, seals and acknowledged deletes per second.

`run(readings, batch)` works on a fresh SQLite file in a temp dir (WAL,
synchronous=FULL, the agent's defaults otherwise) with a realistic mix of points
and values. Figures:

* outbox_append_per_s: readings put in slices of `batch` and then flushed, i.e.
  committed and fsynced, per wall second (the writer groups commits by commit_rows).
* outbox_append_flush_each_per_s: the same with a flush() after every slice.
* seal_per_s / seal_readings_per_s: seal() of `batch` readings each (encode is a
  cheap stand-in: the codec and signature are measured elsewhere).
* ack_delete_per_s: readings deleted per second by ack() of one batch at a time.
* outbox_append_full_per_s: durable appends into a store held at its byte cap (a
  quarter of the readings), where every commit also evicts the oldest telemetry.
* db_bytes_per_reading: file size (db + WAL) per stored reading, and
  accounted_bytes_per_reading: the outbox's own estimate (its byte cap counts this).

Target: outbox_append_per_s >= 50,000 on the 2-core test VM.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.clock import WallClock
from agent.model import Quality, Reading
from agent.outbox.writer import ROW_BASE, Outbox

TARGET_APPEND_PER_S = 50_000


def _readings(n: int, t0: float) -> list[Reading]:
    out = []
    for i in range(n):
        k = i % 50
        if k < 40:
            value: Any = round(230.0 + (i % 97) * 0.01, 2)
        elif k < 45:
            value = i
        elif k < 48:
            value = bool(i & 1)
        else:
            value = "auto"
        out.append(Reading(f"dev{k // 15}.p{k}", t0 + i * 0.02, value, Quality.GOOD))
    return out


def _encode(readings: list[Reading], seq: int) -> bytes:
    return seq.to_bytes(8, "big") + len(readings).to_bytes(4, "big") + repr(readings[-1]).encode()


async def _run(readings: int, batch: int, tmp: Path) -> dict[str, Any]:
    data = _readings(readings, 1_700_000_000.0)
    slices = [data[i : i + batch] for i in range(0, readings, batch)]
    path = tmp / "outbox.db"
    ob = Outbox(path, clock=WallClock())
    await ob.start()
    try:
        t0 = time.perf_counter()
        for s in slices:
            await ob.put(s)
        await ob.flush()
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in slices:
            await ob.put(s)
            await ob.flush()
        each_s = time.perf_counter() - t0
        stats = ob.stats()
        size = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())
        stored = stats["rows_pending"]
        t0 = time.perf_counter()
        sealed = 0
        while await ob.seal(_encode, max_readings=batch) is not None:
            sealed += 1
        seal_s = time.perf_counter() - t0
        seqs = [b.seq for b in ob.unacked()]
        t0 = time.perf_counter()
        deleted = 0
        for seq in seqs:
            deleted += await ob.ack([seq])
        ack_s = time.perf_counter() - t0
        commits = ob.stats()["commits"]
    finally:
        await ob.close()
    # a full store (a long outage): every commit evicts as much old telemetry as it adds
    full = Outbox(tmp / "full.db", clock=WallClock(), max_bytes=max(1, readings // 4) * ROW_BASE)
    await full.start()
    try:
        t0 = time.perf_counter()
        for s in slices:
            await full.put(s)
        await full.flush()
        full_s = time.perf_counter() - t0
        evicted = full.stats()["evicted_rows"]["telemetry"]
    finally:
        await full.close()
    return {
        "workload": f"{readings} readings in slices of {batch}, WAL + synchronous=FULL",
        "outbox_append_per_s": round(readings / append_s),
        "outbox_append_flush_each_per_s": round(readings / each_s),
        "seal_per_s": round(sealed / seal_s, 1) if seal_s else None,
        "seal_readings_per_s": round(stored / seal_s) if seal_s else None,
        "ack_delete_per_s": round(deleted / ack_s) if ack_s else None,
        "outbox_append_full_per_s": round(readings / full_s),
        "evicted_when_full": evicted,
        "db_bytes_per_reading": round(size / stored, 1) if stored else None,
        "accounted_bytes_per_reading": round(stats["bytes"] / stored, 1) if stored else None,
        "commits": commits,
        "met": {"outbox_append_per_s": readings / append_s >= TARGET_APPEND_PER_S},
    }


def run(readings: int = 200_000, batch: int = 2000) -> dict[str, Any]:
    """Run the benchmark in its own event loop (call it from synchronous code)."""
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        return asyncio.run(_run(readings, batch, Path(tmp)))


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
