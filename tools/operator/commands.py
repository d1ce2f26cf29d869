"""The operator side of signed commands (docs/commands.md).

    cabinet operator init --key FILE            make an operator key; prints the public hex for [trust]
    cabinet cmd send --id CAB-0042 [--id ...] [--group TAG] KIND [--arg k=v ...]
                     [--on|--off] [--level N] [--for 2h] [--segments a,b] [--alarm ID] [--log-level L]
                     --key operator.key --broker HOST[:PORT] [--tls --ca F --cert F --tls-key F]
                     [--cabinet-key HEX|FILE | --ingest-db DSN] [--prefix city/v1] [--ttl 300] [--timeout 10]

`send` signs one envelope per cabinet (the AAD is each cabinet's own command topic; with
--group the header says to = "group:TAG"), publishes it (QoS 1, MQTT v5 response topic
and correlation data), waits for each cabinet's signed reply, verifies it with the
cabinet's public key (--cabinet-key, or the key registered in the ingest's registry),
prints it as JSON, and exits 0 when every cabinet replied ok, 1 otherwise. The broker
connection, the TLS context and the reply-key lookup are shared with `cabinet ota rollout`
(tools/ota/rollout/session.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import config as cfg
from agent.runtime.entry import board_infos
from tools.ingest.store import Store

if TYPE_CHECKING:
    import aiomqtt

KeyLookup = dict[bytes, tuple[str | None, Any]]  # kid -> (cabinet, or None for any; public key)

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parsers(sub: Any) -> None:
    op = sub.add_parser("operator", help="operator keys for signed commands")
    op.add_argument("action", choices=("init",))
    op.add_argument("--key", required=True, help="file for the new Ed25519 key (PEM, 0600)")
    op.add_argument("--force", action="store_true")
    op.set_defaults(func=operator_main)

    c = sub.add_parser("cmd", help="send signed commands to cabinets")
    csub = c.add_subparsers(dest="cmd_command", required=True, metavar="SUBCOMMAND")
    s = csub.add_parser("send", help="sign, publish, wait for the signed reply")
    s.add_argument("kind", help="e.g. ping, status, light.override, light.cancel, alarm.ack, log.level, reboot")
    s.add_argument("--id", action="append", required=True, dest="ids", help="cabinet id (repeat for several)")
    s.add_argument("--group", help='address the command to "group:TAG" (cabinets with that tag)')
    s.add_argument("--arg", action="append", default=[], help="k=v (v parsed as JSON when it is JSON)")
    onoff = s.add_mutually_exclusive_group()
    onoff.add_argument("--on", dest="on", action="store_const", const=True)
    onoff.add_argument("--off", dest="on", action="store_const", const=False)
    s.add_argument("--level", type=float)
    s.add_argument("--for", dest="for_", help="override duration, e.g. 90s, 15m, 2h")
    s.add_argument("--segments", help="comma-separated segment names")
    s.add_argument("--alarm", help="alarm id (alarm.ack)")
    s.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    signing_and_broker_args(s)
    s.set_defaults(func=send_main)


def signing_and_broker_args(p: argparse.ArgumentParser) -> None:
    """What every operator command needs: the key it signs with, the broker, the reply check."""
    p.add_argument("--key", required=True, help="the operator's Ed25519 key (PEM)")
    p.add_argument("--broker", required=True, help="HOST[:PORT]")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--tls-key")
    p.add_argument("--cabinet-key", help="the cabinet's public key (64 hex or file) to verify replies")
    p.add_argument("--ingest-db", help="look the cabinets' public keys up in the ingest registry")
    p.add_argument("--prefix", default="city/v1")
    p.add_argument("--ttl", default="300", help="command lifetime (exp - iat), e.g. 300, 10m")
    p.add_argument("--cid", help="command id (default: random)")
    p.add_argument("--timeout", type=float, default=10.0)


def duration(text: str) -> float:
    m = DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"duration {text!r}: a number with s, m, h or d, e.g. 2h")
    return float(m.group(1)) * UNITS[m.group(2)]


def command_args(a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if a.on is not None:
        out["on"] = a.on
    if a.level is not None:
        out["level"] = int(a.level) if a.level == int(a.level) else a.level
    if a.for_:
        out["for_s"] = duration(a.for_)
    if a.segments:
        out["segments"] = [s for s in a.segments.split(",") if s]
    if a.alarm:
        out["id"] = a.alarm
    if a.log_level:
        out["level"] = a.log_level
    for kv in a.arg:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"--arg {kv!r}: expected k=v")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def operator_main(a: argparse.Namespace) -> int:
    from tools.provision import pki  # deferred: heavy (cryptography)

    try:
        pub = pki.new_signing_key(Path(a.key), force=a.force)
    except (FileExistsError, pki.PKIError) as e:
        print(f"cabinet operator init: {e}", file=sys.stderr)
        return 1
    print(pub.hex())
    print(
        f"# operator key written to {a.key}; on each cabinet add:\n"
        f'#   [trust.operators.NAME]\n#   key = "{pub.hex()}"\n#   allow = ["ping", "status"]  # or "*"',
        file=sys.stderr,
    )
    return 0


def cabinet_keys(a: argparse.Namespace) -> KeyLookup:
    """kid -> (cabinet, public key) lookup for replies."""
    # deferred: heavy (cryptography)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.uplink.keys import parse_public_key
    from agent.wire import cose

    found: KeyLookup = {}
    if a.cabinet_key:
        k = parse_public_key(a.cabinet_key)
        found[cose.key_id(k)] = (None, k)
    if a.ingest_db:
        store = Store(a.ingest_db)
        try:
            for kid, (cab, raw) in store.keys().items():
                found[kid] = (cab, Ed25519PublicKey.from_public_bytes(raw))
        finally:
            store.close()
    return found


def key_lookup_for(keys: KeyLookup, cabinet: str) -> Callable[[bytes], Any]:
    """The public key of a kid, when it belongs to `cabinet` (or to any cabinet), else None."""

    def lookup(kid: bytes) -> Any:
        hit = keys.get(kid)
        return hit[1] if hit and hit[0] in (None, cabinet) else None

    return lookup


def tls_context(a: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of --tls/--ca (with --cert/--tls-key: a client certificate); None: plain MQTT."""
    if not (a.tls or a.ca):
        return None
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
    if a.cert and a.tls_key:
        tls.load_cert_chain(a.cert, a.tls_key)
    return tls


