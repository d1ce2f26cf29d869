"""Signed commands of a rig run: the `command` action, as an operator would send it.

The rig is the run's operator: `OperatorKey.make(dir)` writes an Ed25519 key beside the
run's broker and ingest (tools/rig/uplink.py); `trust_table()` is the `[trust]` the agent
under test runs with (this key, every kind allowed). `send(...)` signs one command with the
agent's format (agent/wire/commands.py, docs/commands.md) on the cabinet's command topic,
publishes it with a response topic (QoS 1) and waits for the cabinet's signed reply,
verified with the cabinet's key: what happened, in one line.

Time: the command's `iat` is the agent's own (simulated) time when the rig sends it, its
`exp` `ttl_s` later, as an operator's clock would be if it were in the run's time; the
agent checks both against its clock (skew `[trust] max_skew_s`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.uplink import keys
from agent.wire import commands as C
from agent.wire import cose

TTL_S = 300
REPLY_TIMEOUT_S = 20.0  # wall seconds


@dataclass(frozen=True)
class OperatorKey:
    path: Path
    public_hex: str

    @classmethod
    def make(cls, directory: Path) -> OperatorKey:
        path = directory / "operator.key"
        if not path.exists():
            keys.new_signing_key(path)
        pub = keys.public_key_raw(keys.load_signing_key(path).public_key()).hex()
        return cls(path, pub)

    def trust_table(self) -> dict[str, Any]:
        return {"operators": {"rig": {"key": self.public_hex, "allow": "*"}}}


def send(
    op: OperatorKey,
    cabinet_key: Path,
    *,
    host: str,
    port: int,
    prefix: str,
    cabinet: str,
    kind: str,
    args: Mapping[str, Any],
    now: float,
) -> tuple[bool, str]:
    """(ok, one line): the cabinet's verified reply to the command, or why there is none."""
    try:
        return asyncio.run(
            asyncio.wait_for(_send(op, cabinet_key, host, port, prefix, cabinet, kind, args, now), REPLY_TIMEOUT_S)
        )
    except TimeoutError:
        return False, f"no reply within {REPLY_TIMEOUT_S:g} s (wall)"
    except OSError as e:
        return False, f"cannot send: {e}"


async def _send(
    op: OperatorKey,
    cabinet_key: Path,
    host: str,
    port: int,
    prefix: str,
    cabinet: str,
    kind: str,
    args: Mapping[str, Any],
    now: float,
) -> tuple[bool, str]:
    import aiomqtt  # deferred: the MQTT client, only for a run that sends commands
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    key = keys.load_signing_key(op.path)
    cab_pub = keys.load_signing_key(cabinet_key).public_key()
    cab_kid = cose.key_id(cab_pub)
    topic = C.command_topic(prefix, cabinet, kind)
    resp = C.reply_topic(prefix, cabinet, kind)
    cid = f"rig-{secrets.token_hex(8)}"
    iat = int(now)
    env = C.sign_command(kind, dict(args), key=key, cid=cid, iat=iat, exp=iat + TTL_S, to=cabinet, topic=topic)
    corr = secrets.token_bytes(16)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = resp
    props.CorrelationData = corr
    async with aiomqtt.Client(
        host, port, protocol=aiomqtt.ProtocolVersion.V5, identifier=f"rig-op-{secrets.token_hex(4)}"
    ) as client:
        await client.subscribe(resp, qos=1)
        await client.publish(topic, env, qos=1, properties=props)
        async for msg in client.messages:
            if bytes(getattr(msg.properties, "CorrelationData", b"") or b"") != corr:
                continue
            try:
                rep = C.open_reply(bytes(msg.payload), topic=resp, keys=lambda kid: cab_pub if kid == cab_kid else None)
            except cose.VerifyError as e:
                return False, f"reply not verified: {e.reason}"
            if rep.ok:
                return True, f"signed {kind} ({cid}) done: {rep.result}"
            return False, f"signed {kind} ({cid}) refused: {rep.reason} {rep.detail or ''}".rstrip()
    return False, "no reply"
