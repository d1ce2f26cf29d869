"""`python -m tools.chaos`: the soak and chaos suite (docs/reliability.md).

    python -m tools.chaos [--kills N] [--ingest-restarts N] [--broker-restarts N] [--outage S]
                          [--disk-fills N] [--full S] [--seconds S] [--drain-seconds S] [--seed N]
                          [--json] [--keep] [--dir D] [SCENARIO...]

SCENARIO: kill, ingest, broker, clock, disk (all by default; disk needs root to mount its
tmpfs, else it is skipped and says why). Prints the figures (faults injected, readings,
lost, duplicated, crashes, recovery seconds) and exits 1 if a durable reading was lost
(beyond what the outbox counted as evicted) or stored twice, a part crashed, or nothing
was exercised; 2 on bad arguments. The run's directory (logs, databases) is removed after a
clean run and kept, with its path printed, otherwise, with --keep or when given (--dir).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.chaos.scenarios import DEFAULT, SCENARIOS, Plan
from tools.chaos.suite import failed, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.chaos", description="soak and chaos suite: nothing lost, ever")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--kills", type=int, default=200, help="kill: SIGKILLs of the agent (default 200)")
    p.add_argument("--ingest-restarts", type=int, default=20, help="ingest: SIGKILLs of the ingest (default 20)")
    p.add_argument("--broker-restarts", type=int, default=3, help="broker: broker stops (default 3)")
    p.add_argument("--outage", type=float, default=5.0, help="broker: seconds the broker stays down (default 5)")
    p.add_argument("--disk-fills", type=int, default=3, help="disk: times the disk is filled (default 3)")
    p.add_argument("--full", type=float, default=5.0, help="disk: seconds it stays full (default 5)")
    p.add_argument("--seconds", type=float, default=3600.0, help="time budget for injecting faults (default 3600)")
    p.add_argument("--drain-seconds", type=float, default=90.0, help="then at most this for the drain (default 90)")
    p.add_argument("--seed", type=int, default=13, help="seed of the random moments (default 13)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--keep", action="store_true", help="keep the run's directory (logs, databases)")
    p.add_argument("--dir", help="run in this directory, kept afterwards (default: a new temp dir, removed if clean)")
    return p


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    for name in ("kills", "ingest_restarts", "broker_restarts", "disk_fills"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give 0 or more")
    for name in ("outage", "full", "seconds", "drain_seconds"):
        if not 0 < getattr(args, name) < 1e6:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give a number of seconds above 0")
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    return list(dict.fromkeys(args.scenarios)) or list(DEFAULT)


def show(figures: dict[str, Any]) -> str:
    rec = figures["recovery_s"]
    lines = [
        f"scenarios: {' '.join(figures['scenarios']) or 'none (a baseline)'} (seed {figures['seed']})",
        "kills: " + (", ".join(f"{k} {v}" for k, v in figures["kills"].items()) or "-"),
        f"readings: {figures['readings']} durable (seen in the outbox); stored at the ingest: {figures['stored']}",
        f"lost: {figures['lost']}"
        + (f" (evicted by the outbox, counted: {figures['evicted']})" if figures["evicted"] else ""),
        f"duplicated: {figures['duplicated']}",
        f"crashes: {figures['crashes']}",
        (
            f"recovery_s: p50 {rec['p50']}, max {rec['max']} (n={rec['n']}, "
            f"{rec['none_before_next_fault']} with no batch before the next fault)"
        ),
        f"wall_s: {figures['wall_s']}",
    ]
    for kind, r in figures["recovery_by_fault"].items():
        lines.append(f"  recovery after {kind}: p50 {r['p50']}, max {r['max']} (n={r['n']})")
    for c in figures["crash_list"]:
        lines.append(f"  crash: {c['part']}: {c['what']} ({c['log']})")
    for k in figures["lost_examples"]:
        lines.append(f"  lost e.g.: {k}")
    for k in figures["duplicated_examples"]:
        lines.append(f"  duplicated e.g.: {k}")
    for name, why in figures["skipped"].items():
        lines.append(f"  skipped {name}: {why}")
    if not figures["drained"]:
        lines.append("  the drain did not finish: rows seen in the outbox never reached the ingest")
    if figures["budget_spent"]:
        lines.append("  the time budget (--seconds) ran out before every fault was injected")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    scenarios = check(p, args)
    plan = Plan(
        kills=args.kills,
        ingest_restarts=args.ingest_restarts,
        broker_restarts=args.broker_restarts,
        outage_s=args.outage,
        disk_fills=args.disk_fills,
        full_s=args.full,
        seconds=args.seconds,
        seed=args.seed,
    )
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        figures = run(root, scenarios, plan, drain_s=args.drain_seconds)
    except KeyboardInterrupt:  # every part has been stopped on the way out
        print(f"interrupted; logs and databases kept in {root}", file=sys.stderr)
        return 130
    bad = failed(figures)
    if bad or args.keep or args.dir:
        figures["dir"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, indent=2) if args.json else show(figures))
    if bad:
        print(f"FAILED: {bad}; logs and databases kept in {root}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
