"""The simulated RS-485 line: real ptys, a real pymodbus serial client on the symlink."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import serial
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient

from boards.sim.faults import Fault, FaultKind, FaultTable
from boards.sim.line import RtuLine
from boards.sim.rtu_frames import t35, wire_time, with_crc
from boards.sim.store import RegisterStore
from drivers.profiles.base import DataType, DeviceProfile, RegisterPoint, Table

BAUD = 9600
TIMEOUT = 0.3  # client reply timeout for the "no usable answer" cases

PROFILE = DeviceProfile(
    "linedev",
    (
        RegisterPoint("relay", Table.COIL, 0, DataType.BOOL, writable=True),
        RegisterPoint("setpoint", Table.HOLDING, 0, DataType.FLOAT32, writable=True),
        RegisterPoint("level", Table.HOLDING, 2, DataType.UINT16, writable=True),
        RegisterPoint("last", Table.HOLDING, 124, DataType.UINT16),
    ),
)


async def wait_for(cond, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.002)


@pytest.fixture
async def rig(tmp_path):
    stores = {
        1: RegisterStore(PROFILE, {"setpoint": 1.5, "last": 111}),
        2: RegisterStore(PROFILE, {"setpoint": 2.5, "last": 222}),
    }
    faults = FaultTable()
    line = RtuLine(tmp_path / "ttyRS485", stores, baudrate=BAUD, faults=faults)
    await line.start()
    clients = []

    async def client(timeout: float = TIMEOUT, **kw) -> AsyncModbusSerialClient:
        c = AsyncModbusSerialClient(
            line.port,
            framer=FramerType.RTU,
            baudrate=kw.pop("baudrate", BAUD),
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            **kw,
        )
        clients.append(c)
        assert await c.connect()
        return c

    yield line, stores, faults, client
    for c in clients:
        c.close()
    await line.stop()
    assert not os.path.lexists(line.port)


async def gap(line: RtuLine) -> None:
    """The master's inter-frame silence after a reply."""
    await asyncio.sleep(line.t35)


@pytest.mark.integration  # the emulated line on real ptys, in real time
async def test_read_write_two_devices(rig):
    line, stores, _, client = rig
    c = await client()
    writes = []
    stores[2].on_write = lambda k, v: writes.append((k, v))
    rr = await c.read_holding_registers(0, count=2, device_id=1)
    assert c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32) == 1.5
    await gap(line)
    rr = await c.read_holding_registers(0, count=2, device_id=2)
    assert c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32) == 2.5
    await gap(line)
    regs = c.convert_to_registers(20.75, c.DATATYPE.FLOAT32)
    assert not (await c.write_registers(0, regs, device_id=2)).isError()
    await gap(line)
    assert not (await c.write_coil(0, True, device_id=2)).isError()
    await gap(line)
    assert (await c.read_coils(0, count=1, device_id=2)).bits[0] is True
    await gap(line)
    rr = await c.read_holding_registers(124, count=1, device_id=1)
    assert rr.registers == [111]
    await gap(line)
    rr = await c.read_holding_registers(125, count=1, device_id=1)  # outside the span
    assert rr.isError() and rr.exception_code == 2
    await gap(line)
    rr = await c.read_coils(0, count=2, device_id=1)  # one coil past the span (exact check)
    assert rr.isError() and rr.exception_code == 2
    assert writes == [("setpoint", 20.75), ("relay", True)]
    assert stores[2].get("setpoint") == 20.75 and stores[1].get("setpoint") == 1.5
    assert line.stats["requests"] == 8 and line.stats["replies"] == 8
    assert line.stats["exceptions"] == 2 and line.stats["collisions"] == 0


@pytest.mark.integration
async def test_unknown_unit_stays_silent(rig):
    line, _, _, client = rig
    c = await client()
    t0 = time.monotonic()
    with pytest.raises(ModbusException):
        await c.read_holding_registers(0, count=2, device_id=9)
    assert time.monotonic() - t0 >= TIMEOUT
    assert line.stats["silent_unknown_unit"] == 1 and line.stats["replies"] == 0
    rr = await c.read_holding_registers(0, count=2, device_id=1)  # the line works on
    assert not rr.isError()


@pytest.mark.integration
async def test_bad_crc_and_broadcast(rig):
    line, stores, _, _ = rig
    with serial.Serial(line.port, baudrate=BAUD, timeout=0) as ser:
        bad = bytearray(with_crc(bytes([1, 3, 0, 0, 0, 2])))
        bad[-1] ^= 0xFF
        ser.write(bytes(bad))
        await wait_for(lambda: line.stats["crc_errors_in_requests"] == 1)
        await asyncio.sleep(line.t35 + wire_time(8, BAUD))
        ser.write(with_crc(bytes([0, 6, 0, 2, 0, 42])))  # broadcast: write level=42 everywhere
        await wait_for(lambda: stores[1].get("level") == 42 and stores[2].get("level") == 42)
        assert line.stats["broadcasts"] == 1
        await asyncio.sleep(line.turnaround + wire_time(8, BAUD) + 0.02)  # when a reply would be out
        assert ser.read(100) == b"" and line.stats["replies"] == 0


