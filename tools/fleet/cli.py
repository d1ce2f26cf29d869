"""`cabinet fleet sim`: simulated cabinets against a real broker and ingest (docs/scale.md).

    cabinet fleet sim --cabinets N --broker ADDRESS --db DSN --ingest-key HEX
                      [--processes P] [--seconds S] [--batch-s B] [--profile example|w1]
                      [--reboots P] [--duplicates P] [--disconnects P] [--json]

Exit 0 when every reading made is stored exactly once (lost 0, duplicated 0), 1 when not,
2 for wrong arguments or an unreachable database.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.uplink.address import parse_broker


def add_parsers(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="a simulated fleet against the city cloud (load and exactly-once)")
    fsub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="SUBCOMMAND")
    s = fsub.add_parser(
        "sim",
        help="N simulated cabinets publish signed batches; verify every reading is stored exactly once",
        epilog="exit codes: 0 lost 0 and duplicated 0, 1 otherwise, 2 wrong arguments or database",
    )
    s.add_argument("--cabinets", type=int, required=True, help="how many cabinets")
    s.add_argument("--broker", required=True, help="the MQTT broker: mqtt://HOST[:PORT] or HOST[:PORT]")
    s.add_argument("--db", required=True, help="the ingest's database (registers the keys, verifies the rows)")
    s.add_argument("--ingest-key", required=True, metavar="HEX", help="the ingest's public key (cabinet ingest init)")
    s.add_argument("--processes", type=int, default=2, help="processes the cabinets are split over (default 2)")
    s.add_argument("--seconds", type=float, default=60.0, help="how long the cabinets make batches (default 60)")
    s.add_argument("--batch-s", type=float, default=300.0, help="seconds between a cabinet's batches (default 300)")
    s.add_argument("--ack-timeout-s", type=float, default=30.0, help="re-send after this long without ack")
    s.add_argument("--drain-s", type=float, default=60.0, help="after the end, wait this long for acks")
    s.add_argument("--profile", default="example", choices=("example", "w1"), help="points and rates (default example)")
    s.add_argument("--prefix", default="FLEET", help="cabinet ids are PREFIX-00001 ... (default FLEET)")
    s.add_argument("--reboots", type=float, default=0.0, metavar="P", help="chance per batch of a reboot after it")
    s.add_argument(
        "--duplicates", type=float, default=0.0, metavar="P", help="chance per batch of an injected duplicate"
    )
    s.add_argument("--disconnects", type=float, default=0.0, metavar="P", help="chance per batch of a dropped link")
    s.add_argument("--seed", type=int, default=0, help="random seed (phases, faults)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=sim_main)


def _probability(v: float, name: str) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"--{name} must be a probability 0..1, got {v}")
    return v


def sim_main(args: argparse.Namespace) -> int:
    from tools.fleet import node, sim  # deferred: heavy (cryptography, aiomqtt, the profiles)
    from tools.ingest.store import StoreError

    try:
        address = parse_broker(args.broker)
        if address.tls:
            raise ValueError("--broker: the fleet simulator speaks plain MQTT (mqtt://HOST[:PORT])")
        host, port = address.host, address.port_or_default(False)
        try:
            key = bytes.fromhex(args.ingest_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError("--ingest-key must be 64 hex digits (an Ed25519 public key: cabinet ingest init)")
        if args.cabinets < 1 or args.processes < 1:
            raise ValueError("--cabinets and --processes must be at least 1")
        if args.seconds <= 0 or args.batch_s <= 0:
            raise ValueError("--seconds and --batch-s must be positive")
        faults = node.Faults(
            _probability(args.reboots, "reboots"),
            _probability(args.duplicates, "duplicates"),
            _probability(args.disconnects, "disconnects"),
        )
    except ValueError as e:
        print(f"cabinet fleet sim: {e}", file=sys.stderr)
        return 2
    spec = node.Spec(
        cabinets=[],
        profile=args.profile,
        broker=host,
        port=port,
        ingest_key=key,
        seconds=args.seconds,
        batch_s=args.batch_s,
        ack_timeout_s=args.ack_timeout_s,
        drain_s=args.drain_s,
        faults=faults,
        seed=args.seed,
    )
    try:
        out = sim.run(spec, args.cabinets, args.processes, args.db, args.prefix)
    except StoreError as e:
        print(f"cabinet fleet sim: {e}", file=sys.stderr)
        return e.code
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{out['cabinets']} cabinets, {out['seconds']:g} s: {out['batches_made']} batches, "
            f"{out['readings_made']} readings made, {out['readings_stored']} stored; "
            f"lost {out['lost']}, duplicated {out['duplicated']}; ack p50 {out['ack_p50_ms']} ms, "
            f"p99 {out['ack_p99_ms']} ms"
        )
    return 0 if out["lost"] == 0 and out["duplicated"] == 0 and out["materialized"] else 1
