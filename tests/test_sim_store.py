"""Register stores of the simulated cabinet, RTU framing helpers, and a store served by a
real pymodbus TCP server through sim_device()."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer

from boards.sim import rtu_frames as rf
from boards.sim.store import IllegalAddress, IllegalValue, RegisterStore, check_request, sim_device
from drivers.profiles.base import DataType, DeviceProfile, Limits, RegisterPoint, Table


def profile(**limits) -> DeviceProfile:
    return DeviceProfile(
        "testdev",
        (
            RegisterPoint("relay1", Table.COIL, 3, DataType.BOOL, writable=True),
            RegisterPoint("relay2", Table.COIL, 20, DataType.BOOL, writable=True),
            RegisterPoint("door", Table.DISCRETE, 2, DataType.BOOL),
            RegisterPoint("setpoint", Table.HOLDING, 10, DataType.FLOAT32, writable=True),
            RegisterPoint("mode", Table.HOLDING, 14, DataType.UINT16, enum={0: "off", 1: "auto"}, writable=True),
            RegisterPoint("alarm_hi", Table.HOLDING, 15, DataType.UINT16, bit=3, writable=True),
            RegisterPoint("alarm_lo", Table.HOLDING, 15, DataType.UINT16, bit=0, writable=True),
            RegisterPoint("voltage", Table.INPUT, 0, DataType.UINT16, scale=0.1),
            RegisterPoint("energy", Table.INPUT, 6, DataType.UINT32, word_order="little"),
            RegisterPoint("temp", Table.INPUT, 8, DataType.INT16, scale=0.1),
        ),
        Limits(forbidden=((Table.INPUT, 2, 4),), **limits),
    )


def test_spans_holes_and_forbidden():
    st = RegisterStore(profile(), {"voltage": 230.1, "energy": 0x12345, "temp": -5.5})
    assert st.span(Table.INPUT) == (0, 9)
    assert st.span(Table.COIL) == (3, 21)
    assert st.read(Table.INPUT, 4, 5) == [0, 0, 0x2345, 0x1, 0xFFC9]  # hole 4..5 reads 0
    assert st.read(Table.INPUT, 0, 2) == [2301, 0]
    assert st.read(Table.COIL, 3, 18) == [False] * 18
    with pytest.raises(IllegalAddress) as e:
        st.read(Table.INPUT, 1, 2)  # touches forbidden 2..3
    assert e.value.code == 2
    for table, address, count in ((Table.INPUT, 8, 2), (Table.HOLDING, 9, 1), (Table.COIL, 20, 2), (Table.COIL, 0, 4)):
        with pytest.raises(IllegalAddress):
            st.read(table, address, count)
    empty = RegisterStore(DeviceProfile("x", (RegisterPoint("a", Table.HOLDING, 0),)))
    with pytest.raises(IllegalAddress):
        empty.read(Table.INPUT, 0, 1)


def test_read_count_limits():
    st = RegisterStore(profile(max_registers=4, max_bits=8))
    assert len(st.read(Table.HOLDING, 10, 4)) == 4
    with pytest.raises(IllegalValue) as e:
        st.read(Table.HOLDING, 10, 5)
    assert e.value.code == 3
    with pytest.raises(IllegalValue):
        st.read(Table.COIL, 3, 9)


def test_values_roundtrip():
    st = RegisterStore(profile())
    st.set_many(
        {
            "setpoint": 21.5,
            "mode": "auto",
            "alarm_hi": True,
            "voltage": 229.9,
            "energy": 70000,
            "relay2": True,
            "door": True,
        }
    )
    assert st.get("setpoint") == 21.5
    assert st.get("mode") == "auto"
    assert st.get("alarm_hi") is True and st.get("alarm_lo") is False
    assert st.read(Table.HOLDING, 15, 1) == [8]
    assert st.get("voltage") == 229.9
    assert st.get("energy") == 70000
    assert st.read(Table.INPUT, 6, 2) == [70000 & 0xFFFF, 70000 >> 16]  # little word order
    assert st.get("relay2") is True and st.get("door") is True
    assert st.values()["relay1"] is False
    with pytest.raises(KeyError):
        st.get("nope")


def test_writes_fire_on_write_with_decoded_values():
    st = RegisterStore(profile(), {"alarm_lo": True})
    seen = []
    st.on_write = lambda key, value: seen.append((key, value))
    st.write(Table.COIL, 3, [True])
    st.write(Table.HOLDING, 10, [0x41AC, 0x0000])  # 21.5 as float32
    assert seen == [("relay1", True), ("setpoint", 21.5)]
    seen.clear()
    st.write(Table.COIL, 3, [True])  # no change -> no callback
    st.write(Table.HOLDING, 14, [1, 0b1001])  # mode + both alarm bits (lo was already set)
    assert seen == [("mode", "auto"), ("alarm_hi", True)]
    seen.clear()
    st.write(Table.HOLDING, 11, [0x8000])  # half of the float changes it
    assert seen == [("setpoint", 21.5625)]


def test_write_refusals():
    st = RegisterStore(profile())
    with pytest.raises(IllegalAddress):
        st.write(Table.INPUT, 0, [1])  # read-only table
    with pytest.raises(IllegalAddress):
        st.write(Table.COIL, 3, [True, True])  # coil 4 is a hole, not a writable point
    with pytest.raises(IllegalAddress):
        st.write(Table.HOLDING, 12, [1])
    with pytest.raises(IllegalValue):
        st.write(Table.HOLDING, 14, [70000])
    loose = RegisterStore(profile(), strict_writes=False)
    loose.write(Table.HOLDING, 12, [7])
    assert loose.read(Table.HOLDING, 12, 1) == [7]


def test_check_request():
    st = RegisterStore(profile())
    assert check_request(st, bytes([3, 0, 10, 0, 2])) is None
    assert check_request(st, bytes([3, 0, 10, 0, 126])) == 3  # quantity out of 1..125
    assert check_request(st, bytes([1, 0, 3, 0, 18])) is None
    assert check_request(st, bytes([1, 0, 3, 0, 19])) == 2  # one bit past the coil span
    assert check_request(st, bytes([5, 0, 3, 0x12, 0x34])) == 3  # coil value not 0/FF00
    assert check_request(st, bytes([16, 0, 10, 0, 2, 3, 0, 0, 0])) == 3  # byte count mismatch
    assert check_request(st, bytes([43, 14, 1, 0])) is None  # not a store request


def test_rtu_frame_helpers():
    assert rf.with_crc(bytes.fromhex("010400000002")).hex() == "01040000000271cb"
    assert rf.crc_ok(bytes.fromhex("01040000000271cb"))
    assert not rf.crc_ok(bytes.fromhex("01040000000271cc"))
    assert rf.exception_frame(1, 3, 2)[:3] == bytes([1, 0x83, 2]) and rf.crc_ok(rf.exception_frame(1, 3, 2))
    assert rf.t35(9600) == pytest.approx(0.00401, abs=1e-5)
    assert rf.t35(19200) == pytest.approx(0.002005, abs=1e-5)
    assert rf.t35(38400) == 0.00175 and rf.t35(115200) == 0.00175
    assert rf.wire_time(255, 9600) == pytest.approx(0.2922, abs=1e-4)
    assert rf.request_length(bytes([1, 16, 0, 0, 0, 2, 4])) == 13
    assert rf.reply_length(bytes([1, 3, 250])) == 255
    assert rf.reply_length(bytes([1, 0x83])) == 5


def test_request_framer_serializes_back_to_back_frames():
    f1 = rf.with_crc(bytes([1, 3, 0, 0, 0, 2]))
    f2 = rf.with_crc(bytes([2, 3, 0, 0, 0, 2]))
    fr = rf.RequestFramer(9600)
    frames = fr.feed(f1 + f2[:3], 10.0) + fr.feed(f2[3:], 10.0001)
    char = 11 / 9600
    assert [f.data for f in frames] == [f1, f2]
    assert frames[0].start == 10.0 and frames[0].end == pytest.approx(10 + 8 * char)
    assert frames[1].start == pytest.approx(10 + 8 * char) and frames[1].end == pytest.approx(10 + 16 * char)
    # an unknown function code ends by a silence of t3.5
    odd = rf.with_crc(bytes([1, 0x41, 9, 9]))
    assert fr.feed(odd, 20.0) == []
    deadline = fr.deadline()
    assert deadline is not None  # a frame is pending
    assert fr.flush(deadline - 1e-4) is None
    frame = fr.flush(deadline)
    assert frame is not None and frame.data == odd
    # a gap longer than t3.5 inside a frame cuts it
    assert fr.feed(f1[:4], 30.0) == []
    out = fr.feed(f1[4:], 30.1)
    assert [(f.data, f.complete) for f in out] == [(f1[:4], False)]


@pytest.mark.integration  # a real pymodbus TCP server on a loopback port
async def test_sim_device_served_by_pymodbus_tcp_server():
    st = RegisterStore(profile(), {"voltage": 231.0, "relay2": True})
    writes = []
    st.on_write = lambda k, v: writes.append((k, v))
    server = ModbusTcpServer([sim_device(7, st)], framer=FramerType.SOCKET, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    assert isinstance(server.transport, asyncio.Server)  # a listener's transport is the asyncio server
    port = server.transport.sockets[0].getsockname()[1]
    client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType.SOCKET, timeout=2, retries=0)
    try:
        assert await client.connect()
        rr = await client.read_input_registers(0, count=2, device_id=7)
        assert rr.registers == [2310, 0]
        rr = await client.read_input_registers(0, count=3, device_id=7)
        assert rr.isError() and rr.exception_code == 2  # forbidden
        rr = await client.read_coils(3, count=18, device_id=7)
        assert rr.bits[:18] == [False] * 17 + [True]
        assert not (await client.write_coil(3, True, device_id=7)).isError()
        regs = client.convert_to_registers(19.25, client.DATATYPE.FLOAT32)
        assert not (await client.write_registers(10, regs, device_id=7)).isError()
        rr = await client.write_register(12, 1, device_id=7)
        assert rr.isError() and rr.exception_code == 2
        rr = await client.read_holding_registers(10, count=2, device_id=7)
        assert client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32) == 19.25
        assert writes == [("relay1", True), ("setpoint", 19.25)]
        st.set("voltage", 229.5)  # live change, seen by the next read
        assert (await client.read_input_registers(0, count=1, device_id=7)).registers == [2295]
    finally:
        client.close()
        await server.shutdown()
        await asyncio.sleep(0)