@pytest.mark.integration
@pytest.mark.parametrize("kind", [FaultKind.GARBAGE, FaultKind.CRC, FaultKind.WRONG_UNIT, FaultKind.SHORT])
async def test_spoiled_replies_time_out(rig, kind):
    line, _, faults, client = rig
    received = []

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(data)
        return data

    c = await client(trace_packet=trace)
    faults.set(1, Fault(kind))
    with pytest.raises(ModbusException):
        await c.read_holding_registers(0, count=2, device_id=1)
    sent = line.transactions[-1].reply
    assert sent is not None and line.stats["replies"] == 1 and line.stats["faults_applied"] == 1
    assert b"".join(received) == sent
    genuine = with_crc(bytes([1, 3, 4, 0x3F, 0xC0, 0, 0]))
    if kind is FaultKind.CRC:
        assert sent[:-2] == genuine[:-2] and sent[-2:] != genuine[-2:]
    elif kind is FaultKind.WRONG_UNIT:
        assert sent[0] == 2 and sent[1:-2] == genuine[1:-2] and sent == with_crc(sent[:-2])
    elif kind is FaultKind.SHORT:
        assert genuine.startswith(sent) and len(sent) < len(genuine)
    else:
        assert len(sent) == len(genuine) and sent != genuine
    faults.clear(1)
    await gap(line)
    assert not (await c.read_holding_registers(0, count=2, device_id=1)).isError()


@pytest.mark.integration
async def test_silent_exception_slow_and_every(rig):
    line, stores, faults, client = rig
    c = await client(timeout=0.4)
    faults.set(1, Fault(FaultKind.SILENT))
    with pytest.raises(ModbusException):
        await c.write_register(2, 5, device_id=1)
    assert stores[1].get("level") == 0  # the request never reached the device
    assert line.stats["replies"] == 0

    faults.set(1, Fault(FaultKind.EXCEPTION, exception_code=6))
    rr = await c.read_holding_registers(0, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 6
    await gap(line)

    faults.set(1, Fault(FaultKind.SLOW, delay_ms=150))
    t0 = time.monotonic()
    rr = await c.read_holding_registers(0, count=2, device_id=1)
    elapsed = time.monotonic() - t0
    nominal = wire_time(8, BAUD) + line.turnaround + wire_time(9, BAUD)
    assert c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32) == 1.5
    assert nominal + 0.150 <= elapsed < nominal + 0.150 + 0.1
    await gap(line)

    faults.set(2, Fault(FaultKind.EXCEPTION, exception_code=4, every=2))
    results = []
    for _ in range(4):
        rr = await c.read_holding_registers(0, count=2, device_id=2)
        results.append(rr.isError())
        await gap(line)
    assert results == [False, True, False, True]
    assert line.stats["faults_applied"] == 1 + 1 + 1 + 2


@pytest.mark.integration
@pytest.mark.parametrize("count", [2, 125])
async def test_wire_timing(rig, count):
    line, _, _, client = rig
    c = await client(timeout=2.0)
    expected = wire_time(8, BAUD) + max(t35(BAUD), 0.002) + wire_time(5 + 2 * count, BAUD)
    for _ in range(2):
        t0 = time.monotonic()
        rr = await c.read_holding_registers(0, count=count, device_id=1)
        elapsed = time.monotonic() - t0
        assert len(rr.registers) == count
        tx = line.transactions[-1]
        assert tx.written_at - tx.request_start >= expected  # never early
        assert tx.written_at - tx.reply_end < 0.05  # and on time (generous: busy test boxes)
        assert expected <= elapsed < 2 * expected
        await gap(line)


@pytest.mark.integration
async def test_collision_back_to_back(rig):
    line, _, _, _ = rig
    f1 = with_crc(bytes([1, 3, 0, 0, 0, 2]))
    f2 = with_crc(bytes([2, 3, 0, 0, 0, 2]))
    with serial.Serial(line.port, baudrate=BAUD, timeout=0) as ser:
        ser.write(f1 + f2)  # no silence between the two requests
        await wait_for(lambda: line.stats["replies"] == 1)
        assert line.stats["collisions"] == 1
        assert ser.read(100) == with_crc(bytes([1, 3, 4, 0x3F, 0xC0, 0, 0]))


