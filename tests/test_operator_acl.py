"""Operator tools against a real Mosquitto with the fleet ACL (tools/mosquitto/acl.example):

- the example ACL's operator role is enough for `cabinet ota rollout` end to end (discovery
  from the retained births, the signed offer, the cabinet's signed reply and OTA status) and
  for `cabinet cmd send`, while the cabinet role still works beside it;
- an operator certificate without rights is refused at the first publish (PUBACK 0x87 "Not
  authorized"): `cabinet cmd send`, `cabinet config push` and `cabinet ota rollout` stop at
  once with one line naming the topic and exit 1, instead of waiting for replies that cannot
  come (the rollout used to run into its cabinet timeout and end "no terminal status").

The cabinets are small fakes, one MQTT connection each with their own certificate (so the ACL
sees them as cabinets), that verify the operator's envelopes as the agent does and answer with
signed replies and statuses.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.wire import commands as C
from agent.wire import cose
from agent.wire.ota_status import seal_status, status_topic
from tests.broker import Broker, example_acl
from tools.provision import pki

pytestmark = pytest.mark.integration  # a real broker and the tools as processes
PREFIX = "city/v1"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def acl_broker(tmp_path: Path):
    b = Broker(
        tmp_path / "mosquitto",
        tls=True,
        plain=False,
        acl=example_acl(PREFIX),
        clientid_from_cert=True,
        service_listener=True,
    )
    try:
        b.start()
        yield b
    finally:
        b.close()


class FakeCabinet:
    """One cabinet on its own connection (CN = its id): birth, verified commands, replies, statuses."""

    def __init__(self, b: Broker, cab: str, op_pub: bytes) -> None:
        self.b, self.cab = b, cab
        self.key = Ed25519PrivateKey.generate()
        self.trust = C.Trust([C.Operator("ops", op_pub, None)])
        self.replay = C.CommandReplay()
        self.seen: list[str] = []
        self.ready = asyncio.Event()

    @property
    def public_hex(self) -> str:
        return cose.raw_public(self.key.public_key()).hex()

    async def run(self) -> None:
        async with self.b.client(self.cab) as c:
            await c.publish(
                cose.state_topic(PREFIX, self.cab), json.dumps({"online": True, "tags": []}), qos=1, retain=True
            )
            await c.subscribe(f"{PREFIX}/cab/{self.cab}/cmd/#", qos=1)
            self.ready.set()
            async for msg in c.messages:
                topic = str(msg.topic)
                if topic.endswith("/resp"):
                    continue
                try:
                    cmd = C.verify_command(
                        bytes(msg.payload),
                        topic=topic,
                        cabinet=self.cab,
                        tags=(),
                        trust=self.trust,
                        now=time.time(),
                        replay=self.replay,
                    )
                except C.CommandError as e:
                    self.seen.append(f"rejected:{e.reason}")
                    continue
                self.seen.append(cmd.kind)
                resp = msg.properties.ResponseTopic
                reply = C.seal_reply(
                    cabinet=self.cab,
                    cid=cmd.cid,
                    ok=True,
                    topic=resp,
                    key=self.key,
                    result={"pong": True},
                    t=time.time(),
                )
                await c.publish(resp, reply, qos=1, properties=msg.properties)
                if cmd.kind == "ota.offer":
                    for seq, state in enumerate(("offered", "verifying", "success"), 1):
                        doc = {
                            "cabinet": self.cab,
                            "deployment": cmd.args["deployment"],
                            "state": state,
                            "seq": seq,
                            "version": "0.9.0",
                            "running": "0.9.0",
                            "t": time.time(),
                        }
                        t = status_topic(PREFIX, self.cab)
                        await c.publish(t, seal_status(doc, key=self.key, topic=t), qos=1, retain=True)


class Operator:
    """The operator's key and a client certificate with CN `cn` from the broker's CA."""

    def __init__(self, b: Broker, tmp: Path, cn: str) -> None:
        self.b = b
        self.key = tmp / f"{cn}.key"
        self.pub = pki.new_signing_key(self.key)
        self.cert, self.tls_key = b.client_cert(cn)

    def broker_args(self) -> list[str]:
        return [
            "--key",
            str(self.key),
            "--broker",
            f"127.0.0.1:{self.b.service_port}",
            "--ca",
            str(self.b.ca_path),
            "--cert",
            str(self.cert),
            "--tls-key",
            str(self.tls_key),
        ]

    async def run(self, *argv: str, timeout: float = 60) -> tuple[int, str, str, float]:
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.cli",
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode(), time.monotonic() - t0


async def start(cabs: list[FakeCabinet]) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(c.run()) for c in cabs]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in cabs)), 10)
    return tasks


async def stop(tasks: list[asyncio.Task]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def keys_file(tmp: Path, cabs: list[FakeCabinet]) -> str:
    p = tmp / "cabinet-keys.json"
    p.write_text(json.dumps({c.cab: c.public_hex for c in cabs}))
    return str(p)


async def test_the_example_acls_operator_role_carries_a_rollout_and_a_command(acl_broker, tmp_path):
    op = Operator(acl_broker, tmp_path, "operator")
    cabs = [FakeCabinet(acl_broker, f"CAB-A{i}", op.pub) for i in range(2)]
    tasks = await start(cabs)
    try:
        rc, out, err, _ = await op.run(
            "ota", "rollout", "--target", "cabinet-agent-0.9.0.bundle", "--version", "0.9.0",
            "--waves", "100", "--min-cabinets", "1", "--cabinet-timeout", "30", "--poll", "0.2",
            "--discover", "1.5", "--cabinet-keys", keys_file(tmp_path, cabs), *op.broker_args(),
        )  # fmt: skip
        assert rc == 0, out + err
        assert "deployment cabinet-agent-0.9.0: 2 cabinet(s)" in out, out  # found by their births
        rows = [line.split() for line in out.splitlines() if line.startswith("CAB-A")]
        assert sorted((r[0], r[3]) for r in rows if len(r) > 3 and r[1].isdigit()) == [
            ("CAB-A0", "success"),
            ("CAB-A1", "success"),
        ], out
        rc, out, err, _ = await op.run(
            "cmd", "send", "ping", "--id", "CAB-A0", "--cabinet-key", cabs[0].public_hex, *op.broker_args()
        )
        assert rc == 0, out + err
        rep = json.loads(out.splitlines()[-1])
        assert rep["ok"] and rep["cabinet"] == "CAB-A0" and rep["result"] == {"pong": True}
        assert cabs[0].seen == ["ota.offer", "ping"] and cabs[1].seen == ["ota.offer"]
    finally:
        await stop(tasks)


async def test_an_operator_without_rights_is_told_at_once(acl_broker, tmp_path):
    op = Operator(acl_broker, tmp_path, "someone")  # a valid certificate, but no role in the ACL
    cabs = [FakeCabinet(acl_broker, "CAB-B0", op.pub)]
    tasks = await start(cabs)
    config = tmp_path / "cabinet.toml"
    config.write_text('[cabinet]\nid = "CAB-B0"\n')
    try:
        runs = {
            "ota rollout": await op.run(
                "ota",
                "rollout",
                "--target",
                "cabinet-agent-0.9.0.bundle",
                "--version",
                "0.9.0",
                "--id",
                "CAB-B0",
                "--cabinet-timeout",
                "60",
                "--cabinet-keys",
                keys_file(tmp_path, cabs),
                *op.broker_args(),
            ),
            "cmd send": await op.run(
                "cmd",
                "send",
                "ping",
                "--id",
                "CAB-B0",
                "--cabinet-key",
                cabs[0].public_hex,
                "--timeout",
                "30",
                *op.broker_args(),
            ),
            "config push": await op.run(
                "config",
                "push",
                str(config),
                "--id",
                "CAB-B0",
                "--version",
                "2",
                "--no-check",
                "--cabinet-key",
                cabs[0].public_hex,
                "--timeout",
                "30",
                *op.broker_args(),
            ),
        }
    finally:
        await stop(tasks)
    for name, (rc, out, err, took) in runs.items():
        lines = err.strip().splitlines()
        assert rc == 1, (name, out, err)
        assert len(lines) == 1 and lines[0].startswith(f"cabinet {name}: the broker refused to publish"), (name, err)
        assert "city/v1/cab/CAB-B0/cmd/" in lines[0] and "Not authorized (reason code 0x87)" in lines[0], err
        assert "Traceback" not in err
        assert took < 15, (name, took)  # not the 30 s reply timeout, nor the 60 s cabinet timeout
    assert cabs[0].seen == []  # the broker dropped every command
