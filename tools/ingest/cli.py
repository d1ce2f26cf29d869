"""`cabinet ingest run|stats|init|register`: the cloud ingest (docs/cloud.md).

    cabinet ingest init --key FILE [--force]             the ingest's signing key; prints its public key (hex)
    cabinet ingest register --db DSN --cabinet ID --public-key HEX
    cabinet ingest run --db DSN --key FILE [--broker ADDRESS] [--ca --cert --tls-key] [--group G]
                       [--keepalive S]           SIGTERM/SIGINT: leave the group, drain, exit; twice: exit now
    cabinet ingest stats --db DSN [--cabinet ID] [--since WHEN] [--until WHEN] [--wait-rows N [--timeout S]] [--json]
    cabinet ingest migrate --db DSN                      apply the schema migrations (PostgreSQL)
    cabinet ingest partitions --db DSN [--ahead N] [--drop-before DATE]   daily partitions, retention

DSN: a SQLite file path, or postgresql://[user@]host[:port]/database (needs the [ingest]
extra: pip install -e '.[ingest]'). ADDRESS: mqtts://HOST[:PORT], mqtt://HOST[:PORT] or
HOST[:PORT] (agent/uplink/address.py). Exit codes: 0 ok, 1 runtime failure (database
unreachable, --wait-rows not reached), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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
from agent.uplink.address import parse_broker

log = logging.getLogger("tools.ingest")
DSN_HELP = "the ingest database: a SQLite file, or postgresql://[USER@]HOST[:PORT]/DATABASE"


class Refused(Exception):
    """An expected user error: printed as `cabinet ingest <command>: <message>`, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ingest", help="the cloud ingest: verify, dedupe, store and acknowledge batches")
    isub = p.add_subparsers(dest="ingest_command", required=True, metavar="SUBCOMMAND")

    r = isub.add_parser("run", help="receive, verify, store and acknowledge batches until SIGTERM/SIGINT")
    r.add_argument("--db", required=True, help=DSN_HELP)
    r.add_argument("--key", help="the ingest's Ed25519 signing key (PEM) for acknowledgements (`ingest init`)")
    r.add_argument(
        "--broker",
        metavar="ADDRESS",
        help="the MQTT broker: mqtts://HOST[:PORT] (TLS, 8883), mqtt://HOST[:PORT] (plain, 1883) or HOST[:PORT] "
        "(TLS with --tls); default 127.0.0.1",
    )
    r.add_argument("--tls", action="store_true", help="TLS for a HOST[:PORT] address (mqtts:// implies it)")
    r.add_argument("--ca", help="TLS: the CA certificate (PEM) that issued the broker's certificate")
    r.add_argument("--cert", help="TLS: the ingest's client certificate (PEM; CN ingest: `cabinet ca issue-client`)")
    r.add_argument("--tls-key", help="TLS: the key of --cert (PEM)")
    r.add_argument("--group", default="ingest", help="shared-subscription group of the workers (default ingest)")
    r.add_argument("--prefix", default="city/v1", help="the topic prefix of the fleet (default city/v1)")
    r.add_argument("--parent-pid", type=int, help="stop when this process is gone (cabinet run --with-ingest)")
    r.add_argument(
        "--keepalive",
        type=int,
        default=10,
        help="MQTT keepalive (s); a worker gone without closing its connection leaves the group after 1.5 × this",
    )
    r.set_defaults(func=main)

    s = isub.add_parser("stats", help="what the database holds: per cabinet and in total")
    s.add_argument("--db", required=True, help=DSN_HELP)
    s.add_argument("--cabinet", help="only this cabinet")
    s.add_argument(
        "--since",
        metavar="WHEN",
        help="only batches the ingest stored at or after WHEN (ISO 8601 date or time; UTC unless it has an offset)",
    )
    s.add_argument("--until", metavar="WHEN", help="only batches the ingest stored before WHEN (as --since)")
    s.add_argument("--json", action="store_true", help="print JSON (totals and by_cabinet) instead of a table")
    s.add_argument(
        "--wait-rows",
        type=int,
        metavar="N",
        help="first wait until at least N readings are stored (of --cabinet, or of all); exit 1 if not in time",
    )
    s.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds --wait-rows waits at most (default 60)"
    )
    s.set_defaults(func=main)

    m = isub.add_parser("migrate", help="bring a PostgreSQL ingest database to this program's schema")
    m.add_argument("--db", required=True, help=DSN_HELP)
    m.set_defaults(func=main)

    pt = isub.add_parser("partitions", help="PostgreSQL: create upcoming daily partitions, drop old ones")
    pt.add_argument("--db", required=True, help="the ingest database: postgresql://[USER@]HOST[:PORT]/DATABASE")
    pt.add_argument("--ahead", type=int, metavar="N", help="create the partitions of today and the next N days")
    pt.add_argument(
        "--drop-before",
        metavar="DATE",
        help="retention: drop every day's partition before DATE (YYYY-MM-DD, UTC days) with its readings",
    )
    pt.set_defaults(func=main)

    i = isub.add_parser("init", help="create the ingest's Ed25519 signing key; prints its public key (hex)")
    i.add_argument("--key", required=True, help="the key file to write (PKCS8 PEM, mode 0600)")
    i.add_argument("--force", action="store_true", help="replace an existing key (cabinets trusting it must be told)")
    i.set_defaults(func=main)

    g = isub.add_parser("register", help="register a cabinet's signing key (what `cabinet provision` does)")
    g.add_argument("--db", required=True, help=DSN_HELP)
    g.add_argument("--cabinet", required=True, help="the cabinet id")
    g.add_argument("--public-key", required=True, help="its raw Ed25519 public key, 64 hex digits")
    g.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tools.ingest.store import StoreError  # deferred: the store pulls in sqlite3 and the schema

    command = args.ingest_command
    try:
        handler = {
            "run": _run,
            "stats": _stats,
            "init": _init,
            "register": _register,
            "migrate": _migrate,
            "partitions": _partitions,
        }[command]
        return handler(args)
    except (Refused, StoreError) as e:
        print(f"cabinet ingest {command}: {e}", file=sys.stderr)
        return e.code


