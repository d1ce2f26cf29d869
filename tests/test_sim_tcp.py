"""The simulated Modbus TCP endpoint: real sockets on free loopback ports."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusTcpClient

from boards.sim.faults import Fault, FaultKind, FaultTable
from boards.sim.store import RegisterStore
from boards.sim.tcp import TcpEndpoint
from drivers.profiles.base import DataType, DeviceProfile, RegisterPoint, Table

TIMEOUT = 0.3

pytestmark = pytest.mark.integration  # real Modbus TCP servers on loopback ports, in real time

PROFILE = DeviceProfile(
    "tcpdev",
    (
        RegisterPoint("relay", Table.COIL, 0, DataType.BOOL, writable=True),
        RegisterPoint("power", Table.INPUT, 0, DataType.FLOAT32),
        RegisterPoint("limit", Table.HOLDING, 0, DataType.UINT16, writable=True),
        RegisterPoint("limit2", Table.HOLDING, 9, DataType.UINT16, writable=True),
    ),
)


@pytest.fixture
async def rig():
    stores = {
        1: RegisterStore(PROFILE, {"power": 100.5, "limit": 11}),
        2: RegisterStore(PROFILE, {"power": 200.5, "limit": 22}),
    }
    faults = FaultTable()
    ep = TcpEndpoint(stores, faults=faults)
    host, port = await ep.start()
    clients = []

    async def client(timeout: float = TIMEOUT, expect: bool = True, **kw) -> AsyncModbusTcpClient:
        c = AsyncModbusTcpClient(
            host, port=port, framer=FramerType.SOCKET, timeout=timeout, retries=0, reconnect_delay=0, **kw
        )
        clients.append(c)
        assert await c.connect() is expect
        return c

    yield ep, stores, faults, client
    for c in clients:
        c.close()
    await ep.stop()


async def test_read_write_two_units(rig):
    ep, stores, _, client = rig
    c = await client()
    assert ep.port != 0
    for unit, power in ((1, 100.5), (2, 200.5)):
        rr = await c.read_input_registers(0, count=2, device_id=unit)
        assert c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32) == power
    seen = []
    stores[2].on_write = lambda k, v: seen.append((k, v))
    assert not (await c.write_registers(0, [33], device_id=2)).isError()
    assert not (await c.write_coil(0, True, device_id=2)).isError()
    assert seen == [("limit", 33), ("relay", True)]
    rr = await c.read_holding_registers(0, count=10, device_id=2)
    assert rr.registers == [33] + [0] * 8 + [0]
    rr = await c.read_holding_registers(0, count=10, device_id=1)
    assert rr.registers[0] == 11
    rr = await c.read_holding_registers(5, count=6, device_id=1)
    assert rr.isError() and rr.exception_code == 2
    assert ep.stats["requests"] == 7 and ep.stats["replies"] == 7 and ep.stats["exceptions"] == 1


async def test_several_connections_at_once(rig):
    ep, _, faults, client = rig
    faults.set(1, Fault(FaultKind.SLOW, delay_ms=200))
    a, b = await client(timeout=1), await client(timeout=1)
    t0 = time.monotonic()
    ra, rb = await asyncio.gather(
        a.read_input_registers(0, count=2, device_id=1), b.read_input_registers(0, count=2, device_id=1)
    )
    elapsed = time.monotonic() - t0
    assert not ra.isError() and not rb.isError()
    assert 0.2 <= elapsed < 0.39  # served in parallel, not one after the other
    assert ep.stats["connections"] == 2


@pytest.mark.parametrize(
    "kind", [FaultKind.SILENT, FaultKind.GARBAGE, FaultKind.CRC, FaultKind.WRONG_UNIT, FaultKind.SHORT]
)
async def test_faults_without_usable_reply(rig, kind):
    ep, _, faults, client = rig
    received = []

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(data)
        return data

    c = await client(trace_packet=trace)
    faults.set(1, Fault(kind))
    try:
        rr = await c.read_input_registers(0, count=2, device_id=1)
        outcome = "error reply" if rr.isError() else "ok"  # garbage may decode as an error
    except ModbusException:
        outcome = "no reply"
    assert outcome == "no reply" if kind is not FaultKind.GARBAGE else outcome != "ok"
    assert ep.stats["faults_applied"] == 1
    got = b"".join(received)
    if kind is FaultKind.SILENT:
        assert got == b"" and ep.stats["replies"] == 0
    else:
        assert ep.stats["replies"] == 1 and got
    if kind is FaultKind.CRC:
        assert struct.unpack_from(">H", got, 4)[0] == len(got) - 6 + 2
    if kind is FaultKind.WRONG_UNIT:
        assert got[6] == 2
    if kind is FaultKind.SHORT:
        assert len(got) == (7 + 1 + 1 + 4) // 2
    faults.clear()
    c2 = await client()
    assert not (await c2.read_input_registers(0, count=2, device_id=1)).isError()


async def test_exception_and_slow(rig):
    _, _, faults, client = rig
    c = await client(timeout=1)
    faults.set(2, Fault(FaultKind.EXCEPTION, exception_code=6))
    rr = await c.read_input_registers(0, count=2, device_id=2)
    assert rr.isError() and rr.exception_code == 6
    faults.set(2, Fault(FaultKind.SLOW, delay_ms=120))
    t0 = time.monotonic()
    rr = await c.read_input_registers(0, count=2, device_id=2)
    assert not rr.isError() and 0.12 <= time.monotonic() - t0 < 0.3


async def test_unknown_unit_silent_or_gateway():
    ep = TcpEndpoint({1: RegisterStore(PROFILE)}, unknown_unit="gateway")
    host, port = await ep.start()
    quiet = TcpEndpoint({1: RegisterStore(PROFILE)})
    qhost, qport = await quiet.start()
    c = AsyncModbusTcpClient(host, port=port, timeout=TIMEOUT, retries=0, reconnect_delay=0)
    q = AsyncModbusTcpClient(qhost, port=qport, timeout=TIMEOUT, retries=0, reconnect_delay=0)
    try:
        assert await c.connect() and await q.connect()
        rr = await c.read_holding_registers(0, count=1, device_id=5)
        assert rr.isError() and rr.exception_code == 0x0B
        with pytest.raises(ModbusException):
            await q.read_holding_registers(0, count=1, device_id=5)
        assert quiet.stats["silent_unknown_unit"] == 1
    finally:
        c.close()
        q.close()
        await ep.stop()
        await quiet.stop()


async def test_refuse_on_off_same_port(rig):
    ep, _, _, client = rig
    port = ep.port
    c = await client()
    assert not (await c.read_input_registers(0, count=2, device_id=1)).isError()
    ep.refuse(True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    await client(expect=False)
    with pytest.raises(ModbusException):  # the open connection was dropped
        await c.read_input_registers(0, count=2, device_id=1)
    ep.refuse(False)
    assert ep.port == port
    c2 = await client()
    assert not (await c2.read_input_registers(0, count=2, device_id=1)).isError()


async def test_bad_mbap_hangs_up(rig):
    ep, _, _, _ = rig
    reader, writer = await asyncio.open_connection(*ep.address)
    writer.write(struct.pack(">HHHB", 1, 0, 0, 1))  # length 0 cannot be framed
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    assert ep.stats["protocol_errors"] == 1
