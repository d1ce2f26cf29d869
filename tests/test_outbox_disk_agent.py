"""A full disk with the whole agent around the outbox (issue 13): the data dir on a small
tmpfs (tests/test_outbox_disk.py: small_disk, fill) filled by a filler file.

* The agent on the simulated cabinet (tests/sim_rig.py, accelerated time): the pollers and
  the process image never wait on the disk, no point goes stale, no task dies, the outbox
  keeps committing in the room of its reserve; delete the filler and it takes its reserve
  and planned cap back. (Evictions and drops on a full disk: tests/test_outbox_disk.py.)
* The uplink against a real Mosquitto and ingest: readings buffered while the ingest is
  away, the disk filled, then the ingest appears: delivery resumes on the full disk, and
  after the filler is deleted everything drains; what the ingest stored is exactly what
  was put less what the outbox counted as evicted or dropped.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.uplink.client import Uplink
from agent.wire import cose
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tests.sim_rig import Rig, rig_config
from tests.test_outbox_disk import fill, small_disk
from tests.test_uplink import CAB
from tests.test_uplink import Rig as UplinkRig

pytestmark = pytest.mark.integration  # mounts a tmpfs; the agent in accelerated time; a real broker


def polled(app) -> dict[str, dict]:
    """The process image's field points (buses, GPS, inputs), by name."""
    mono, own = app.clock.monotonic(), ("agent.", "lighting.", "climate.")
    return {p["name"]: p for p in app.image.snapshot(mono) if not p["name"].startswith(own)}


async def test_the_agent_on_a_full_disk_keeps_its_points_fresh_and_recovers(tmp_path):
    with small_disk(tmp_path / "rig" / "agent", "8m") as disk:
        # a small queue: the old outbox, whose commits failed on the full disk, filled it in seconds and
        # then held every poller in put(): points went stale
        config = rig_config(extra="\n[outbox]\nqueue_max = 200\n")
        rig = Rig(config, "2026-11-22T12:00:00+00:00", 60.0, tmp_path / "rig")
        await rig.start()
        try:
            app = rig.app
            assert app is not None
            await rig.until(rig.wall() + 120)  # two simulated minutes: every point has a value
            fresh = {n for n, p in polled(app).items() if p["quality"] == "good"}
            assert len(fresh) >= 20
            reserve0 = app.outbox.stats()["reserve_bytes"]
            filler = fill(disk)
            updates, committed = app.image.updates, app.outbox.stats()["committed"]
            oldest = dict.fromkeys(fresh, 0.0)
            limit = {p.name: p.stale_after_s + 30.0 for p in app.image.points()}  # + 0.5 s real at 60x

            def watch() -> None:  # the oldest each point got, sampled every 50 ms (3 simulated s)
                for name, p in polled(app).items():
                    if name in oldest and p["age_s"] is not None:
                        oldest[name] = max(oldest[name], p["age_s"])

            await rig.until(rig.wall() + 300, watch=watch)  # five simulated minutes on the full disk
            # a poller held by the disk leaves its points minutes old (the old outbox: all of them)
            stale = {n: age for n, age in oldest.items() if age > limit[n]}
            assert stale == {}, f"points went stale on the full disk: {stale}"
            assert app.image.updates - updates > 300 and app.restarts == {}
            st = app.outbox.stats()  # the reserve gave the store room: it kept committing, nothing dropped
            assert st["disk_full"] and st["reserve_bytes"] < reserve0 and st["committed"] > committed + 100
            assert st["dropped_rows"] == {"alarm": 0, "event": 0, "telemetry": 0} and not st["writes_failing"]
            filler.unlink()  # space returns: the outbox goes back to its planned cap and commits as before
            await wait_until(lambda: not app.outbox.stats()["disk_full"], timeout=15)
            committed = app.outbox.stats()["committed"]
            await wait_until(lambda: app.outbox.stats()["committed"] > committed + 50, timeout=15)
            st = app.outbox.stats()
            assert not st["writes_failing"] and st["reserve_bytes"] > 0 and st["cap_bytes"] == st["disk_cap_bytes"]
        finally:
            await asyncio.wait_for(rig.stop(), 30)


class DiskRig(UplinkRig):
    """tests/test_uplink.py's cabinet and ingest, with the cabinet's outbox on a small disk."""

    def __init__(self, tmp_path, port, disk):
        super().__init__(tmp_path, port)
        self.disk = disk

    async def start_cabinet(self):
        self.outbox = Outbox(self.disk / "outbox.db", clock=self.clock, event_interval_s=1.0)
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


def meter(start: int, n: int = 500) -> list[Reading]:
    return [Reading(f"dev.p{i % 20}", 1_800_000_000 + i, 230.0 + i % 50, Quality.GOOD) for i in range(start, start + n)]


async def test_delivery_resumes_on_a_full_disk_and_drains_when_space_returns(broker, tmp_path):
    with small_disk(tmp_path / "disk", "8m") as disk:
        rig = DiskRig(tmp_path, broker.plain_port, disk)
        await rig.start_cabinet()  # no ingest yet: batches are sent, nobody acknowledges them
        try:
            n = 0
            for _ in range(40):
                await asyncio.wait_for(rig.outbox.put(meter(n)), 5)
                n += 500
            await asyncio.wait_for(rig.outbox.flush(), 20)  # 20,000 readings stored, about 1 MB
            filler = fill(disk)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # the full disk: the producer never waits
                await asyncio.wait_for(rig.outbox.put(meter(n)), 2)
                n += 500
                await asyncio.sleep(0.02)
            await asyncio.wait_for(rig.outbox.flush(), 20)
            assert rig.outbox.stats()["disk_full"]
            await rig.start_ingest()  # the campaign: here the uplink died in seal(); now delivery resumes
            await wait_until(lambda: rig.store.stats()["readings"] > 5000, timeout=30)
            assert not any(t.done() for t in rig.tasks)
            filler.unlink()
            await rig.outbox.put(meter(n))
            n += 500
            rig.uplink.wake()
            await wait_until(lambda: rig.outbox.stats()["rows_pending"] + rig.outbox.stats()["rows_sealed"] == 0, 30)
            st = rig.outbox.stats()
            lost = st["evicted_rows"]["telemetry"] + st["dropped_rows"]["telemetry"]
            assert lost > 0 and not st["disk_full"]
            # nothing lost but what was counted (a batch evicted after it reached the ingest, before its
            # ack, is both stored and counted), nothing twice
            await wait_until(
                lambda: len([r for r in rig.store.readings(CAB) if r[1].startswith("dev.")]) >= n - lost, 30
            )
            times = [r[2] for r in rig.store.readings(CAB) if r[1].startswith("dev.")]
            assert len(times) == len(set(times)) <= n and rig.store.stats()["rejected_total"] == 0
            assert rig.uplink.state == "connected" and not any(t.done() for t in rig.tasks)
        finally:
            await asyncio.wait_for(rig.stop(), 30)
