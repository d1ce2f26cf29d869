"""The signed uplink end to end against a real Mosquitto: outbox -> sealed batches ->
MQTT v5 -> ingest (verify, dedupe, store) -> signed ack -> outbox delete. Broker stopped,
restarted and killed; forged and foreign acknowledgements ignored."""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt
import pytest

from agent.aio import cancel_all
from agent.clock import WallClock
from agent.config.model import Uplink as UplinkSettings
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.uplink.client import Uplink
from agent.wire import cose
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.ingest.service import IngestService
from tools.ingest.store import Store
from tools.provision import pki

CAB = "CAB-T1"

pytestmark = pytest.mark.integration  # a real broker


class Rig:
    """An outbox + uplink (the cabinet) and an ingest, on one test broker."""

    def __init__(self, tmp_path, port, **uplink_kw):
        self.tmp = tmp_path
        self.port = port
        self.clock = WallClock()
        self.cab_key = pki.load_signing_key(self._key("cab.key"))
        self.ingest_key = pki.load_signing_key(self._key("ingest.key"))
        self.store = Store(str(tmp_path / "ingest.db"))
        pub = pki.public_key_raw(self.cab_key.public_key())
        self.store.add_key(CAB, cose.key_id(self.cab_key.public_key()), pub, time.time())
        self.settings = UplinkSettings(
            broker="127.0.0.1",
            port=port,
            tls=False,
            batch_max_age_s=0.2,
            batch_max_readings=500,
            ack_timeout_s=3.0,
            backoff_initial_s=0.2,
            backoff_max_s=1.0,
            **uplink_kw,
        )
        self.tasks: list[asyncio.Task] = []

    def _key(self, name):
        path = self.tmp / name
        if not path.exists():
            pki.new_signing_key(path)
        return path

    async def start_cabinet(self):
        self.outbox = Outbox(self.tmp / "outbox.db", clock=self.clock)
        await self.outbox.start()
        ik = self.ingest_key.public_key()
        self.uplink = Uplink(
            self.settings,
            cabinet_id=CAB,
            outbox=self.outbox,
            signing_key=self.cab_key,
            ingest_keys={cose.key_id(ik): ik}.get,
            clock=self.clock,
            birth=lambda: {"boot": self.outbox.boot_epoch, "version": "test"},
        )
        self.tasks.append(asyncio.create_task(self.uplink.run()))

    async def start_ingest(self):
        self.ingest = IngestService(
            self.store, broker="127.0.0.1", port=self.port, ack_key=self.ingest_key, clock=self.clock, group="t"
        )
        self.tasks.append(asyncio.create_task(self.ingest.run()))
        await asyncio.wait_for(self.ingest.ready.wait(), 10)

    async def stop(self):
        await cancel_all(self.tasks)
        await self.outbox.close()
        self.store.close()

    def stored(self) -> int:
        return self.store.stats()["readings"]


def readings(n, start=0, point="meter.voltage"):
    return [Reading(point, 1_800_000_000 + i, 230.0 + (i % 50) / 10, Quality.GOOD) for i in range(start, start + n)]


async def test_readings_arrive_once_verified_and_leave_the_outbox(broker, tmp_path):
    rig = Rig(tmp_path, broker.plain_port)
    await rig.start_ingest()
    await rig.start_cabinet()
    try:
        await rig.outbox.put(readings(1200))
        rig.uplink.wake()
        await wait_until(lambda: rig.stored() == 1200, timeout=20)
        await wait_until(
            lambda: rig.outbox.stats()["rows_pending"] + rig.outbox.stats()["rows_sealed"] == 0, timeout=10
        )
        await wait_until(lambda: rig.uplink.stats["batches_acked"] >= 3, timeout=5)  # counted after the delete
        st = rig.store.stats()
        assert st["duplicates"] == 0 and st["rejected_total"] == 0 and st["batches_ok"] >= 3
        rows = rig.store.readings(CAB, "meter.voltage")
        assert [r[2] for r in rows] == [1_800_000_000 + i for i in range(1200)]
        assert rows[7][4] == pytest.approx(230.7)
        assert rig.uplink.stats["batches_acked"] >= 3 and rig.uplink.state == "connected"
    finally:
        await rig.stop()


