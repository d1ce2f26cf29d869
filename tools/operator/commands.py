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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.runtime.entry import board_infos
from agent.uplink.keys import KeyFileError
from tools.ingest.store import Store
from tools.operator.mqtt import BrokerRefused, Connection, describe_error, mqtt_client, reply_properties, tls_context

__all__ = ["BrokerRefused", "mqtt_client", "reply_properties", "tls_context"]  # also used by the OTA rollout

KeyLookup = dict[bytes, tuple[str | None, Any]]  # kid -> (cabinet, or None for any; public key)

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parsers(sub: Any) -> None:
    op = sub.add_parser("operator", help="operator keys for signed commands")
    osub = op.add_subparsers(dest="operator_command", required=True, metavar="SUBCOMMAND")
    oi = osub.add_parser("init", help="make an operator key; print its public key for the cabinets' [trust]")
    oi.add_argument("--key", required=True, help="file for the new Ed25519 key (PEM, 0600)")
    oi.add_argument("--force", action="store_true", help="replace the key file if it exists")
    oi.set_defaults(func=operator_main)

    c = sub.add_parser("cmd", help="send signed commands to cabinets")
    csub = c.add_subparsers(dest="cmd_command", required=True, metavar="SUBCOMMAND")
    s = csub.add_parser(
        "send",
        help="sign, publish, wait for the signed reply",
        epilog="Prints one JSON line per cabinet: its verified reply. Exit codes: 0 every reply ok, 1 a reply not "
        "ok or missing, the broker refused the publish, or --wait-online ran out; 2 bad arguments or files. "
        "docs/commands.md.",
    )
    s.add_argument("kind", help="e.g. ping, status, light.override, light.cancel, alarm.ack, log.level, reboot")
    s.add_argument("--id", action="append", required=True, dest="ids", help="cabinet id (repeat for several)")
    s.add_argument("--group", help='address the command to "group:TAG" (cabinets with that tag)')
    s.add_argument("--arg", action="append", default=[], help="k=v (v parsed as JSON when it is JSON; repeat)")
    onoff = s.add_mutually_exclusive_group()
    onoff.add_argument("--on", dest="on", action="store_const", const=True, help="light.override: switch on")
    onoff.add_argument("--off", dest="on", action="store_const", const=False, help="light.override: switch off")
    s.add_argument("--level", type=float, help="light.override: dimming level, percent 0..100")
    s.add_argument("--for", dest="for_", help="light.override: duration, e.g. 90s, 15m, 2h")
    s.add_argument("--segments", help="light.override, light.cancel: comma-separated segment names (default all)")
    s.add_argument("--alarm", help="alarm.ack: the alarm id")
    s.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log.level: the new level")
    signing_and_broker_args(s)
    wait_online_arg(s)
    s.set_defaults(func=send_main)


def signing_and_broker_args(p: argparse.ArgumentParser) -> None:
    """What every operator command needs: the key it signs with, the broker, the reply check."""
    p.add_argument("--key", required=True, help="the operator's Ed25519 key (PEM, from `cabinet operator init`)")
    p.add_argument(
        "--broker",
        required=True,
        help="the MQTT broker: mqtts://HOST[:PORT] (TLS, port 8883), mqtt://HOST[:PORT] (plain, 1883) or HOST[:PORT]",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (trusting --ca, or the system's CAs)")
    p.add_argument("--ca", help="CA certificate (PEM) of the broker; implies --tls")
    p.add_argument("--cert", help="the operator's client certificate (PEM) for mutual TLS")
    p.add_argument("--tls-key", help="the private key (PEM) of --cert")
    p.add_argument("--cabinet-key", help="the cabinet's public key (64 hex or a file) to verify replies")
    p.add_argument("--ingest-db", help="look the cabinets' public keys up in this ingest registry (SQLite or DSN)")
    p.add_argument("--prefix", default="city/v1", help="topic prefix (default city/v1)")
    p.add_argument("--ttl", default="300", help="command lifetime (exp - iat), e.g. 300, 10m (default 300 s)")
    p.add_argument("--cid", help="command id (default: random); re-send with the same id to make sure it ran once")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the replies (default 10)")


def wait_online_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait-online",
        type=float,
        metavar="SECONDS",
        help="first wait up to SECONDS until each cabinet's retained state says online (a starting cabinet)",
    )


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
    except FileExistsError:
        print(
            f"cabinet operator init: {a.key}: exists; refusing to overwrite a key (--force replaces it)",
            file=sys.stderr,
        )
        return 1
    except (OSError, pki.PKIError) as e:
        print(f"cabinet operator init: {a.key}: {e}", file=sys.stderr)
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
    ttl = int(duration(a.ttl))
    to_group = f"{C.GROUP_PREFIX}{a.group}" if getattr(a, "group", None) else None
    base_cid = a.cid or f"op-{secrets.token_hex(8)}"
    pending: dict[bytes, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    async with mqtt_client(a, tls, f"op-{secrets.token_hex(6)}") as client:
        if a.wait_online:
            await wait_online(client, a.prefix, a.ids, a.wait_online)
        now = int(time.time())
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


class NotOnline(Exception):
    """--wait-online: a cabinet's retained state did not say online in time."""


async def wait_online(client: Connection, prefix: str, ids: list[str], seconds: float) -> None:
    """Until every cabinet's retained state message (`<prefix>/cab/<id>/state`, its birth)
    says online: a cabinet publishes it after it subscribed to its commands, so a command
    sent after it is not lost to a cabinet that is still starting."""
    from agent.wire import cose  # deferred: heavy (cryptography)

    waiting = set(ids)
    for cab in ids:
        await client.subscribe(cose.state_topic(prefix, cab), qos=1)
    try:
        async with asyncio.timeout(seconds):
            async for msg in client.messages:
                try:
                    cab = cose.topic_cabinet(str(msg.topic), "state")
                    online = json.loads(bytes(msg.payload)).get("online") is True
                except (ValueError, AttributeError):
                    continue
                if online:
                    waiting.discard(cab)
                if not waiting:
                    return
    except TimeoutError:
        raise NotOnline(
            f"{', '.join(sorted(waiting))}: not online within {seconds:g} s (no retained state message "
            f"saying online on {prefix}/cab/<id>/state)"
        ) from None


async def collect_replies(
    client: Connection, pending: dict[bytes, dict[str, Any]], keys: KeyLookup, results: list[dict[str, Any]]
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
    except (BrokerRefused, NotOnline) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError, KeyFileError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - aiomqtt.MqttError and friends (aiomqtt loads lazily): no broker
        print(f"{name}: {describe_error(e, a)}", file=sys.stderr)
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
    p.add_argument("file", help="the cabinet's whole new config file (TOML)")
    p.add_argument("--id", action="append", required=True, dest="ids", help="the cabinet id")
    p.add_argument("--version", type=int, required=True, help="the new config_version (> the running one)")
    p.add_argument("--expect-sha256", help="refuse unless the cabinet runs this config (sha256 of its file)")
    p.add_argument("--trial", default="5m", help="health gate window, e.g. 90s, 5m (default 5m)")
    p.add_argument("--no-check", action="store_true", help="do not validate the file locally first")
    signing_and_broker_args(p)
    wait_online_arg(p)
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