def mqtt_client(a: argparse.Namespace, tls: ssl.SSLContext | None, identifier: str) -> aiomqtt.Client:
    """An MQTT v5 client for --broker HOST[:PORT] (default port 8883 with TLS, else 1883)."""
    import aiomqtt  # deferred: heavy (aiomqtt, paho-mqtt client)

    host, _, port = a.broker.rpartition(":") if ":" in a.broker else (a.broker, "", "")
    return aiomqtt.Client(
        host or a.broker,
        int(port) if port else (8883 if tls else 1883),
        tls_context=tls,
        protocol=aiomqtt.ProtocolVersion.V5,
        identifier=identifier,
        timeout=a.timeout,
    )


def reply_properties(response_topic: str, correlation: bytes) -> Properties:
    """PUBLISH properties asking for a reply on response_topic, tagged with correlation."""
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


async def send(
    a: argparse.Namespace, kind: str | None = None, args: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Sign and publish the command to each cabinet, collect the signed replies until the timeout."""
    # deferred: heavy (cryptography, the MQTT client)
    from agent.wire import commands as C
    from tools.provision import pki

    key = pki.load_signing_key(a.key)
    kind = kind or a.kind
    args = command_args(a) if args is None else args
    keys = cabinet_keys(a)
    tls = tls_context(a)
    now = int(time.time())
    ttl = int(duration(a.ttl))
    to_group = f"{C.GROUP_PREFIX}{a.group}" if getattr(a, "group", None) else None
    base_cid = a.cid or f"op-{secrets.token_hex(8)}"
    pending: dict[bytes, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    async with mqtt_client(a, tls, f"op-{secrets.token_hex(6)}") as client:
        for i, cab in enumerate(a.ids):
            resp = C.reply_topic(a.prefix, cab, kind)
            await client.subscribe(resp, qos=1)
            cid = base_cid if len(a.ids) == 1 else f"{base_cid}-{i}"
            topic = C.command_topic(a.prefix, cab, kind)
            env = C.sign_command(kind, args, key=key, cid=cid, iat=now, exp=now + ttl, to=to_group or cab, topic=topic)
            corr = secrets.token_bytes(16)
            pending[corr] = {"cabinet": cab, "cid": cid, "topic": resp}
            await client.publish(topic, env, qos=1, properties=reply_properties(resp, corr))
        deadline = time.monotonic() + a.timeout
        try:
            await asyncio.wait_for(
                collect_replies(client, pending, keys, results), max(0.1, deadline - time.monotonic())
            )
        except TimeoutError:
            pass
    for want in pending.values():
        results.append(
            {
                "cabinet": want["cabinet"],
                "cid": want["cid"],
                "ok": False,
                "reason": "timeout",
                "detail": (
                    f"no reply within {a.timeout} s: the command may not have reached the cabinet (offline, or "
                    f"the broker's queue for it was full); re-send it with --cid {want['cid']}: a cabinet that "
                    "already ran it answers `replayed`, so it never runs twice"
                ),
            }
        )
    return results


async def collect_replies(
    client: aiomqtt.Client, pending: dict[bytes, dict[str, Any]], keys: KeyLookup, results: list[dict[str, Any]]
) -> None:
    """Verify the replies to the `pending` commands (by correlation data) into `results`,
    removing each from `pending`; return when none is left."""
    # deferred: heavy (cryptography)
    from agent.wire import commands as C
    from agent.wire import cose

    async for msg in client.messages:
        corr = getattr(msg.properties, "CorrelationData", None)
        if not corr:
            continue
        want = pending.get(bytes(corr))
        if want is None or str(msg.topic) != want["topic"]:
            continue
        try:
            rep = C.open_reply(bytes(msg.payload), topic=want["topic"], keys=key_lookup_for(keys, want["cabinet"]))
        except cose.VerifyError as e:
            results.append(
                {
                    "cabinet": want["cabinet"],
                    "cid": want["cid"],
                    "ok": False,
                    "reason": f"reply_not_verified:{e.reason}",
                    "detail": e.detail,
                }
            )
        else:
            results.append(
                {
                    "cabinet": rep.cabinet,
                    "cid": rep.cid or want["cid"],
                    "ok": rep.ok,
                    "reason": rep.reason,
                    "detail": rep.detail,
                    "result": rep.result,
                    "t": rep.t,
                }
            )
        del pending[bytes(corr)]
        if not pending:
            return


def send_main(
    a: argparse.Namespace, kind: str | None = None, args: dict[str, Any] | None = None, name: str = "cabinet cmd send"
) -> int:
    if not a.cabinet_key and not a.ingest_db:
        print(f"{name}: --cabinet-key or --ingest-db is needed to verify the cabinet's reply", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(send(a, kind, args))
    except (ValueError, OSError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - aiomqtt.MqttError and friends (aiomqtt loads lazily): no broker
        print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for r in results:
        print(json.dumps(r, sort_keys=True, default=str))
    return 0 if results and all(r["ok"] for r in results) else 1


# -------------------------------------------------------------------- cabinet config push

VERSION_LINE = re.compile(r"^[ \t]*config_version[ \t]*=.*$", re.M)
TABLE_LINE = re.compile(r"^[ \t]*\[", re.M)
CABINET_LINE = re.compile(r"^[ \t]*\[cabinet\][ \t]*(#.*)?$", re.M)


def with_version(text: str, version: int) -> str:
    """The TOML text with `config_version = N` in its [cabinet] table (replaced or inserted)."""
    m = CABINET_LINE.search(text)
    if m is None:
        raise ValueError("the config has no [cabinet] table")
    end = TABLE_LINE.search(text, m.end())
    body_end = end.start() if end else len(text)
    body = text[m.end() : body_end]
    if VERSION_LINE.search(body):
        body = VERSION_LINE.sub(f"config_version = {version}", body, count=1)
    else:
        body = f"\nconfig_version = {version}" + body
    return text[: m.end()] + body + text[body_end:]


def add_config_push(csub: Any) -> None:
    """`cabinet config push` (added under the `config` command by tools.cli.table)."""
    p = csub.add_parser("push", help="sign and push a config to one cabinet; print its reply")
    p.add_argument("file")
    p.add_argument("--id", action="append", required=True, dest="ids", help="the cabinet id")
    p.add_argument("--version", type=int, required=True, help="the new config_version (> the running one)")
    p.add_argument("--expect-sha256", help="refuse unless the cabinet runs this config (sha256 of its file)")
    p.add_argument("--trial", default="5m", help="health gate window, e.g. 90s, 5m (default 5m)")
    p.add_argument("--no-check", action="store_true", help="do not validate the file locally first")
    signing_and_broker_args(p)
    p.set_defaults(func=push_main)


def push_main(a: argparse.Namespace) -> int:
    name = "cabinet config push"
    if len(a.ids) != 1:
        print(f"{name}: one --id per push (a config is one cabinet's)", file=sys.stderr)
        return 2
    try:
        text = with_version(Path(a.file).read_text(encoding="utf-8"), a.version)
        trial_s = duration(a.trial)
    except (OSError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    if not a.no_check:
        try:
            cfg.loads(text, str(Path(a.file).resolve()), board_infos())
        except cfg.ConfigError as e:
            for issue in e.issues:
                print(issue, file=sys.stderr)
            print(f"{name}: {len(e.issues)} issue(s); nothing sent (--no-check sends anyway)", file=sys.stderr)
            return 2
    args: dict[str, Any] = {"toml": text, "version": a.version, "trial_s": trial_s}
    if a.expect_sha256:
        args["expect_sha256"] = a.expect_sha256
    return send_main(a, "config.apply", args, name)