async def test_ingest_down_then_up_nothing_lost_nothing_twice(broker, tmp_path):
    rig = Rig(tmp_path, broker.plain_port)
    await rig.start_cabinet()
    try:
        await rig.outbox.put(readings(700))
        await wait_until(lambda: rig.uplink.stats["batches_sent"] >= 2, timeout=10)
        # nobody acknowledges: the batches stay, and are sent again after ack_timeout
        await asyncio.sleep(3.5)
        assert rig.outbox.stats()["batches_unacked"] >= 2
        await rig.start_ingest()
        await rig.outbox.put(readings(300, start=700))
        await wait_until(lambda: rig.stored() == 1000, timeout=20)
        await wait_until(lambda: rig.outbox.stats()["batches_unacked"] == 0, timeout=10)
        assert rig.uplink.stats["batches_resent"] >= 1
    finally:
        await rig.stop()
    assert len({r[2] for r in Store(str(tmp_path / "ingest.db")).readings(CAB)}) == 1000


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_broker_stopped_or_killed_and_restarted(broker, tmp_path, how):
    rig = Rig(tmp_path, broker.plain_port)
    await rig.start_ingest()
    await rig.start_cabinet()
    try:
        await rig.outbox.put(readings(500))
        await wait_until(lambda: rig.stored() == 500, timeout=20)
        broker.stop() if how == "stop" else broker.kill()
        await rig.outbox.put(readings(800, start=500))  # buffered while the broker is gone
        await wait_until(lambda: rig.uplink.state == "disconnected", timeout=10)
        await asyncio.sleep(0.5)
        broker.restart()
        await wait_until(lambda: rig.stored() == 1300, timeout=30)
        await wait_until(lambda: rig.outbox.stats()["batches_unacked"] == 0, timeout=10)
        times = [r[2] for r in rig.store.readings(CAB)]
        assert len(times) == len(set(times)) == 1300
        assert rig.uplink.stats["reconnects"] >= 1
    finally:
        await rig.stop()


async def test_forged_and_foreign_acks_delete_nothing(broker, tmp_path):
    rig = Rig(tmp_path, broker.plain_port)
    await rig.start_cabinet()
    try:
        await rig.outbox.put(readings(100))
        await wait_until(lambda: rig.uplink.stats["batches_sent"] >= 1, timeout=10)
        seqs = [s.seq for s in rig.outbox.unacked()]
        topic = cose.ack_topic("city/v1", CAB)
        rogue = pki.load_signing_key(rig._key("rogue.key"))
        forged = cose.seal_ack(seqs, key=rogue, kid=cose.key_id(rogue.public_key()), cabinet=CAB, topic=topic)
        # a genuine ack for another cabinet, replayed onto this cabinet's ack topic
        other_topic = cose.seal_ack(
            seqs,
            key=rig.ingest_key,
            kid=cose.key_id(rig.ingest_key.public_key()),
            cabinet="CAB-OTHER",
            topic=cose.ack_topic("city/v1", "CAB-OTHER"),
        )
        async with aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5) as c:
            for payload in (forged, other_topic, b"garbage", json.dumps({"seq": seqs}).encode()):
                await c.publish(topic, payload, qos=1)
        await wait_until(lambda: rig.uplink.stats["acks_rejected"] == 4, timeout=10)
        assert [s.seq for s in rig.outbox.unacked()] == seqs
        assert set(rig.uplink.snapshot()["ack_errors"]) >= {"unknown_kid", "bad_signature", "not_cbor"}
    finally:
        await rig.stop()


async def test_birth_and_last_will_are_retained(broker, tmp_path):
    rig = Rig(tmp_path, broker.plain_port)
    await rig.start_cabinet()
    state_topic = f"city/v1/cab/{CAB}/state"
    try:
        await wait_until(lambda: rig.uplink.state == "connected", timeout=10)
        async with aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5) as c:
            await c.subscribe(state_topic, qos=1)
            msg = await asyncio.wait_for(anext(aiter(c.messages)), 5)
            birth = json.loads(msg.payload)
            assert birth["online"] is True and birth["boot"] == rig.outbox.boot_epoch
    finally:
        await rig.stop()
