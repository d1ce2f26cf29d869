"""`cabinet ca init|issue-server|issue-client` and `cabinet provision`: the device CA, the
certificates of the broker and the cloud services, and cabinet identities (docs/cloud.md).

    cabinet ca init --dir PKI [--name N] [--days D] [--algorithm ed25519|p256] [--force]
    cabinet ca issue-server --dir PKI --host NAME [--host NAME ...] --out DIR [--user mosquitto]
    cabinet ca issue-client --dir PKI --name CN --out DIR [--user USER]
    cabinet provision --id CAB-0042 --out DIR --broker mqtts://HOST[:8883] --ca-dir PKI
                      [--ingest-db DSN ...] [--ingest-key HEX] [--template FILE] [--force]
    cabinet provision --id CAB-0042 --out DIR --broker mqtt://HOST[:1883]      (plain MQTT: no CA)

Output for people; --json for machines. Exit codes: 0 ok, 1 runtime failure (an ingest
database unreachable), 2 usage or config error (bad argument, missing CA, files already there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ALGORITHMS = ("ed25519", "p256")  # tools.provision.pki.ALGORITHMS, without importing cryptography here


class Refused(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def add_parsers(sub: Any) -> None:
    ca = sub.add_parser("ca", help="the device CA and the certificates of the broker and the cloud services")
    csub = ca.add_subparsers(dest="ca_command", required=True, metavar="SUBCOMMAND")
    i = csub.add_parser("init", help="create the device CA: DIR/ca.key (0600) and DIR/ca.crt")
    i.add_argument("--dir", required=True, help="directory for ca.key and ca.crt (created 0700)")
    i.add_argument("--name", default="cabinet-agent device CA", help="the CA's common name")
    i.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    i.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519", help="key algorithm (default ed25519)")
    i.add_argument("--force", action="store_true", help="replace an existing CA (its certificates stop verifying)")
    i.add_argument("--json", action="store_true", help="print the CA certificate's details as JSON")
    i.set_defaults(func=ca_main)

    s = csub.add_parser("issue-server", help="a server certificate for the broker: DIR/server.crt, server.key, ca.crt")
    _issue_options(s, "the broker's files (server.crt, server.key, ca.crt); created 0750")
    s.add_argument(
        "--host",
        action="append",
        required=True,
        help="a host name or IP address the cabinets connect to (repeat for more; all go into the SAN)",
    )
    s.add_argument(
        "--user",
        help="run as root: give the files to this user, the one the broker runs as (default mosquitto)",
    )
    s.set_defaults(func=ca_main)

    c = csub.add_parser(
        "issue-client", help="a client certificate for a cloud service (e.g. ingest): DIR/NAME.crt, NAME.key, ca.crt"
    )
    _issue_options(c, "the service's files (NAME.crt, NAME.key, ca.crt); created 0700")
    c.add_argument(
        "--name", required=True, help="the certificate's CN = the MQTT username the broker ACL knows (e.g. ingest)"
    )
    c.add_argument("--user", help="run as root: give the files to this user (the one the service runs as)")
    c.set_defaults(func=ca_main)

    p = sub.add_parser("provision", help="create a cabinet's keys, certificate and config")
    p.add_argument("--id", required=True, dest="cabinet_id", help="the cabinet id (letters, digits, '.', '_', '-')")
    p.add_argument("--out", required=True, help="directory for the cabinet's files (created 0700)")
    p.add_argument(
        "--broker",
        required=True,
        metavar="ADDRESS",
        help="mqtts://HOST[:PORT] (mutual TLS, port 8883; needs --ca-dir), mqtt://HOST[:PORT] (plain MQTT, "
        "port 1883, no certificates) or HOST (TLS)",
    )
    p.add_argument("--port", type=int, help="the broker's port when --broker has none (default: 8883 TLS, 1883 plain)")
    p.add_argument("--ca-dir", help="the device CA directory (`cabinet ca init`); needed for TLS")
    p.add_argument("--topic-prefix", help="topic prefix (default: the template's [uplink] topic_prefix, else city/v1)")
    p.add_argument(
        "--ingest-db",
        action="append",
        metavar="DSN",
        help="register the signing key in this ingest database (SQLite file or postgresql:// DSN; repeat for more)",
    )
    p.add_argument("--ingest-key", help="the ingest's public key (64 hex digits, `cabinet ingest init`) to trust")
    p.add_argument(
        "--template", help="config to start from (default boards/sim/cabinet.toml); its [uplink] settings are kept"
    )
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519", help="TLS key algorithm (default ed25519)")
    p.add_argument("--force", action="store_true", help="replace an identity already in --out (the old keys are lost)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--console-user",
        metavar="NAME",
        help="also write OUT/console/users.json with this first technician of the web console and a one-time code",
    )
    p.set_defaults(func=provision_main)


def _issue_options(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--dir", required=True, help="the device CA directory (`cabinet ca init`)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825, never beyond the CA's)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519", help="key algorithm (default ed25519)")
    p.add_argument("--force", action="store_true", help="replace files already there")
    p.add_argument("--json", action="store_true", help="print the certificate's details as JSON")


def ca_main(args: argparse.Namespace) -> int:
    from tools.provision import files, pki  # deferred: heavy (cryptography)

    command = f"cabinet ca {args.ca_command}"
    try:
        if args.ca_command == "init":
            ca = pki.init_ca(Path(args.dir), name=args.name, days=args.days, algorithm=args.algorithm, force=args.force)
            info = pki.cert_info(ca.cert_pem)
            _print_cert(args, info, f"device CA in {args.dir}: {ca.cert_path} and {ca.key_path} (0600)")
            return 0
        ca = pki.load_ca(Path(args.dir))
        if args.ca_command == "issue-server":
            who = files.owner_for(args.user, files.BROKER_USER)
            key, cert = ca.issue_server(args.host, days=args.days, algorithm=args.algorithm)
            names = {"server.crt": (cert, False), "server.key": (key, True), "ca.crt": (ca.cert_pem, False)}
        else:
            who = files.owner_for(args.user, None)
            key, cert = ca.issue_client(args.name, days=args.days, algorithm=args.algorithm)
            names = {f"{args.name}.crt": (cert, False), f"{args.name}.key": (key, True), "ca.crt": (ca.cert_pem, False)}
        paths = files.write_set(Path(args.out), names, who, args.force)
    except (FileExistsError, ValueError, pki.PKIError, files.FilesError) as e:
        print(f"{command}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{command}: {_os_error(e)}", file=sys.stderr)
        return 1
    info = pki.cert_info(cert)
    owner = f", owner {who.name}" if who else ""
    what = "broker" if args.ca_command == "issue-server" else f"client {args.name!r}"
    _print_cert(
        args,
        info,
        f"{what} certificate in {args.out}: {paths[0].name}, {paths[1].name} (0600{owner}), ca.crt (the device CA)",
    )
    return 0


def _os_error(e: OSError) -> str:
    return f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e)


def _print_cert(args: argparse.Namespace, info: dict[str, Any], headline: str) -> None:
    if args.json:
        print(json.dumps(info, default=str, indent=2))
        return
    names = ", ".join(info["dns_names"] + info["ip_addresses"])
    print(headline)
    print(f"  subject {info['subject']}" + (f", names {names}" if names else ""))
    print(f"  valid until {info['not_after']:%Y-%m-%d}, sha256 {info['fingerprint']}")


def provision_main(args: argparse.Namespace) -> int:
    from agent.console.users import check_name
    from agent.uplink.address import BrokerAddress, parse_broker
    from tools.console.cli import first_technician
    from tools.ingest.store import Store, StoreError
    from tools.provision import pki  # deferred: heavy (cryptography)
    from tools.provision.identity import provision

    stores: list[Any] = []
    try:
        if args.console_user and (problem := check_name(args.console_user)):  # before anything is written
            raise Refused(f"--console-user {args.console_user!r}: {problem}")
        a = parse_broker(args.broker)
        tls = True if a.tls is None else a.tls
        if a.port is not None and args.port is not None and a.port != args.port:
            raise Refused(f"--broker {args.broker} and --port {args.port}: two different ports")
        port = a.port or args.port or a.port_or_default(tls)
        if tls and not args.ca_dir:
            raise Refused(f"--broker {a.url(tls)}: TLS needs --ca-dir (the device CA); plain MQTT is mqtt://HOST")
        for dsn in args.ingest_db or ():  # opened first: an unreachable database changes nothing
            stores.append(Store(dsn))

        def registry(cabinet: str, kid: bytes, raw: bytes) -> None:
            for store in stores:
                store.add_key(cabinet, kid, raw, time.time())

        info = provision(
            args.cabinet_id,
            Path(args.out),
            ca_dir=Path(args.ca_dir) if args.ca_dir and tls else None,
            broker_host=a.host,
            broker_port=port,
            tls=tls,
            topic_prefix=args.topic_prefix,
            registry=registry if stores else None,
            force=args.force,
            algorithm=args.algorithm,
            template=args.template,
            ingest_key=args.ingest_key,
        )
        if args.console_user:  # the web console's first technician (docs/console.md)
            info["console"] = first_technician(Path(args.out), args.console_user)
    except (Refused, StoreError) as e:
        print(f"cabinet provision: {e}", file=sys.stderr)
        return e.code
    except (ValueError, FileExistsError, pki.PKIError) as e:
        print(f"cabinet provision: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cabinet provision: {_os_error(e)}", file=sys.stderr)
        return 1
    finally:
        for store in stores:
            store.close()
    info["ingest_db"] = list(args.ingest_db or [])
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        _print_provisioned(info, BrokerAddress(a.host, port, tls).url())
    return 0


def _print_provisioned(info: dict[str, Any], url: str) -> None:
    from tools.ingest.store import redact

    f = info["files"]
    print(f"cabinet {info['cabinet_id']} provisioned in {Path(f['config']).parent}/:")
    print(f"  {Path(f['config']).name:<13} config with [uplink] {url}, topic prefix {info['topic_prefix']}")
    print(f"  {Path(f['signing_key']).name:<13} Ed25519 signing key (PKCS8 PEM, 0600), kid {info['kid']}")
    print(f"  {'':<13} public key {info['public_key']}")
    if info["tls"]:
        print(f"  {'tls.key, .crt':<13} TLS client key (0600) and certificate, CN {info['cabinet_id']}, "
              f"valid until {info['not_after'][:10]}")  # fmt: skip
        print(f"  {'ca.crt':<13} the device CA certificate, sha256 {info['ca_fingerprint']}")
    else:
        print(f"  {'':<13} plain MQTT: no certificates")
    if info["kept"]:
        print(f"kept from the template's [uplink]: {', '.join(info['kept'])}")
    if info["ingest_db"]:
        print(f"signing key registered in: {', '.join(redact(d) for d in info['ingest_db'])}")
    if c := info.get("console"):
        print(f"web console: {c['user']} ({c['role']}), one-time code {c['one_time_code']} (shown only now),")
        print(f"  in {c['users_file']}: the agent's <data dir>/console/users.json; the first login sets a password")
    print(f"check it: cabinet config check {f['config']}")
