"""The bus engine against real pymodbus servers: an emulated RS-485 line on ptys and a
Modbus TCP endpoint on a free loopback port, with every fault kind injected."""

from __future__ import annotations

import asyncio

import pytest

from boards.sim.faults import Fault, FaultKind, FaultTable
from boards.sim.line import RtuLine
from boards.sim.store import RegisterStore
from boards.sim.tcp import TcpEndpoint
from drivers.modbus import codec
from drivers.modbus.engine import BusEngine, ModbusFault
from tests.conftest import TEST_PROFILE, TEST_VALUES, wait_until

BAUD = 19200

pytestmark = pytest.mark.integration  # real Modbus servers (an emulated RS-485 line on ptys, TCP) in real time


@pytest.fixture
async def rtu(tmp_path):
    stores = {
        1: RegisterStore(TEST_PROFILE, TEST_VALUES),
        2: RegisterStore(TEST_PROFILE, {**TEST_VALUES, "temp": -3.0}),
    }
    faults = FaultTable()
    line = RtuLine(tmp_path / "ttyRS485", stores, baudrate=BAUD, faults=faults, seed=1)
    await line.start()
    engine = BusEngine.rtu(
        "line1", line.port, baudrate=BAUD, timeout_ms=120, reconnect_initial_s=0.05, reconnect_max_s=0.2
    )
    yield engine, line, stores, faults
    await engine.close()
    await line.stop()


