"""The point catalogue end to end against a real Mosquitto: a cabinet (outbox + uplink with a
catalogue) and the ingest service. The catalogue is sent on connect and acknowledged, then
batches go as format v2; an ingest that lacks the catalogue (a fresh database) asks for it,
the cabinet sends it and its refused batches again: every reading stored once, none lost."""

from __future__ import annotations

import asyncio

import pytest

from agent.aio import cancel_all
from agent.clock import WallClock
from agent.config.model import Uplink as UplinkSettings
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.uplink.client import Uplink
from agent.wire import cose
from agent.wire.batch_v2 import is_v2
from agent.wire.catalogue import PointInfo, Site, build, catalogue_id, encode
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.ingest.service import IngestService
from tools.ingest.store import Store
from tools.provision import pki

CAB = "CAB-CAT"
POINTS = ["meter.current", "meter.voltage"]

pytestmark = pytest.mark.integration  # a real broker


def key(tmp_path, name):
    pki.new_signing_key(tmp_path / name)
    return pki.load_signing_key(tmp_path / name)


def readings(n, start=0):
    return [
        Reading(POINTS[i % 2], 1_800_000_000 + i, 230.0 + (i % 50) / 10, Quality.GOOD) for i in range(start, start + n)
    ] + [Reading("event.door", 1_800_000_000 + start, "opened", Quality.GOOD)]  # not in the catalogue


class Cloud:
    """An ingest service on its own store (the cabinet's key registered)."""

    def __init__(self, path, port, cab_key, ingest_key):
        self.store = Store(str(path))
        self.store.add_key(CAB, cose.key_id(cab_key.public_key()), pki.public_key_raw(cab_key.public_key()), 0.0)
        self.service = IngestService(
            self.store, broker="127.0.0.1", port=port, ack_key=ingest_key, clock=WallClock(), group="cat"
        )
        self.task: asyncio.Task | None = None
        self.envelopes: list[bytes] = []

    async def start(self):
        self.task = asyncio.create_task(self.service.run())
        await asyncio.wait_for(self.service.ready.wait(), 10)

    async def stop(self):
        self.service.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)
        self.store.close()

    def rows(self):
        return self.store.readings(CAB)

    def bodies(self):
        return [cose.payload_of(bytes(e)) for (e,) in self.store._read("SELECT envelope FROM batches ORDER BY seq")]


async def test_catalogue_acked_then_v2_and_a_fresh_ingest_asks_for_it(broker, tmp_path):
    cab_key, ingest_key = key(tmp_path, "cab.key"), key(tmp_path, "ingest.key")
    clock = WallClock()
    outbox = Outbox(tmp_path / "outbox.db", clock=clock)
    await outbox.start()
    ik = ingest_key.public_key()
    settings = UplinkSettings(
        broker="127.0.0.1",
        port=broker.plain_port,
        tls=False,
        batch_max_age_s=0.2,
        batch_max_readings=100,
        ack_timeout_s=2.0,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
    )
    uplink = Uplink(
        settings,
        cabinet_id=CAB,
        outbox=outbox,
        signing_key=cab_key,
        ingest_keys={cose.key_id(ik): ik}.get,
        clock=clock,
        birth=dict,
    )
    cat = build(CAB, "sim", 5, Site(48.1, 11.6, "Europe/Berlin"), [PointInfo(p, "V", "float", 1) for p in POINTS])
    uplink.set_catalogue(cat, tmp_path / "catalogues")
    assert (tmp_path / "catalogues" / f"{catalogue_id(encode(cat)).hex()}.cbor").read_bytes() == encode(cat)
    first = Cloud(tmp_path / "first.db", broker.plain_port, cab_key, ingest_key)
    await first.start()
    task = asyncio.create_task(uplink.run())
    second = None
    try:
        # 1. the catalogue goes on connect and is acknowledged; batches after that are v2
        await wait_until(lambda: uplink.stats["catalogues_acked"] == 1, timeout=10)
        assert first.store.stats()["catalogues"] == 1
        await outbox.put(readings(300))
        uplink.wake()
        await wait_until(lambda: len(first.rows()) == 301, timeout=20)
        assert all(is_v2(b) for b in first.bodies())
        assert [h[2] for h in first.store.catalogue_history(CAB)] == [5]
        # 2. the ingest goes away; batches wait in the outbox (v2, naming the acked catalogue)
        await first.stop()
        await outbox.put(readings(400, start=1000))
        uplink.wake()
        await wait_until(lambda: outbox.stats()["rows_sealed"] == 401, timeout=10)
        # 3. a fresh ingest without the catalogue: it asks, the cabinet sends it and the batches again
        second = Cloud(tmp_path / "second.db", broker.plain_port, cab_key, ingest_key)
        await second.start()
        await wait_until(lambda: len(second.rows()) == 401, timeout=30)
        await wait_until(lambda: outbox.stats()["rows_pending"] + outbox.stats()["rows_sealed"] == 0, timeout=10)
        st = second.store.stats()
        assert st["catalogue_missing"] >= 1 and st["catalogues"] == 1 and st["rejected_total"] == 0
        assert uplink.stats["catalogue_requests"] >= 1 and uplink.stats["catalogues_acked"] >= 2
        got = sorted((r[1], r[2], r[4]) for r in second.rows())
        want = sorted((r.point, r.t, r.value if r.point != "event.door" else None) for r in readings(400, 1000))
        assert got == want  # each reading once
        assert all(is_v2(b) for b in second.bodies())  # sealed under the catalogue the first ingest acked
    finally:
        await cancel_all([task])
        if second is not None:
            await second.stop()
        await outbox.close()


async def test_cabinet_run_sends_its_catalogue_and_then_v2_batches(broker, tmp_path):
    """The real program (`cabinet run` on the simulated example cabinet with its local ingest):
    the catalogue built from the config reaches the ingest, later batches are format v2."""
    from agent.wire.catalogue import decode
    from tests.test_e2e_uplink import cabinet, stop

    data = tmp_path / "data"
    proc = await cabinet("run", "--broker", f"127.0.0.1:{broker.plain_port}", "--with-ingest", data_dir=data)
    db = data / "ingest" / "ingest.db"
    try:
        await wait_until(lambda: db.exists(), timeout=20)

        def v2_rows() -> int:
            store = Store(str(db))
            try:
                envs = store._read("SELECT envelope, readings FROM batches WHERE state = 'done'")
                return sum(int(n) for e, n in envs if is_v2(cose.payload_of(bytes(e))))
            finally:
                store.close()

        await wait_until(lambda: v2_rows() > 20, timeout=60, interval=1.0)
        store = Store(str(db))
        try:
            [(body,)] = store._read("SELECT body FROM catalogues")
            cat = decode(bytes(body))
            assert cat.site.timezone and len(cat.points) > 100
            assert "meter_main.voltage_l1" in cat.names()
            assert store.stats()["rejected_total"] == 0
        finally:
            store.close()
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err.decode()[-2000:]