def _init(args: argparse.Namespace) -> int:
    from agent.uplink import keys  # deferred: heavy (cryptography)

    path = Path(args.key)
    if path.exists() and not args.force:
        try:
            pub = keys.public_key_raw(keys.load_signing_key(path)).hex()
            what = f"(public key {pub})"
        except keys.KeyFileError as e:
            what = f"({e})"
        raise Refused(
            f"{path}: already exists {what}; --force replaces it, and cabinets that trust the old key "
            "reject the new key's acknowledgements until re-provisioned"
        )
    try:
        pub_raw = keys.new_signing_key(path, force=args.force)
    except OSError as e:
        raise Refused(f"{path}: cannot write: {e.strerror or e}", 1) from None
    print(pub_raw.hex())
    return 0


def _store(dsn: str) -> Any:
    from tools.ingest.store import Store

    return Store(dsn)


def _stats(args: argparse.Namespace) -> int:
    from tools.ingest import stats

    lite = not args.db.startswith(("postgresql://", "postgres://"))
    if args.wait_rows is not None and args.wait_rows < 0:
        raise Refused(f"--wait-rows {args.wait_rows}: give a number of readings, 0 or more")
    try:
        since = None if args.since is None else stats.parse_when(args.since, "--since")
        until = None if args.until is None else stats.parse_when(args.until, "--until")
    except ValueError as e:
        raise Refused(str(e)) from None
    if since is not None and until is not None and since >= until:
        raise Refused(f"--since {args.since} is not before --until {args.until}")
    deadline = time.monotonic() + (args.timeout if args.wait_rows is not None else 0)
    if lite and not Path(args.db).exists():  # never create an empty database by looking at it
        while args.wait_rows is not None and time.monotonic() < deadline and not Path(args.db).exists():
            time.sleep(0.25)
        if not Path(args.db).exists():
            raise Refused(f"{args.db}: no such database (an ingest creates it: cabinet ingest run --db {args.db})")
    store = _store(args.db)
    try:
        if args.wait_rows is None:
            doc = stats.report(store, args.cabinet, since, until)
        else:
            left = max(0.0, deadline - time.monotonic())
            reached, doc = stats.wait_rows(
                lambda: stats.report(store, args.cabinet, since, until), args.wait_rows, left, args.cabinet
            )
            if not reached:
                stats.print_report(doc, sys.stdout, args.json)
                whose = f" of {args.cabinet}" if args.cabinet else ""
                raise Refused(
                    f"{stats.rows_of(doc, args.cabinet)} of {args.wait_rows} readings{whose} stored "
                    f"after {args.timeout:g} s",
                    1,
                )
        stats.print_report(doc, sys.stdout, args.json)
    finally:
        store.close()
    return 0


