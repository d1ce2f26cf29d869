"""`cabinet ca init` and `cabinet provision`: the technician's identity tools.

    cabinet ca init --dir PKI [--algorithm ed25519|p256]
    cabinet provision --id CAB-0042 --out DIR --ca-dir PKI --broker HOST [--port 8883]
                      [--ingest-db DSN] [--ingest-key HEX] [--template FILE] [--force]

`provision` writes the cabinet's signing key, TLS key and certificate (CN = id), the
CA certificate and a config with its [uplink], and registers the signing key in the
ingest's registry when --ingest-db is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tools.ingest.store import Store


def add_parsers(sub: Any) -> None:
    ca = sub.add_parser("ca", help="the development device CA")
    ca.add_argument("action", choices=("init",))
    ca.add_argument("--dir", required=True, help="directory for ca.key and ca.crt")
    ca.add_argument("--algorithm", choices=("ed25519", "p256"), default="ed25519")
    ca.add_argument("--force", action="store_true")
    ca.set_defaults(func=ca_main)

    p = sub.add_parser("provision", help="create a cabinet's keys, certificate and config")
    p.add_argument("--id", required=True, dest="cabinet_id")
    p.add_argument("--out", required=True)
    p.add_argument("--ca-dir", required=True)
    p.add_argument("--broker", required=True)
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--topic-prefix", default="city/v1")
    p.add_argument("--ingest-db", help="register the signing key in this ingest registry (SQLite file or DSN)")
    p.add_argument("--ingest-key", help="the ingest's public key (64 hex digits) for the cabinet to trust")
    p.add_argument("--template", help="config to start from (default: the example cabinet)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=provision_main)


def ca_main(args: argparse.Namespace) -> int:
    from tools.provision import pki  # deferred: heavy (cryptography)

    try:
        ca = pki.init_ca(Path(args.dir), algorithm=args.algorithm, force=args.force)
    except FileExistsError as e:
        print(f"cabinet ca init: {e}", file=sys.stderr)
        return 1
    info = pki.cert_info(ca.cert_pem)
    print(
        f"device CA in {args.dir}: {info['subject']}, valid until {info['not_after']:%Y-%m-%d}, "
        f"sha256 {info['fingerprint']}"
    )
    return 0


def provision_main(args: argparse.Namespace) -> int:
    from tools.provision.identity import provision  # deferred: heavy (cryptography)

    registry = None
    if args.ingest_db:

        def registry(cabinet: str, kid: bytes, raw: bytes) -> None:
            store = Store(args.ingest_db)
            try:
                store.add_key(cabinet, kid, raw, time.time())
            finally:
                store.close()

    try:
        info = provision(
            args.cabinet_id,
            Path(args.out),
            ca_dir=Path(args.ca_dir),
            broker_host=args.broker,
            broker_port=args.port,
            topic_prefix=args.topic_prefix,
            registry=registry,
            force=args.force,
            template=args.template,
            ingest_key=args.ingest_key,
        )
    except (ValueError, FileExistsError, OSError) as e:
        print(f"cabinet provision: {e}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2, default=str))
    return 0
