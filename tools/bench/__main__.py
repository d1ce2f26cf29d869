"""Run one benchmark and print its figures:

    python -m tools.bench w1|rtu|uplink|outbox|climate|lighting|ota|rig|fleet|console [--json] [--seconds N]
                          [--uplink] [--cabinets N]

Each benchmark module is imported only when it runs: each loads its own stack (pymodbus,
tuf, the MQTT client ...), and w1 measures the RSS of this very process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench")
    ap.add_argument(
        "workload",
        choices=("w1", "rtu", "uplink", "outbox", "climate", "lighting", "ota", "rig", "fleet", "console"),
    )
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument(
        "--seconds",
        type=float,
        help="measurement time (w1: 60, rtu: 30 per phase; climate: simulated seconds, default a week; "
        "rig: simulated seconds of the day run, default 86400; console: per phase, default 60)",
    )
    ap.add_argument("--cabinets", type=int, default=10_000, help="fleet: simulated cabinets (default 10000)")
    ap.add_argument("--uplink", action="store_true", help="w1: with the uplink sealing, signing and publishing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    # deferred: heavy (each workload's own stack; w1 measures this process's RSS)
    if args.workload == "w1":
        from tools.bench import w1

        result = asyncio.run(w1.run(seconds=args.seconds or 60.0, uplink=args.uplink))
    elif args.workload == "rtu":
        from tools.bench import rtu

        result = asyncio.run(rtu.run(seconds=args.seconds or 30.0))
    elif args.workload == "climate":
        from tools.bench import climate

        result = climate.run(days=args.seconds / 86_400.0 if args.seconds else 7.0)
    elif args.workload == "rig":
        from tools.bench import rig

        result = rig.run(seconds=args.seconds)
    elif args.workload == "fleet":
        from tools.bench import fleet

        result = fleet.run(cabinets=args.cabinets, seconds=args.seconds or 600.0)
    elif args.workload == "console":
        from tools.bench import console

        result = console.run(seconds=args.seconds)
    elif args.workload == "ota":
        from tools.bench import ota

        result = ota.run()
    elif args.workload == "lighting":
        from tools.bench import lighting

        result = lighting.run()
    elif args.workload == "outbox":
        from tools.bench import outbox

        result = outbox.run()
    else:
        from tools.bench import uplink

        result = asyncio.run(uplink.run())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return 0 if all(result.get("met", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