def _is_pg(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _migrate(args: argparse.Namespace) -> int:
    from tools.ingest.store import PSYCOPG_MISSING, redact

    if not _is_pg(args.db):  # SQLite: upgraded when an ingest opens it
        if not Path(args.db).exists():
            raise Refused(f"{args.db}: no such database")
        _store(args.db).close()
        print(f"{args.db}: SQLite ingest schema is current (SQLite databases are upgraded when opened)")
        return 0
    try:
        from tools.ingest.pg.admin import AdminError, migrate
    except ModuleNotFoundError:
        raise Refused(f"{redact(args.db)}: {PSYCOPG_MISSING}") from None
    try:
        for line in migrate(args.db, redact(args.db), _today()):
            print(line)
    except AdminError as e:
        raise Refused(str(e), e.code) from None
    return 0


def _partitions(args: argparse.Namespace) -> int:
    from tools.ingest.pg.admin import maintain

    if not _is_pg(args.db):
        raise Refused(f"{args.db}: partitions are PostgreSQL's; a SQLite ingest database has one readings table")
    if args.ahead is not None and not 0 <= args.ahead <= 3660:
        raise Refused(f"--ahead {args.ahead}: give 0..3660 days")
    drop = None
    if args.drop_before is not None:
        try:
            drop = dt.date.fromisoformat(args.drop_before)
        except ValueError:
            raise Refused(f"--drop-before {args.drop_before}: give a date as YYYY-MM-DD") from None
    store = _store(args.db)
    try:
        for line in maintain(store.conn, _today(), args.ahead, drop):
            print(line)
    finally:
        store.close()
    return 0


def _register(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.wire import cose
    from tools.provision.identity import validate_cabinet_id

    try:
        validate_cabinet_id(args.cabinet)
        raw = bytes.fromhex(args.public_key)
        pub = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise Refused(f"--cabinet/--public-key: {e}") from None
    kid = cose.key_id(pub)
    store = _store(args.db)
    try:
        store.add_key(args.cabinet, kid, raw, time.time())
    except ValueError as e:
        raise Refused(str(e)) from None
    finally:
        store.close()
    print(f"registered {args.cabinet} key {kid.hex()}")
    return 0


async def _watch_parent(pid: int, stop: Callable[[], None]) -> None:
    """A worker started by `cabinet run --with-ingest` ends with the agent, however it dies."""
    while os.getppid() == pid:
        await asyncio.sleep(0.5)
    log.warning("parent %d is gone; stopping", pid)
    stop()


def _tls(args: argparse.Namespace, tls: bool) -> ssl.SSLContext | None:
    if not tls:
        return None
    missing = [o for o, v in (("--ca", args.ca), ("--cert", args.cert), ("--tls-key", args.tls_key)) if not v]
    if missing:
        raise Refused(f"TLS needs {', '.join(missing)} (the CA, the ingest's certificate and its key)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    except (OSError, ssl.SSLError) as e:
        raise Refused(f"--ca {args.ca}: {getattr(e, 'strerror', None) or e}") from None
    try:
        ctx.load_cert_chain(args.cert, args.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise Refused(f"--cert {args.cert} / --tls-key {args.tls_key}: {getattr(e, 'strerror', None) or e}") from None
    return ctx


def _run(args: argparse.Namespace) -> int:
    # deferred: heavy (aiomqtt, cryptography)
    from agent.uplink import keys
    from tools.ingest.service import IngestService

    logs.setup("info")
    if not args.key:
        raise Refused("give --key FILE (create it with `cabinet ingest init --key FILE`)")
    if not 1 <= args.keepalive <= 65535:
        raise Refused(f"--keepalive {args.keepalive}: give 1..65535 seconds")
    try:
        address = parse_broker(args.broker or "127.0.0.1")
        ack_key = keys.load_signing_key(Path(args.key))
    except (ValueError, keys.KeyFileError) as e:
        raise Refused(f"{e}") from None
    tls = bool(address.tls) if address.tls is not None else args.tls
    context = _tls(args, tls)
    store = _store(args.db)
    service = IngestService(
        store,
        broker=address.host,
        port=address.port_or_default(tls),
        ack_key=ack_key,
        clock=WallClock(),
        tls=context,
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

    try:
        asyncio.run(serve())
    finally:
        store.close()
    return 0
