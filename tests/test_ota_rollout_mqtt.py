"""`cabinet ota rollout` (tools/ota/rollout/session.py) against a real Mosquitto: fake cabinets
publish retained birth messages, verify the signed ota.offer commands they receive with a
Trust built for the operator key, and answer with signed status messages (seal_status)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.wire import commands as C
from agent.wire import cose
from agent.wire.ota_status import seal_status, status_topic
from tests.broker import broker  # noqa: F401
from tools.ota.rollout.plan import Plan
from tools.ota.rollout.session import add_rollout_args, rollout_main
from tools.provision import pki

PREFIX = "city/v1"
DEP = "agent-0.9.0-r1"


class FakeFleet:
    """Cabinets on one MQTT connection: each verifies its offers and reports `outcome`."""

    def __init__(self, tmp_path, port, ids, canaries, outcome, allow=("ota.offer",)):
        self.port, self.outcome = port, outcome
        self.op_path = tmp_path / "op.key"
        op_pub = pki.new_signing_key(self.op_path)
        self.trust = C.Trust([C.Operator("ops", op_pub, frozenset(allow))])
        self.keys = {c: Ed25519PrivateKey.generate() for c in ids}
        self.tags = {c: (["canary"] if c in canaries else []) + ["north"] for c in ids}
        self.replay = {c: C.CommandReplay() for c in ids}
        self.offers: dict[str, list[dict]] = {}
        self.rejected: list[str] = []
        self.keys_file = tmp_path / "cabinet-keys.json"
        self.keys_file.write_text(json.dumps({c: cose.raw_public(k.public_key()).hex() for c, k in self.keys.items()}))

    async def birth(self, client, offline=()):
        for c in self.keys:
            doc = {"online": c not in offline, "version": "0.8.0", "tags": self.tags[c]}
            await client.publish(cose.state_topic(PREFIX, c), json.dumps(doc), qos=1, retain=True)
        await client.publish(cose.state_topic(PREFIX, "JUNK-1"), b"\xff not json", qos=1, retain=True)

    async def status(self, client, cab, state, seq, **kw):
        doc = {
            "cabinet": cab,
            "deployment": DEP,
            "state": state,
            "seq": seq,
            "version": "0.9.0",
            "running": "0.9.0" if state == "success" else "0.8.0",
            "t": time.time(),
            **kw,
        }
        t = status_topic(PREFIX, cab)
        await client.publish(t, seal_status(doc, key=self.keys[cab], topic=t), qos=1, retain=True)

    async def serve(self, client):
        await client.subscribe(f"{PREFIX}/cab/+/cmd/ota.offer", qos=1)
        async for msg in client.messages:
            topic = str(msg.topic)
            cab = topic.split("/")[-3]
            try:
                cmd = C.verify_command(
                    bytes(msg.payload),
                    topic=topic,
                    cabinet=cab,
                    tags=tuple(self.tags[cab]),
                    trust=self.trust,
                    now=time.time(),
                    replay=self.replay[cab],
                )
            except C.CommandError as e:  # as agent.remote.downlink does: a signed refusal
                self.rejected.append(f"{cab}:{e.reason}")
                resp = msg.properties.ResponseTopic
                await client.publish(
                    resp,
                    C.seal_reply(cabinet=cab, cid=e.cid, ok=False, topic=resp, key=self.keys[cab], reason=e.reason),
                    qos=1,
                )
                continue
            self.offers.setdefault(cab, []).append(cmd.args)
            resp = msg.properties.ResponseTopic
            await client.publish(
                resp,
                C.seal_reply(
                    cabinet=cab, cid=cmd.cid, ok=True, topic=resp, key=self.keys[cab], result={"state": "offered"}
                ),
                qos=1,
            )
            await self.status(client, cab, "offered", 1)
            await self.status(client, cab, "downloading", 2, percent=50)
            await self.status(client, cab, "verifying", 3)
            if self.outcome == "success":
                await self.status(client, cab, "success", 4)
            else:
                await self.status(client, cab, "rolled_back", 4, reason="health gate failed")

    async def forged(self, client, cab, other):
        """A status for `cab` signed by a key nobody registered, junk for `other` (retained, so the
        runner sees them when it subscribes): counted and ignored."""
        t = status_topic(PREFIX, cab)
        doc = {"cabinet": cab, "deployment": DEP, "state": "failure", "seq": 99, "reason": "forged"}
        await client.publish(t, seal_status(doc, key=Ed25519PrivateKey.generate(), topic=t), qos=1, retain=True)
        await client.publish(status_topic(PREFIX, other), b"\x00junk", qos=1, retain=True)


def args_for(fleet, port, tmp_path, *extra):
    p = argparse.ArgumentParser()
    add_rollout_args(p)
    return p.parse_args(
        [
            "--target",
            "cabinet-agent-0.9.0.bundle",
            "--version",
            "0.9.0",
            "--deployment",
            DEP,
            "--key",
            str(fleet.op_path),
            "--broker",
            f"127.0.0.1:{port}",
            "--cabinet-keys",
            str(fleet.keys_file),
            "--min-cabinets",
            "2",
            "--cabinet-timeout",
            "20",
            "--poll",
            "0.1",
            "--discover",
            "1",
            "--state",
            str(tmp_path / "rollout.json"),
            *extra,
        ]
    )


IDS = [f"CAB-{i:03d}" for i in range(12)]
CANARIES = ("CAB-000", "CAB-001")


async def rollout(tmp_path, b, outcome, *extra, offline=(), allow=("ota.offer",), before=None):
    fleet = FakeFleet(tmp_path, b.plain_port, IDS, CANARIES, outcome, allow)
    if before is not None:
        before(fleet)
    async with aiomqtt.Client(
        "127.0.0.1", b.plain_port, identifier="fake-fleet", protocol=aiomqtt.ProtocolVersion.V5, timeout=5
    ) as client:
        await fleet.birth(client, offline)
        server = asyncio.create_task(fleet.serve(client))
        await asyncio.sleep(0.2)
        await fleet.forged(client, "CAB-005", "CAB-006")
        out = io.StringIO()
        try:
            rc = await asyncio.wait_for(
                asyncio.to_thread(rollout_main, args_for(fleet, b.plain_port, tmp_path, *extra), out), 60
            )
        finally:
            server.cancel()
    return rc, out.getvalue(), fleet


@pytest.mark.integration  # a real broker
async def test_a_good_release_is_offered_to_every_wave_and_done(tmp_path, broker):
    rc, out, fleet = await rollout(tmp_path, broker, "success", offline=("CAB-011",))
    plan = Plan({c: {"tags": fleet.tags[c]} for c in IDS if c != "CAB-011"})
    assert rc == 0, out
    assert set(fleet.offers) == set(plan.wave_of) and "CAB-011" not in fleet.offers
    assert all(a == [{"deployment": DEP, "target": "cabinet-agent-0.9.0.bundle"}] for a in fleet.offers.values())
    assert fleet.rejected == []
    assert "left out 1 offline cabinet(s): CAB-011" in out
    table = [line.split() for line in out.splitlines() if line.startswith("CAB-") and " wave " not in line]
    assert sorted(r[0] for r in table) == sorted(plan.wave_of)
    assert all(r[3] == "success" and r[4] == "0.9.0" for r in table)
    assert "CAB-000 wave 1: downloading 50%" in out  # one line per status change (not a TTY)
    assert "unknown_kid 1" in out and ("not_cose_sign1 1" in out or "not_cbor 1" in out), out
    saved = json.loads((tmp_path / "rollout.json").read_text())
    assert saved["state"] == "done"
    # resuming a finished rollout prints its table and exits without a broker
    again = io.StringIO()
    a = args_for(fleet, 1, tmp_path)
    assert rollout_main(a, again) == 0 and "CAB-000" in again.getvalue()


@pytest.mark.integration
async def test_a_broken_release_halts_at_the_failure_threshold(tmp_path, broker):
    rc, out, fleet = await rollout(tmp_path, broker, "rolled_back")
    plan = Plan({c: {"tags": fleet.tags[c]} for c in IDS})
    assert rc == 3, out
    assert set(plan.waves[0]) >= set(CANARIES) and any(plan.waves[1:])
    assert set(fleet.offers) == set(plan.waves[0])  # later waves never offered
    assert "halted: failures " in out and "> 10%" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("CAB-") and " wave " not in line]
    assert {r[0]: r[3] for r in rows if r[3] != "pending"} == dict.fromkeys(plan.waves[0], "rolled_back")
    assert all(r[4] == "0.8.0" for r in rows if r[3] == "rolled_back")


@pytest.mark.integration
async def test_unverifiable_statuses_alone_never_finish_a_cabinet(tmp_path, broker):
    """Cabinets whose keys the runner does not know: their statuses are dropped, they time out."""
    fleet = FakeFleet(tmp_path, broker.plain_port, IDS[:2], IDS[:2], "success")
    fleet.keys_file.write_text(
        json.dumps({c: cose.raw_public(Ed25519PrivateKey.generate().public_key()).hex() for c in IDS[:2]})
    )
    async with aiomqtt.Client(
        "127.0.0.1", broker.plain_port, identifier="fake-fleet", protocol=aiomqtt.ProtocolVersion.V5, timeout=5
    ) as client:
        await fleet.birth(client)
        server = asyncio.create_task(fleet.serve(client))
        out = io.StringIO()
        a = args_for(fleet, broker.plain_port, tmp_path, "--cabinet-timeout", "2", "--min-cabinets", "5")
        try:
            rc = await asyncio.wait_for(asyncio.to_thread(rollout_main, a, out), 30)
        finally:
            server.cancel()
    text = out.getvalue()
    assert rc == 3, text
    assert "wave 1 below success threshold" in text and set(fleet.offers) == set(IDS[:2])
    assert "bad_signature" in text or "unknown_kid" in text
    assert text.count("timeout") >= 2


@pytest.mark.integration
async def test_a_refused_offer_fails_at_once(tmp_path, broker):
    """The operator key may not send ota.offer: the cabinets' signed refusals halt wave 1
    without waiting for the cabinet timeout."""
    t0 = time.monotonic()
    rc, out, fleet = await rollout(tmp_path, broker, "success", "--cabinet-timeout", "1h", allow=("ping",))
    assert rc == 3, out
    assert sorted(fleet.rejected) == [f"{c}:kind_not_allowed" for c in CANARIES] and fleet.offers == {}
    assert "offer refused: kind_not_allowed" in out and "halted: failures 2/2" in out
    assert time.monotonic() - t0 < 30


@pytest.mark.integration
async def test_a_saved_rollout_resumes_and_sends_unanswered_offers_again(tmp_path, broker):
    """A state file whose wave 1 was offered but never answered (the tool died after publishing):
    the resumed run offers those cabinets again (fresh command ids) and finishes."""
    from tools.ota.rollout.plan import Rollout

    def saved(fleet):
        plan = Plan({c: {"tags": fleet.tags[c], "version": "0.8.0"} for c in IDS}, waves=[1, 10, 50, 100])
        ro = Rollout(
            plan,
            deployment=DEP,
            target="cabinet-agent-0.9.0.bundle",
            version="0.9.0",
            min_cabinets=2,
            cabinet_timeout_s=20,
        )
        assert ro.offers(time.time()) == plan.waves[0]
        (tmp_path / "rollout.json").write_text(json.dumps(ro.to_dict()))

    rc, out, fleet = await rollout(tmp_path, broker, "success", before=saved)
    assert rc == 0, out
    assert out.startswith(f"resuming {DEP} from ")
    assert set(fleet.offers) == set(IDS) and all(len(v) == 1 for v in fleet.offers.values())


def test_the_progress_line_is_redrawn_on_a_terminal():
    from tools.ota.rollout.plan import Rollout
    from tools.ota.rollout.session import Display

    class Tty(io.StringIO):
        def isatty(self):
            return True

    ro = Rollout(Plan({"A": {"tags": ["canary"]}, "B": {}}), deployment=DEP, target="t", version="1")
    out = Tty()
    d = Display(out)
    ro.offers(0)
    d.change("A", ro)  # no per-cabinet lines on a terminal
    d.progress(ro)
    ro.on_status("A", {"deployment": DEP, "state": "success", "seq": 1}, 1)
    ro.tick(1)
    d.progress(ro)
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2 and "\n" not in text
    wave_b = ro.plan.wave_of["B"] + 1  # empty waves in between are passed at once
    assert "running wave 1/4 (1%): 0+0/1" in text and f"running wave {wave_b}/4 ({ro.plan.pcts[wave_b - 1]}%)" in text


def test_bad_arguments_and_an_unreachable_broker(tmp_path, capsys):
    from tests.broker import free_port

    fleet = FakeFleet(tmp_path, 0, IDS[:2], (), "success")
    bad_fleet = tmp_path / "fleet.json"
    bad_fleet.write_text('{"id": "A"}')
    for extra in (
        ["--waves", "10,5"],
        ["--waves", "1,x"],
        ["--success", "120"],
        ["--fleet", str(bad_fleet)],
        ["--cabinet-timeout", "soon"],
    ):
        assert rollout_main(args_for(fleet, 1, tmp_path, *extra), io.StringIO()) == 2, extra
    a = args_for(fleet, free_port(), tmp_path, "--id", "CAB-000")
    assert rollout_main(a, io.StringIO()) == 1
    assert "MqttError" in capsys.readouterr().err
