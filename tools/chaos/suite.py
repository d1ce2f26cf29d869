"""One run of the suite: start the parts, check the pipeline works, inject the chosen
scenarios' faults, drain with everything up, stop every part gracefully, and count.

The figures (a dict, printed by `python -m tools.chaos`): faults injected per scenario,
readings (durable rows seen in the outbox), stored, lost, evicted (rows the outbox
dropped by its byte cap, and counted), duplicated, crashes (with the log of each),
scenarios skipped and why, recovery seconds (p50, max, overall and per fault kind), the ingest's
own counters, wall seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tools.chaos.ledger import recoveries, summary
from tools.chaos.rig import Rig
from tools.chaos.scenarios import DISK_MB, Plan, Runner

FIRST_BATCH_S = 60.0  # the pipeline must work before any fault


def run(root: Path, scenarios: Sequence[str], plan: Plan, *, drain_s: float) -> dict[str, Any]:
    began = time.monotonic()
    rig = Rig(root, disk_mb=DISK_MB if "disk" in scenarios else 0)
    runner = Runner(rig, plan)
    drained = False
    error = None
    try:
        rig.start()
        if not rig.wait_batch_after(0.0, FIRST_BATCH_S):
            raise RuntimeError(f"no batch reached the ingest within {FIRST_BATCH_S:.0f} s of the start")
        for name in scenarios:
            runner.run(name)
        drained = rig.drain(drain_s)
        end_t = time.time()
        ingest_stats = rig.store.stats() if rig.store else {}
    except RuntimeError as e:
        error = str(e)
        end_t, ingest_stats = time.time(), {}
    finally:
        tally = rig.close()
    rec = recoveries(rig.faults, rig.batch_times() if rig.db.exists() else [], end_t)
    by_kind: dict[str, list[float | None]] = {}
    for r, f in zip(rec, rig.faults, strict=True):
        by_kind.setdefault(f.kind, []).append(r)
    return {
        "scenarios": list(scenarios),
        "seed": plan.seed,
        "kills": {name: runner.done[name] for name in scenarios},
        "readings": tally.readings,
        "stored": tally.stored,
        "unseen": tally.unseen,
        "lost": tally.lost,
        "evicted": rig.evicted,
        "duplicated": tally.duplicated,
        "crashes": len(rig.crashes),
        "recovery_s": summary(rec),
        "recovery_by_fault": {k: summary(v) for k, v in by_kind.items()},
        "drained": drained,
        "budget_spent": runner.budget_spent,
        "wall_s": round(time.monotonic() - began, 1),
        "ingest": ingest_stats,
        "outbox_look_errors": rig.look_errors,
        "plan": asdict(plan),
        "error": error,
        "crash_list": [asdict(c) for c in rig.crashes],
        "skipped": runner.skipped,
        "lost_examples": [list(k) for k in tally.lost_examples],
        "duplicated_examples": [list(k) for k in tally.duplicated_examples],
    }


def failed(figures: dict[str, Any]) -> str:
    """Why the run failed ("" when it did not): loss (beyond what the outbox counted as evicted),
    duplicates, crashes, an error, or no readings."""
    why = [f"{figures[k]} {k}" for k in ("duplicated", "crashes") if figures[k]]
    if figures["lost"] > figures["evicted"]:
        evicted = f" ({figures['evicted']} evicted by the outbox's cap, counted)" if figures["evicted"] else ""
        why.insert(0, f"{figures['lost']} lost{evicted}")
    if figures["error"]:
        why.append(figures["error"])
    if not figures["readings"]:
        why.append("no reading was seen in the outbox: nothing was exercised")
    if not figures["drained"] and not figures["error"]:
        why.append("the drain did not finish")
    return "; ".join(why)
