"""A flood of VALID commands, faster than the broker queues them for the cabinet
(docs/commands.md, "Floods"): what the broker drops never arrives and is never
answered; what arrives runs at most once; a re-send with the same cid runs it once or
answers `replayed`; the control loop and the uplink carry on."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiomqtt
import pytest

from agent.wire import commands as C
from agent.wire import cose
from agent.wire.replies import open_reply
from tests.broker import Broker
from tests.conftest import wait_until
from tests.test_downlink import CAB, PREFIX, Cabinet
from tools.operator.commands import reply_properties
from tools.provision import pki

pytestmark = pytest.mark.integration

FLOOD = 400


@pytest.fixture
def small_queue_broker(tmp_path: Path):
    # the broker keeps at most 20 QoS 1 messages queued per client beyond 10 in flight
    b = Broker(tmp_path / "mosquitto", tls=False, extra_config="max_queued_messages 20\nmax_inflight_messages 10\n")
    b.start()
    try:
        yield b
    finally:
        b.close()


async def test_a_flood_of_valid_commands_runs_each_at_most_once_and_resends_complete_it(
    small_queue_broker: Broker, tmp_path: Path
) -> None:
    port = small_queue_broker.plain_port
    assert port is not None
    cab = await Cabinet(tmp_path, port).start()
    app = cab.app
    assert app is not None and app.uplink is not None and app.downlink is not None
    key = pki.load_signing_key(cab.op_path)
    cab_pub = pki.load_signing_key(cab.cab_path).public_key()
    kid = cose.key_id(cab_pub)
    topic = C.command_topic(PREFIX, CAB, "status")
    resp = C.reply_topic(PREFIX, CAB, "status")
    replies: dict[str, list[tuple[bool, str | None]]] = {}

    def envelope(cid: str) -> bytes:
        now = int(time.time())
        return C.sign_command("status", {}, key=key, cid=cid, iat=now, exp=now + 300, to=CAB, topic=topic)

    async def listen(c: aiomqtt.Client) -> None:
        async for msg in c.messages:
            rep = open_reply(bytes(msg.payload), topic=str(msg.topic), keys={kid: cab_pub}.get)
            assert rep.cid is not None
            replies.setdefault(rep.cid, []).append((rep.ok, rep.reason))

    cids = [f"flood-{i}-{secrets.token_hex(4)}" for i in range(FLOOD)]
    try:
        steps0 = app.controls.steps
        async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=30) as c:
            await c.subscribe(resp, qos=1)
            listener = asyncio.create_task(listen(c))
            # the flood: as fast as the client can publish
            for cid in cids:
                await c.publish(topic, envelope(cid), qos=1, properties=reply_properties(resp, secrets.token_bytes(8)))
            await asyncio.sleep(5.0)  # let what the broker kept arrive and be answered
            first = {cid: list(r) for cid, r in replies.items()}
            # what arrived ran at most once; what the broker dropped was never answered
            assert all(len(r) == 1 for r in first.values()), [r for r in first.values() if len(r) > 1]
            accepted = {cid for cid, r in first.items() if r[0][0]}
            missing = [cid for cid in cids if cid not in accepted]
            # the operator re-sends what got no (or a `busy`) answer, paced, with the same cids
            for cid in missing:
                await c.publish(topic, envelope(cid), qos=1, properties=reply_properties(resp, secrets.token_bytes(8)))
                await asyncio.sleep(0.01)
            # (a cid answered `busy` in the flood is already in `replies`: wait for its answer to the re-send)
            await wait_until(lambda: all(any(ok for ok, _ in replies.get(cid, [])) for cid in missing), timeout=30)
            listener.cancel()
        # every command ran exactly once in all: accepted once, a re-send of an accepted one is `replayed`
        for cid in cids:
            oks = [ok for ok, _ in replies[cid] if ok]
            assert len(oks) == 1, (cid, replies[cid])
            assert all(reason in ("replayed", "busy") for ok, reason in replies[cid] if not ok), replies[cid]
        assert app.downlink.stats["accepted"] == FLOOD
        # control and the uplink carried on through the flood
        assert app.controls.steps > steps0
        assert app.uplink.state == "connected"
    finally:
        await cab.stop()
