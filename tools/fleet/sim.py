"""`cabinet fleet sim`: N simulated cabinets in a few processes against a real broker and
ingest, and the proof at the end that every reading they made is stored exactly once.

1. Identities: each cabinet gets an Ed25519 key, registered in the ingest's database
   (what `cabinet provision` does for a real one), ids `<prefix>-00001` ...
2. The cabinets are split over `processes` processes (tools/fleet/node.py), each its own
   asyncio loop and one MQTT connection per cabinet.
3. Verification (`verify`): from the ledger (every batch made: cabinet, seq, readings) and
   the ingest's rows, counted per (cabinet, seq) once the ingest has materialized everything:
   `lost` = readings made and not stored, `duplicated` = readings stored more than once or
   never made.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.wire import cose
from tools.fleet import node
from tools.ingest.store import Store


def identities(n: int, prefix: str, seed: int = 0) -> list[tuple[str, bytes]]:
    """(cabinet id, raw private key) for n cabinets."""
    from cryptography.hazmat.primitives import serialization as s

    out = []
    for i in range(1, n + 1):
        raw = Ed25519PrivateKey.generate().private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
        out.append((f"{prefix}-{i:05d}", raw))
    return out


def register(dsn: str, cabinets: Iterable[tuple[str, bytes]], now: float) -> int:
    """Register every cabinet's public key at the ingest (idempotent)."""
    store = Store(dsn)
    n = 0
    try:
        for cid, raw in cabinets:
            pub = Ed25519PrivateKey.from_private_bytes(raw).public_key()
            store.add_key(cid, cose.key_id(pub), cose.raw_public(pub), now)
            n += 1
    finally:
        store.close()
    return n


def stored(dsn: str, cabinets: set[str]) -> Counter[tuple[str, int]]:
    """Readings rows per (cabinet, seq) at the ingest, for `cabinets`."""
    store = Store(dsn)
    try:
        cur = store.conn.cursor()
        cur.execute("SELECT cabinet, seq, COUNT(*) FROM readings GROUP BY cabinet, seq")
        rows = cur.fetchall()
        store.conn.rollback()
    finally:
        store.close()
    return Counter({(c, int(s)): int(n) for c, s, n in rows if c in cabinets})


def settled(dsn: str, timeout_s: float) -> bool:
    """Wait until the ingest has materialized every stored batch (False: not within timeout)."""
    end = time.monotonic() + timeout_s
    while True:
        store = Store(dsn)
        try:
            left = store.stats()["batches_to_materialize"]
        finally:
            store.close()
        if left == 0:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.5)


def verify(made: Iterable[tuple[str, int, int]], rows: Counter[tuple[str, int]]) -> dict[str, int]:
    """lost / duplicated readings and batches: the ledger against the ingest's rows."""
    expected = {(c, s): n for c, s, n in made}
    lost = sum(max(0, n - rows.get(k, 0)) for k, n in expected.items())
    dup = sum(max(0, rows.get(k, 0) - n) for k, n in expected.items())
    dup += sum(n for k, n in rows.items() if k not in expected)
    return {
        "readings_made": sum(expected.values()),
        "readings_stored": sum(rows.values()),
        "batches_made": len(expected),
        "batches_missing": sum(1 for k in expected if k not in rows),
        "lost": lost,
        "duplicated": dup,
    }


def run(spec: node.Spec, n: int, processes: int, dsn: str, prefix: str = "FLEET") -> dict[str, Any]:
    """The whole run (module doc): register, run the processes, verify."""
    cabinets = identities(n, prefix, spec.seed)
    register(dsn, cabinets, time.time())
    shares = [cabinets[i::processes] for i in range(processes)]
    specs = [replace(spec, cabinets=share, seed=spec.seed * 1000 + i) for i, share in enumerate(shares) if share]
    t0 = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(len(specs)) as pool:
        results = pool.map(node.run, specs)
    wall = time.monotonic() - t0
    made = [m for r in results for m in r["made"]]
    done = settled(dsn, 60.0)
    check = verify(made, stored(dsn, {c for c, _ in cabinets}))
    counters: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in results:
        counters.update(r["counters"])
        errors.update(r["loop_errors"])
    lat = sorted(x for r in results for x in r["latency_s"])
    return {
        "cabinets": n,
        "processes": len(specs),
        "profile": spec.profile,
        "seconds": spec.seconds,
        "wall_s": round(wall, 1),
        "materialized": done,
        **check,
        "pending_at_end": sum(r["pending"] for r in results),
        "counters": dict(counters),
        "loop_errors": dict(errors),
        "ack_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "ack_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1) if lat else None,
    }