@pytest.mark.integration
async def test_collision_without_t35_after_reply(tmp_path):
    """At 1200 baud t3.5 is 32 ms: a master that answers the reply at once collides."""
    line = RtuLine(tmp_path / "slow", {1: RegisterStore(PROFILE)}, baudrate=1200)
    await line.start()
    try:
        f1 = with_crc(bytes([1, 3, 0, 2, 0, 1]))
        with serial.Serial(line.port, baudrate=1200, timeout=2) as ser:
            ser.write(f1)
            assert len(await asyncio.to_thread(ser.read, 7)) == 7
            ser.write(f1)  # immediately: inside t3.5 after the reply
            await wait_for(lambda: line.stats["collisions"] == 1)
            await asyncio.sleep(wire_time(8, 1200) + line.t35)  # the collided frame + t3.5
            ser.write(f1)  # after the silence: answered
            assert len(await asyncio.to_thread(ser.read, 7)) == 7
        assert line.stats["replies"] == 2
    finally:
        await line.stop()


@pytest.mark.integration
async def test_wrong_baud_is_garbage(rig):
    line, _, _, client = rig
    c = await client(baudrate=19200)
    with pytest.raises(ModbusException):
        await c.read_holding_registers(0, count=2, device_id=1)
    assert line.stats["baud_mismatch"] == 1 and line.stats["replies"] == 0


@pytest.mark.integration
async def test_vanish_and_restore(rig):
    line, _, _, client = rig
    c = await client(timeout=0.5)
    assert not (await c.read_holding_registers(0, count=2, device_id=1)).isError()
    line.vanish()
    assert not os.path.lexists(line.port)
    with pytest.raises(ModbusException):
        await c.read_holding_registers(0, count=2, device_id=1)
    c.close()
    c2 = AsyncModbusSerialClient(
        line.port, framer=FramerType.RTU, baudrate=BAUD, timeout=0.5, retries=0, reconnect_delay=0
    )
    assert not await c2.connect()
    c2.close()
    await line.restore()
    assert os.path.islink(line.port)
    assert await c.connect()
    rr = await c.read_holding_registers(0, count=2, device_id=1)
    assert c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32) == 1.5


@pytest.mark.integration
async def test_unsupported_function_code_framed_by_silence(rig):
    """FC 0x41 has no known length: the frame ends by t3.5 of silence and the device
    answers exception 1 (pymodbus alone would stay silent and choke on the bytes)."""
    line, _, _, client = rig
    with serial.Serial(line.port, baudrate=BAUD, timeout=0) as ser:
        ser.write(with_crc(bytes([1, 0x41, 1, 2])))
        await wait_for(lambda: line.stats["replies"] == 1)
        assert ser.read(100) == with_crc(bytes([1, 0xC1, 1]))
    await gap(line)
    c = await client()
    assert not (await c.read_holding_registers(0, count=2, device_id=1)).isError()


def test_fault_table_every_restarts_when_set_again():
    from boards.sim.faults import FaultCounter

    table = FaultTable()
    counter = FaultCounter(table)
    assert counter.due(1) is None
    table.set(1, Fault(FaultKind.SILENT, every=3))
    assert [counter.due(1) is not None for _ in range(6)] == [False, False, True, False, False, True]
    counter.due(1)
    table.set(1, Fault(FaultKind.SILENT, every=3))  # counting starts again
    assert [counter.due(1) is not None for _ in range(3)] == [False, False, True]
    table.clear()
    assert counter.due(1) is None and table.get(1) is None
    with pytest.raises(ValueError):
        Fault(FaultKind.SLOW, every=0)


@pytest.mark.integration
async def test_pymodbus_client_without_interframe_gap_collides(tmp_path):
    """pymodbus sends the next queued request as soon as a reply is in: without the
    master keeping t3.5 of silence (32 ms at 1200 baud) that request collides."""
    line = RtuLine(tmp_path / "busy", {1: RegisterStore(PROFILE), 2: RegisterStore(PROFILE)}, baudrate=1200)
    await line.start()
    c = AsyncModbusSerialClient(
        line.port, framer=FramerType.RTU, baudrate=1200, timeout=0.4, retries=0, reconnect_delay=0
    )
    try:
        assert await c.connect()
        first, second = await asyncio.gather(
            c.read_holding_registers(2, count=1, device_id=1),
            c.read_holding_registers(2, count=1, device_id=2),
            return_exceptions=True,
        )
        assert not isinstance(first, BaseException) and not first.isError()
        assert isinstance(second, ModbusException)
        assert line.stats["collisions"] == 1 and line.stats["replies"] == 1
    finally:
        c.close()
        await line.stop()
