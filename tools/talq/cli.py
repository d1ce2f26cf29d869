"""`cabinet talq serve|bootstrap`: the TALQ 2.7.1 gateway (docs/talq.md).

    cabinet talq serve --db DSN [--listen HOST:PORT] [--token T] [--tls-cert F --tls-key F [--client-ca F]]
    cabinet talq bootstrap --db DSN --cms URL --gateway-uri URL [--token T] [--ca F] [--cert F --key F]

DSN: the ingest's PostgreSQL database (postgresql://[USER@]HOST[:PORT]/DATABASE). Exit codes:
0 ok, 1 runtime failure (database or CMS unreachable, CMS refused a step), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
import threading
from typing import Any

log = logging.getLogger("talq")
DSN_HELP = "the ingest's PostgreSQL database: postgresql://[USER@]HOST[:PORT]/DATABASE"
TOKEN_HELP = "an API token: required from (serve) or sent to (bootstrap) the other side as 'Authorization: Bearer T'"


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("talq", help="the TALQ 2.7.1 gateway: a city's lighting CMS reads the fleet")
    tsub = p.add_subparsers(dest="talq_command", required=True, metavar="SUBCOMMAND")
    s = tsub.add_parser(
        "serve",
        help="serve the TALQ Gateway API (devices, functions, attributes, device classes) until SIGTERM/SIGINT",
        description="Exit 0 after SIGTERM/SIGINT, 1 when the database cannot be opened, 2 on a usage error.",
    )
    s.add_argument("--db", required=True, help=DSN_HELP)
    s.add_argument(
        "--listen",
        default="127.0.0.1:8480",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8480; port 0: any free one, printed)",
    )
    s.add_argument(
        "--token", default=os.environ.get("CABINET_TALQ_TOKEN"), help=TOKEN_HELP + " (default $CABINET_TALQ_TOKEN)"
    )
    s.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    s.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    s.add_argument("--client-ca", help="with --tls-cert: require client certificates signed by this CA (mutual TLS)")
    s.set_defaults(func=cmd_serve)
    b = tsub.add_parser(
        "bootstrap",
        help="announce the gateway, its services, device classes and every cabinet to a CMS (TALQ §5.1)",
        description="Exit 0 when the CMS took every step, 1 when it refused one or cannot be reached, "
        "2 on a usage error.",
    )
    b.add_argument("--db", required=True, help=DSN_HELP)
    b.add_argument("--cms", required=True, metavar="URL", help="the CMS's cmsUri, e.g. https://cms.example.org/talq")
    b.add_argument("--gateway-uri", required=True, metavar="URL", help="the URL the CMS reaches this gateway at")
    b.add_argument(
        "--token", default=os.environ.get("CABINET_TALQ_TOKEN"), help=TOKEN_HELP + " (default $CABINET_TALQ_TOKEN)"
    )
    b.add_argument("--ca", help="the CA that signed the CMS's certificate (default: the system's)")
    b.add_argument("--cert", help="a client certificate for mutual TLS (PEM)")
    b.add_argument("--key", help="the private key of --cert (PEM)")
    b.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each CMS answer (default 10)")
    b.set_defaults(func=cmd_bootstrap)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8480")
    return host.strip("[]") or "0.0.0.0", int(port)


def _source(dsn: str) -> Any:
    from tools.ingest.store import redact
    from tools.talq.source import PgSource

    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"--db {redact(dsn)}: the gateway reads the PostgreSQL ingest (postgresql://...)")
    return PgSource(dsn, redact(dsn))


def cmd_serve(args: argparse.Namespace) -> int:
    from tools.talq.server import Gateway
    from tools.talq.source import SourceError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        address = _listen(args.listen)
        if bool(args.tls_cert) != bool(args.tls_key) or (args.client_ca and not args.tls_cert):
            raise ValueError("--tls-cert and --tls-key go together; --client-ca needs them")
        src = _source(args.db)
    except ValueError as e:
        print(f"cabinet talq serve: {e}", file=sys.stderr)
        return 2
    except SourceError as e:
        print(f"cabinet talq serve: {e}", file=sys.stderr)
        return 1
    ctx = None
    try:
        if args.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
            if args.client_ca:
                ctx.load_verify_locations(args.client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        src.close()
        print(f"cabinet talq serve: TLS files: {e}", file=sys.stderr)
        return 2
    try:
        gw = Gateway(address, src, args.token, ctx)
    except OSError as e:
        src.close()
        print(f"cabinet talq serve: --listen {args.listen}: {e.strerror or e}", file=sys.stderr)
        return 1
    scheme = "https" if ctx else "http"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    gw.start()
    host, port = gw.server_address[:2]
    print(f"TALQ gateway on {scheme}://{host!s}:{port} (talq-api-version 2.7.1)", flush=True)
    stop.wait()
    gw.shutdown()
    gw.server_close()
    src.close()
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from tools.talq.bootstrap import BootstrapError, bootstrap, http_sender
    from tools.talq.source import SourceError

    ctx = None
    try:
        if args.cms.startswith("https://"):
            ctx = ssl.create_default_context(cafile=args.ca)
            if args.cert:
                ctx.load_cert_chain(args.cert, args.key)
        elif not args.cms.startswith("http://"):
            raise ValueError(f"--cms {args.cms!r}: an http:// or https:// URL")
        src = _source(args.db)
    except (ValueError, OSError) as e:
        print(f"cabinet talq bootstrap: {e}", file=sys.stderr)
        return 2
    except SourceError as e:
        print(f"cabinet talq bootstrap: {e}", file=sys.stderr)
        return 1
    try:
        r = bootstrap(args.cms, args.gateway_uri, src, http_sender(args.timeout, ctx, args.token))
    except (BootstrapError, SourceError) as e:
        print(f"cabinet talq bootstrap: {e}", file=sys.stderr)
        return 1
    finally:
        src.close()
    print(
        f"bootstrapped: gatewayAddress {r.gateway_address}, cmsAddress {r.cms_address},",
        f"{r.classes} device class(es), {r.devices} device(s)",
    )
    return 0
