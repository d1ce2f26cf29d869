"""The downlink against a real Mosquitto: the in-process agent on the simulated cabinet
(real time), commands sent with `cabinet cmd send` (in a thread) or published raw;
every reply signed by the cabinet and checked. Overrides change the lighting decision
within one control period and expire on time; a flood of 10,000 junk messages leaves
polling and control at their normal rate; rejections get a signed reply with the reason."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import config as cfg
from agent.clock import ScaledClock
from agent.config.model import Uplink as UplinkSettings
from agent.runtime.app import App, Endpoints, UplinkWiring
from agent.runtime.entry import board_infos
from agent.wire import commands as C
from agent.wire import cose
from boards.sim.cabinet import SimCabinet
from drivers.dio import FilePinsDIO
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.cli.table import main as cli_main
from tools.operator.mqtt import reply_properties
from tools.provision import pki

CAB = "CAB-SIM-0001"
PREFIX = "city/v1"

pytestmark = pytest.mark.integration  # the agent against the simulated cabinet and a real broker


class Cabinet:
    def __init__(self, tmp_path, port):
        self.tmp, self.port = tmp_path, port
        self.op_path, self.viewer_path, self.cab_path = (
            tmp_path / "op.key",
            tmp_path / "viewer.key",
            tmp_path / "cab.key",
        )
        op_pub = pki.new_signing_key(self.op_path)
        viewer_pub = pki.new_signing_key(self.viewer_path)
        self.cab_pub = pki.new_signing_key(self.cab_path)
        text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", "baudrate = 115200", 1)
        text += (
            f'\n[trust]\n[trust.operators.ops]\nkey = "{op_pub.hex()}"\nallow = "*"\n'
            f'[trust.operators.viewer]\nkey = "{viewer_pub.hex()}"\nallow = ["ping", "status"]\n'
        )
        self.config = cfg.loads(text, str(cfg.EXAMPLE), board_infos())
        self.clock = ScaledClock(1.0)
        self.sim = SimCabinet(self.config, tmp_path / "sim", self.clock)
        self.app: App | None = None

    async def start(self):
        ep = await self.sim.start()
        settings = UplinkSettings(
            broker="127.0.0.1", port=self.port, tls=False, batch_max_age_s=5.0, backoff_initial_s=0.2, backoff_max_s=1.0
        )
        no_keys: dict[bytes, Any] = {}  # no ingest key trusted: acks are not verified here
        wiring = UplinkWiring(settings, pki.load_signing_key(self.cab_path), no_keys.get)
        self.app = App(
            self.config,
            data_dir=self.tmp / "agent",
            clock=self.clock,
            uplink=wiring,
            endpoints=Endpoints(
                buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep["gps"], dio=FilePinsDIO(ep["pins"])
            ),
        )
        await self.app.start()
        uplink = self.app.uplink
        assert uplink is not None
        await wait_until(lambda: uplink.state == "connected", timeout=10)
        await asyncio.sleep(0.3)  # the command subscription follows the connect
        return self

    async def stop(self):
        if self.app is not None:
            await self.app.stop()
        await self.sim.stop()

    async def send(self, capsys, *argv, key=None):
        """`cabinet cmd send` in a thread -> (exit code, [reply dicts])."""
        args = [
            "cmd",
            "send",
            *argv,
            "--key",
            str(key or self.op_path),
            "--broker",
            f"127.0.0.1:{self.port}",
            "--cabinet-key",
            self.cab_pub.hex(),
            "--timeout",
            "5",
        ]
        capsys.readouterr()
        rc = await asyncio.to_thread(cli_main, args)
        out = capsys.readouterr().out
        return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def polls(self) -> int:
        assert self.app is not None, "start() first"
        return sum(d["polls"] for b in self.app.status()["buses"] for d in b["devices"])


@pytest.fixture
async def cab(broker, tmp_path):
    c = Cabinet(tmp_path, broker.plain_port)
    try:
        yield await c.start()
    finally:
        await c.stop()


def seg(c, name="seg1"):
    return c.app.controls.status()["lighting"]["segments"][name]


async def test_override_within_one_control_period_and_expires_on_time(cab, capsys):
    await wait_until(lambda: cab.app.controls.steps >= 2, timeout=10)
    before = seg(cab)["on"]
    rc, [rep] = await cab.send(
        capsys, "--id", CAB, "light.override", "--off" if before else "--on", "--segments", "seg1", "--for", "4s"
    )
    sent = time.monotonic()
    assert rc == 0 and rep["ok"] and rep["cabinet"] == CAB, rep
    assert rep["result"]["override"]["source"] == "cmd:ops"
    await wait_until(lambda: seg(cab)["on"] is (not before), timeout=1.0)  # the handler steps the loop at once
    assert seg(cab)["reason"].startswith("override"), seg(cab)
    # on expiry the program decides again (a lamp switched off may then sit out its restrike cool-down)
    await wait_until(lambda: not seg(cab)["reason"].startswith("override"), timeout=6.0)
    expired_after = time.monotonic() - sent
    assert 3.0 <= expired_after <= 5.5, expired_after
    assert cab.app.downlink.stats["accepted"] == 1


async def test_ping_status_and_rejections_get_signed_replies(cab, capsys):
    rc, [rep] = await cab.send(capsys, "--id", CAB, "ping", key=cab.viewer_path)
    assert rc == 0 and rep["result"]["pong"] is True
    rc, [rep] = await cab.send(capsys, "--id", CAB, "status")
    assert rc == 0 and rep["result"]["cabinet"] == CAB and rep["result"]["points"] > 10
    assert rep["result"]["config_sha256"] == cab.config.sha256
    # the viewer may not override
    rc, [rep] = await cab.send(capsys, "--id", CAB, "light.override", "--on", key=cab.viewer_path)
    assert rc == 1 and rep["reason"] == "kind_not_allowed"
    # an unknown (wrong) key
    stranger = cab.tmp / "stranger.key"
    pki.new_signing_key(stranger)
    rc, [rep] = await cab.send(capsys, "--id", CAB, "ping", key=stranger)
    assert rc == 1 and rep["reason"] == "unknown_kid"
    # wrong target: a group this cabinet is not in; the right group works
    rc, [rep] = await cab.send(capsys, "--id", CAB, "--group", "south", "ping")
    assert rc == 1 and rep["reason"] == "wrong_target"
    rc, [rep] = await cab.send(capsys, "--id", CAB, "--group", "demo", "ping")
    assert rc == 0 and rep["ok"]
    # replayed: the same command id twice
    rc, [rep] = await cab.send(capsys, "--id", CAB, "ping", "--cid", "once-only")
    assert rc == 0
    rc, [rep] = await cab.send(capsys, "--id", CAB, "ping", "--cid", "once-only")
    assert rc == 1 and rep["reason"] == "replayed" and rep["cid"] == "once-only"
    # bad arguments, and an alarm that is not active
    rc, [rep] = await cab.send(capsys, "--id", CAB, "light.override", "--level", "150")
    assert rc == 1 and rep["reason"] == "bad_args"
    rc, [rep] = await cab.send(capsys, "--id", CAB, "alarm.ack", "--alarm", "no.such.alarm")
    assert rc == 1 and rep["reason"] == "failed" and "not active" in rep["detail"]
    rc, [rep] = await cab.send(capsys, "--id", CAB, "log.level", "--log-level", "warning")
    assert rc == 0 and rep["result"]["level"] == "warning"
    # expired (signed long ago), published raw; the reply is verified here
    op = pki.load_signing_key(cab.op_path)
    now = int(time.time())
    env = C.sign_command(
        "ping",
        {},
        key=op,
        cid="old-1",
        iat=now - 7200,
        exp=now - 3600,
        to=CAB,
        topic=C.command_topic(PREFIX, CAB, "ping"),
    )
    rep = await raw_request(cab, "ping", env)
    assert (rep.ok, rep.reason, rep.cid) == (False, "expired", "old-1")
    # the replay memory is on disk
    stored = json.loads((cab.tmp / "agent" / "state" / "commands.json").read_text())
    assert "once-only" in stored["ids"]
    # a response topic outside the cabinet's reply topic: no reply at all
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "somewhere/else"
    async with aiomqtt.Client("127.0.0.1", cab.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe("somewhere/#")
        await c.publish(C.command_topic(PREFIX, CAB, "ping"), env, qos=1, properties=props)
        await wait_until(lambda: cab.app.downlink.stats["by_reason"].get("bad_reply_topic") == 1, timeout=5)


async def raw_request(cab, kind, env, timeout=5.0):
    corr = secrets.token_bytes(8)
    props = Properties(PacketTypes.PUBLISH)
    reply_topic = C.reply_topic(PREFIX, CAB, kind)
    props.ResponseTopic = reply_topic
    props.CorrelationData = corr
    pub = pki.load_signing_key(cab.cab_path).public_key()
    async with aiomqtt.Client("127.0.0.1", cab.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(reply_topic, qos=1)
        await c.publish(C.command_topic(PREFIX, CAB, kind), env, qos=1, properties=props)
        async with asyncio.timeout(timeout):
            async for msg in c.messages:
                if bytes(getattr(msg.properties, "CorrelationData", b"")) == corr:
                    return C.open_reply(bytes(msg.payload), topic=reply_topic, keys={cose.key_id(pub): pub}.get)


async def test_a_flood_of_junk_does_not_slow_polling_or_control(cab, capsys, caplog):
    await wait_until(lambda: cab.polls() > 0 and cab.app.controls.steps > 1, timeout=10)
    await asyncio.sleep(2.0)
    # the normal rate, measured before the flood
    p0, s0, t0 = cab.polls(), cab.app.controls.steps, time.monotonic()
    await asyncio.sleep(3.0)
    base_polls = (cab.polls() - p0) / (time.monotonic() - t0)
    base_steps = (cab.app.controls.steps - s0) / (time.monotonic() - t0)
    assert base_polls > 0.5 and base_steps > 0.5

    stranger = pki.load_signing_key(cab.op_path.with_name("viewer.key"))  # a known key, wrongly signed below
    topic = C.command_topic(PREFIX, CAB, "light.override")
    junk = []
    for i in range(10_000):
        if i % 3 == 0:
            junk.append(secrets.token_bytes(40 + i % 50))  # garbage
        elif i % 3 == 1:  # well-formed COSE, signature over another topic (unsigned for this one)
            junk.append(
                C.sign_command(
                    "light.override",
                    {"on": False},
                    key=stranger,
                    cid=f"j{i}",
                    iat=int(time.time()),
                    exp=int(time.time()) + 60,
                    to=CAB,
                    topic=C.command_topic(PREFIX, "CAB-OTHER", "light.override"),
                )
            )
        else:  # COSE with a zero signature
            junk.append(re.sub(b".{64}$", bytes(64), junk[-1], flags=re.S))
    caplog.set_level(logging.WARNING, logger="agent.downlink")
    p1, s1, t1 = cab.polls(), cab.app.controls.steps, time.monotonic()
    # with a response topic, as a real (if hostile) sender: a request without one is dropped unanswered
    props = reply_properties(C.reply_topic(PREFIX, CAB, "light.override"), b"junk")
    async with aiomqtt.Client("127.0.0.1", cab.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=30) as c:
        for i, data in enumerate(junk):
            await c.publish(topic, data, qos=0 if i % 10 else 1, properties=props)
    await wait_until(lambda: cab.app.downlink.stats["received"] >= 9_900, timeout=30)
    # the agent stays responsive during and right after the flood
    rc, [rep] = await cab.send(capsys, "--id", CAB, "ping")
    assert rc == 0 and rep["ok"]
    elapsed = time.monotonic() - t1
    polls_rate = (cab.polls() - p1) / elapsed
    steps_rate = (cab.app.controls.steps - s1) / elapsed
    assert polls_rate >= 0.8 * base_polls, (polls_rate, base_polls)
    assert steps_rate >= 0.8 * base_steps, (steps_rate, base_steps)
    st = cab.app.downlink.stats
    assert st["rejected"] >= 9_900 and st["accepted"] == 1
    assert st["replies_dropped"] > 9_000  # rejection replies are rate limited
    lines = [r for r in caplog.records if r.name == "agent.downlink"]
    assert len(lines) <= 10, [r.getMessage() for r in lines]