@pytest.fixture
async def tcp():
    stores = {1: RegisterStore(TEST_PROFILE, TEST_VALUES), 7: RegisterStore(TEST_PROFILE, TEST_VALUES)}
    faults = FaultTable()
    ep = TcpEndpoint(stores, faults=faults, seed=1)
    host, port = await ep.start()
    engine = BusEngine.tcp("tcp1", host, port, timeout_ms=150, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    yield engine, ep, stores, faults
    await engine.close()
    await ep.stop()


def decode(key, regs):
    return codec.decode(TEST_PROFILE.point(key), regs)


async def test_rtu_reads_two_units_and_decodes(rtu):
    engine, _, _, _ = rtu
    regs = await engine.read(1, "input", 0, 3)
    assert decode("voltage", regs[:2]) == pytest.approx(230.2) and decode("temp", regs[2:]) == 21.5
    assert decode("temp", (await engine.read(2, "input", 2, 1))) == -3.0
    assert await engine.read(1, "coil", 0, 2) == [False, False]
    assert engine.state == "up" and engine.stats["transactions"] == 3 and engine.stats["failures"] == 0


async def test_rtu_writes_are_verified(rtu):
    engine, _, stores, _ = rtu
    await engine.write(1, "coil", 0, [True, True])
    assert stores[1].get("relay1") is True and stores[1].get("relay2") is True
    await engine.write(1, "holding", 0, [42])
    await engine.write(1, "holding", 0, [5, 9])
    assert (stores[1].get("setpoint"), stores[1].get("mode")) == (5, 9)
    # a device that keeps another value than written (stuck output) -> verify fault
    stores[1].on_write = lambda key, value: stores[1].set("setpoint", 0)
    with pytest.raises(ModbusFault) as e:
        await engine.write(1, "holding", 0, [77])
    assert e.value.kind == "verify" and "read back [0]" in e.value.reason
    with pytest.raises(ValueError):
        await engine.write(1, "input", 0, [1])


@pytest.mark.parametrize(
    "fault,reason",
    [
        (Fault(FaultKind.SILENT), "no response"),
        (Fault(FaultKind.CRC), "CRC error"),
        (Fault(FaultKind.WRONG_UNIT), "reply from wrong unit id 2"),
        (Fault(FaultKind.SHORT), "short reply"),
        (Fault(FaultKind.GARBAGE), "garbled reply"),
        (Fault(FaultKind.EXCEPTION, exception_code=2), "exception 2 (illegal data address)"),
        (Fault(FaultKind.EXCEPTION, exception_code=6), "exception 6 (server device busy)"),
        (Fault(FaultKind.SLOW, delay_ms=400), "no response"),
    ],
)
async def test_rtu_fault_reasons(rtu, fault, reason):
    engine, line, _, faults = rtu
    faults.set(1, fault)
    with pytest.raises(ModbusFault) as e:
        await engine.read(1, "input", 0, 3)
    assert e.value.reason.startswith(reason)
    assert e.value.device_level == (fault.kind is not FaultKind.EXCEPTION)
    if fault.kind is FaultKind.SLOW:  # a late reply occupies the half-duplex line until it is out
        await asyncio.sleep(fault.delay_ms / 1000)
    # the other device on the line is not affected, and the line recovers at once
    assert decode("temp", await engine.read(2, "input", 2, 1)) == -3.0
    faults.clear(1)
    assert decode("temp", await engine.read(1, "input", 2, 1)) == 21.5
    assert line.stats["collisions"] == 0


async def test_rtu_slow_reply_within_timeout_is_fine(rtu):
    engine, _, _, faults = rtu
    faults.set(1, Fault(FaultKind.SLOW, delay_ms=50))
    assert len(await engine.read(1, "input", 0, 3)) == 3


async def test_rtu_unknown_unit_is_silent(rtu):
    engine, line, _, _ = rtu
    with pytest.raises(ModbusFault) as e:
        await engine.read(99, "holding", 0, 1)
    assert e.value.reason == "no response" and line.stats["silent_unknown_unit"] == 1


async def test_rtu_concurrent_callers_never_collide(rtu):
    engine, line, _, _ = rtu
    results = await asyncio.gather(*(engine.read(1 + i % 2, "input", 0, 3) for i in range(20)))
    assert len(results) == 20
    assert line.stats["collisions"] == 0 and line.stats["requests"] == 20


async def test_rtu_port_vanishes_and_comes_back(rtu):
    engine, line, _, _ = rtu
    await engine.read(1, "input", 0, 1)
    line.vanish()
    with pytest.raises(ModbusFault) as e:
        await engine.read(1, "input", 0, 1)
    assert e.value.bus_level and "port missing" in e.value.reason
    assert engine.state == "down" and "port missing" in engine.reason
    with pytest.raises(ModbusFault) as e:  # fails fast while the port is gone
        await engine.read(1, "input", 0, 1)
    assert e.value.bus_level
    await line.restore()

    async def read_ok() -> bool:
        try:
            await engine.read(1, "input", 2, 1)
            return True
        except ModbusFault:
            return False

    for _ in range(100):
        if await read_ok():
            break
        await asyncio.sleep(0.05)
    assert engine.state == "up" and engine.stats["reconnects"] >= 1


async def test_tcp_reads_writes_and_unit_ids(tcp):
    engine, _, stores, _ = tcp
    assert decode("temp", await engine.read(7, "input", 2, 1)) == 21.5
    await engine.write(1, "coil", 1, [True])
    assert stores[1].get("relay2") is True and stores[7].get("relay2") is False


@pytest.mark.parametrize(
    "fault,reason",
    [
        (Fault(FaultKind.SILENT), "no response"),
        (Fault(FaultKind.WRONG_UNIT), "reply from wrong unit id 2"),
        (Fault(FaultKind.EXCEPTION, exception_code=4), "exception 4"),
        (Fault(FaultKind.SHORT), "short reply"),
    ],
)
async def test_tcp_fault_reasons(tcp, fault, reason):
    engine, _, _, faults = tcp
    faults.set(1, fault)
    with pytest.raises(ModbusFault) as e:
        await engine.read(1, "input", 0, 3)
    assert e.value.reason.startswith(reason), e.value.reason
    faults.clear(1)
    await wait_until(lambda: True)
    for _ in range(40):  # a spoiled connection may be re-opened by the engine
        try:
            assert len(await engine.read(1, "input", 0, 3)) == 3
            break
        except ModbusFault:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("TCP device did not recover")


async def test_tcp_garbage_is_reported_and_recovered(tcp):
    engine, _, _, faults = tcp
    faults.set(1, Fault(FaultKind.GARBAGE))
    with pytest.raises(ModbusFault) as e:
        await engine.read(1, "input", 0, 3)
    assert e.value.device_level and e.value.reason
    faults.clear(1)
    for _ in range(40):
        try:
            await engine.read(1, "input", 0, 3)
            break
        except ModbusFault:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("no recovery after garbage")


async def test_tcp_connection_refused_and_back(tcp):
    engine, ep, _, _ = tcp
    await engine.read(1, "input", 0, 1)
    ep.refuse(True)
    reasons = set()
    for _ in range(3):
        with pytest.raises(ModbusFault) as e:
            await engine.read(1, "input", 0, 1)
        reasons.add(e.value.reason)
        await asyncio.sleep(0.06)
    assert any("connection refused" in r for r in reasons), reasons
    assert engine.state == "down"
    ep.refuse(False)
    for _ in range(60):
        try:
            await engine.read(1, "input", 0, 1)
            break
        except ModbusFault:
            await asyncio.sleep(0.05)
    assert engine.state == "up"


async def test_rs485_mode_unavailable_on_a_pty_is_reported_and_the_line_still_works(rtu, caplog):
    _, line, _, _ = rtu
    engine = BusEngine.rtu("line485", line.port, baudrate=BAUD, timeout_ms=120, rs485=True)
    try:
        assert decode("temp", await engine.read(1, "input", 2, 1)) == 21.5
        assert any("RS-485 mode not available" in r.getMessage() for r in caplog.records)
        assert engine.rs485 is False
    finally:
        await engine.close()
