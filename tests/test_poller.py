"""The poller on a real emulated RS-485 line: periods, backoff of a dead device while the
others keep their rate, quality with reasons, one log line per state change, block
splitting on exception 2, bus loss and return, verified writes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest

from agent.clock import WallClock
from agent.config.model import Backoff, Device
from agent.field.image import ProcessImage
from agent.field.poller import BusPoller
from agent.model import Point, Quality
from boards.sim.faults import Fault, FaultKind, FaultTable
from boards.sim.line import RtuLine
from boards.sim.store import RegisterStore
from drivers.modbus.engine import BusEngine
from drivers.profiles.base import DataType, DeviceProfile, Limits, RegisterPoint, Table
from tests.conftest import TEST_PROFILE, TEST_VALUES, wait_until

BAUD = 38400
PERIOD = 0.1

pytestmark = pytest.mark.integration  # real Modbus servers (an emulated RS-485 line on ptys, TCP) in real time


def device(name: str, unit: int, profile: DeviceProfile = TEST_PROFILE, period: float = PERIOD) -> Device:
    points = {
        p.key: Point(f"{name}.{p.key}", unit=p.unit, source=name, stale_after_s=10 * period) for p in profile.points
    }
    return Device(name, "line", unit, profile.name, profile, period, points)


class Rig:
    def __init__(self, tmp_path, devices, stores):
        self.faults = FaultTable()
        self.line = RtuLine(tmp_path / "tty", stores, baudrate=BAUD, faults=self.faults, seed=3)
        self.devices = devices
        self.stores = stores
        self.image = ProcessImage([p for d in devices for p in d.points.values()])
        self.clock = WallClock()

    async def __aenter__(self):
        await self.line.start()
        self.engine = BusEngine.rtu(
            "line", self.line.port, baudrate=BAUD, timeout_ms=50, reconnect_initial_s=0.05, reconnect_max_s=0.2
        )
        self.poller = BusPoller(self.engine, self.devices, self.clock, self._sink, Backoff(0.2, 1.0))
        self.task = asyncio.create_task(self.poller.run())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.engine.close()
        await self.line.stop()

    async def _sink(self, readings, mono):
        self.image.update_many(readings, mono)

    def reading(self, name):
        return self.image.get(name, self.clock.monotonic())[0]


async def test_dead_device_backs_off_and_others_keep_their_rate(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    devs = [device("m1", 1), device("m2", 2), device("dead", 3)]
    stores = {u: RegisterStore(TEST_PROFILE, TEST_VALUES) for u in (1, 2, 3)}
    async with Rig(tmp_path, devs, stores) as rig:
        st = rig.poller.devices
        # the live devices' rate with every device answering, measured in this run (a busy
        # machine slows the emulated line for both phases alike) ...
        await wait_until(lambda: st["m1"].polls > 0, timeout=5)
        m0, t0 = st["m1"].polls, time.monotonic()
        await asyncio.sleep(2.0)
        base = (st["m1"].polls - m0) / (time.monotonic() - t0)
        assert base > 5, base  # 0.1 s polls: ~10/s on a quiet machine
        rig.faults.set(3, Fault(FaultKind.SILENT))
        d0, m1, m2, t1 = st["dead"].polls, st["m1"].polls, st["m2"].polls, time.monotonic()
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - t1
        # ... is kept (>= 90 %) while a silent device backs off
        rates = ((st["m1"].polls - m1) / elapsed, (st["m2"].polls - m2) / elapsed)
        assert min(rates) >= 0.9 * base, (rates, base)
        # backoff 0.2, 0.4, 0.8, 1.0 ...: a handful of attempts in 2 s, not 20
        assert 2 <= st["dead"].polls - d0 <= 6, st["dead"].polls - d0
        r = rig.reading("dead.voltage")
        assert r.quality is Quality.BAD and r.reason == "no response"
        assert rig.reading("m1.voltage").quality is Quality.GOOD
        assert rig.reading("m1.voltage").value == pytest.approx(230.2)
        warnings = [r for r in caplog.records if "not answering" in r.getMessage()]
        assert len(warnings) == 1 and "dead" in warnings[0].getMessage()
        assert rig.poller.snapshot(rig.clock.monotonic())[2]["state"] == "failing"

        rig.faults.clear(3)
        await wait_until(lambda: rig.reading("dead.voltage").quality is Quality.GOOD, timeout=3)
        back = [r for r in caplog.records if "answering again" in r.getMessage()]
        assert len(back) == 1


@pytest.mark.parametrize(
    "kind,reason",
    [
        (FaultKind.CRC, "CRC error"),
        (FaultKind.WRONG_UNIT, "reply from wrong unit id"),
        (FaultKind.GARBAGE, "garbled reply"),
        (FaultKind.SHORT, "short reply"),
    ],
)
async def test_fault_reason_reaches_point_quality(tmp_path, kind, reason):
    devs = [device("m1", 1), device("m2", 2)]
    stores = {u: RegisterStore(TEST_PROFILE, TEST_VALUES) for u in (1, 2)}
    async with Rig(tmp_path, devs, stores) as rig:
        rig.faults.set(2, Fault(kind))
        await wait_until(lambda: rig.reading("m2.temp") is not None and rig.reading("m2.temp").quality is Quality.BAD)
        assert rig.reading("m2.temp").reason.startswith(reason)
        assert rig.reading("m1.temp").quality is Quality.GOOD


async def test_exception_reply_marks_only_that_block(tmp_path):
    devs = [device("m1", 1)]
    stores = {1: RegisterStore(TEST_PROFILE, TEST_VALUES)}
    async with Rig(tmp_path, devs, stores) as rig:
        rig.faults.set(1, Fault(FaultKind.EXCEPTION, exception_code=4))
        await wait_until(lambda: rig.reading("m1.temp") is not None)
        r = rig.reading("m1.temp")
        assert r.quality is Quality.BAD and r.reason == "exception 4 (server device failure)"
        # the device answered: no backoff
        assert rig.poller.devices["m1"].health.state == "ok"


async def test_block_refused_with_exception_2_is_split_per_point(tmp_path, caplog):
    agent_view = DeviceProfile(
        "gapdev",
        (
            RegisterPoint("a", Table.HOLDING, 0, DataType.UINT16),
            RegisterPoint("b", Table.HOLDING, 3, DataType.UINT16),
            RegisterPoint("c", Table.HOLDING, 5, DataType.UINT16),
        ),
        limits=Limits(max_gap=4),
    )
    # the real device does not implement registers 1..2, nor 5
    device_truth = dataclasses.replace(
        agent_view, limits=Limits(forbidden=((Table.HOLDING, 1, 3), (Table.HOLDING, 5, 6)))
    )
    store = RegisterStore(device_truth, {"a": 11, "b": 33})
    async with Rig(tmp_path, [device("g", 1, agent_view)], {1: store}) as rig:
        await wait_until(lambda: rig.reading("g.b") is not None and rig.reading("g.b").quality is Quality.GOOD)
        assert rig.reading("g.a").value == 11 and rig.reading("g.b").value == 33
        c = rig.reading("g.c")
        assert c.quality is Quality.BAD and c.reason.startswith("exception 2")
        st = rig.poller.devices["g"]
        assert len(st.blocks) == 3 and st.split == ["holding 0+6"]
        assert sum("one by one" in r.getMessage() for r in caplog.records) == 1


async def test_bus_lost_and_back(tmp_path, caplog):
    devs = [device("m1", 1), device("m2", 2)]
    stores = {u: RegisterStore(TEST_PROFILE, TEST_VALUES) for u in (1, 2)}
    async with Rig(tmp_path, devs, stores) as rig:
        await wait_until(lambda: rig.reading("m2.temp") is not None)
        rig.line.vanish()
        await wait_until(lambda: rig.reading("m2.temp").quality is Quality.BAD)
        assert "port missing" in rig.reading("m1.voltage").reason
        await asyncio.sleep(0.5)
        assert sum("down" in r.getMessage() for r in caplog.records if r.name == "drivers.modbus") == 1
        await rig.line.restore()
        await wait_until(
            lambda: (
                rig.reading("m1.voltage").quality is Quality.GOOD and rig.reading("m2.temp").quality is Quality.GOOD
            ),
            timeout=5,
        )


async def test_verified_write_through_the_poller(tmp_path):
    stores = {1: RegisterStore(TEST_PROFILE, TEST_VALUES)}
    async with Rig(tmp_path, [device("m1", 1)], stores) as rig:
        await rig.poller.write("m1", "relay1", True)
        await rig.poller.write("m1", "setpoint", 1234)
        assert stores[1].get("relay1") is True and stores[1].get("setpoint") == 1234
        await wait_until(lambda: rig.reading("m1.relay1").value is True and rig.reading("m1.setpoint").value == 1234)
        with pytest.raises(ValueError):
            await rig.poller.write("m1", "voltage", 1.0)


async def test_tcp_device_that_never_answers_does_not_flap_the_bus(caplog):
    from boards.sim.tcp import TcpEndpoint

    caplog.set_level(logging.INFO)
    faults = FaultTable()
    faults.set(1, Fault(FaultKind.SILENT))
    ep = TcpEndpoint({1: RegisterStore(TEST_PROFILE, TEST_VALUES)}, faults=faults)
    host, port = await ep.start()
    engine = BusEngine.tcp("gw", host, port, timeout_ms=50)
    image = ProcessImage(device("m1", 1).points.values())
    clock = WallClock()

    async def sink(readings, mono):
        image.update_many(readings, mono)

    poller = BusPoller(engine, [dataclasses.replace(device("m1", 1), bus="gw")], clock, sink, Backoff(0.05, 0.1))
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.sleep(1.5)  # ~10 timeouts: pymodbus hangs up after every 4th
        assert poller.devices["m1"].polls >= 8
        r = image.get("m1.temp", clock.monotonic())[0]
        assert r is not None
        assert r.quality is Quality.BAD and r.reason == "no response"
        bus_lines = [r.getMessage() for r in caplog.records if r.name == "drivers.modbus"]
        assert bus_lines == [], bus_lines  # no "bus gw down"/"up" flapping
        assert sum("not answering" in r.getMessage() for r in caplog.records) == 1
        faults.clear(1)

        def good_again() -> bool:
            r = image.get("m1.temp", clock.monotonic())[0]
            assert r is not None  # it was read before
            return r.quality is Quality.GOOD

        await wait_until(good_again, timeout=3)
        assert [r.getMessage() for r in caplog.records if r.name == "drivers.modbus"] == [f"bus gw up ({host}:{port})"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.close()
        await ep.stop()
