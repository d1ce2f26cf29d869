"""`cabinet ingest`: run the ingest, print its counters, manage its keys.

    cabinet ingest [run] --db DSN --broker HOST[:PORT] [--tls --ca --cert --key] [--group G] [--key FILE]
                         [--keepalive S]           SIGTERM/SIGINT: leave the group, drain, exit; twice: exit now
    cabinet ingest stats --db DSN [--json]
    cabinet ingest init --key FILE                      the ingest's signing key; prints its public key (hex)
    cabinet ingest register --db DSN --cabinet ID --public-key HEX
DSN: a SQLite file path, or postgresql://user@host/db.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import logs
from agent.clock import WallClock

log = logging.getLogger("tools.ingest")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ingest", help="the cloud ingest: verify, dedupe, store and acknowledge batches")
    p.add_argument("action", nargs="?", default="run", choices=("run", "stats", "init", "register"))
    p.add_argument("--db", help="SQLite file or postgresql:// DSN")
    p.add_argument("--broker", default="127.0.0.1:1883", help="HOST[:PORT] of the MQTT broker")
    p.add_argument("--tls", action="store_true", help="connect with TLS (needs --ca, --cert, --key)")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--tls-key")
    p.add_argument("--key", help="the ingest's Ed25519 signing key (PEM) for acknowledgements")
    p.add_argument("--group", default="ingest", help="shared-subscription group of the workers")
    p.add_argument("--prefix", default="city/v1")
    p.add_argument("--parent-pid", type=int, help="stop when this process is gone (cabinet run --with-ingest)")
    p.add_argument(
        "--keepalive",
        type=int,
        default=10,
        help="MQTT keepalive (s); a worker gone without closing its connection leaves the group after 1.5 × this",
    )
    p.add_argument("--cabinet")
    p.add_argument("--public-key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def _broker(text: str, tls: bool) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return (host or text), int(port) if port else (8883 if tls else 1883)


def main(args: argparse.Namespace) -> int:
    # deferred: heavy (cryptography, the wire formats)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.wire import cose
    from tools.ingest.store import Store
    from tools.provision import pki

    if args.action == "init":
        if not args.key:
            print("cabinet ingest init: give --key FILE", file=sys.stderr)
            return 2
        pub = pki.new_signing_key(Path(args.key))
        print(pub.hex())
        return 0
    if not args.db:
        print(f"cabinet ingest {args.action}: give --db (a SQLite file or a postgresql:// DSN)", file=sys.stderr)
        return 2
    store = Store(args.db)
    try:
        if args.action == "stats":
            st = store.stats()
            print(json.dumps(st, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in st.items()))
            return 0
        if args.action == "register":
            raw = bytes.fromhex(args.public_key or "")
            kid = cose.key_id(Ed25519PublicKey.from_public_bytes(raw))
            store.add_key(args.cabinet, kid, raw, time.time())
            print(f"registered {args.cabinet} key {kid.hex()}")
            return 0
        return run(args, store)
    finally:
        store.close()


async def _watch_parent(pid: int, stop: Callable[[], None]) -> None:
    """A worker started by `cabinet run --with-ingest` ends with the agent, however it dies."""
    while os.getppid() == pid:
        await asyncio.sleep(0.5)
    log.warning("parent %d is gone; stopping", pid)
    stop()


def run(args: argparse.Namespace, store: Any) -> int:
    # deferred: heavy (aiomqtt, cryptography)
    from tools.ingest.service import IngestService
    from tools.provision import pki

    logs.setup("info")
    if not args.key:
        print("cabinet ingest: give --key FILE (create it with `cabinet ingest init --key FILE`)", file=sys.stderr)
        return 2
    if not 1 <= args.keepalive <= 65535:
        print(f"cabinet ingest: --keepalive {args.keepalive}: give 1..65535 seconds", file=sys.stderr)
        return 2
    host, port = _broker(args.broker, args.tls)
    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
        tls.load_cert_chain(args.cert, args.tls_key)
    service = IngestService(
        store,
        broker=host,
        port=port,
        ack_key=pki.load_signing_key(Path(args.key)),
        clock=WallClock(),
        tls=tls,
        prefix=args.prefix,
        group=args.group,
        keepalive_s=args.keepalive,
    )

    async def serve() -> None:
        signals = 0
        task = asyncio.create_task(service.run())

        def on_signal() -> None:  # the first: leave the group and drain; another: stop at once
            nonlocal signals
            signals += 1
            if signals == 1:
                service.stop()
            else:
                task.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        watch = asyncio.create_task(_watch_parent(args.parent_pid, on_signal)) if args.parent_pid else None
        await asyncio.gather(task, return_exceptions=True)
        if watch is not None:
            watch.cancel()

    asyncio.run(serve())
    return 0
