"""Test vectors of the pole node's bus side: CRC, framing, the Modbus slave.

Run under CPython (tests/test_pole_vectors.py) and under a real MicroPython (run_vectors.mjs,
the WebAssembly port): the same functions, plain asserts, only what MicroPython runs (no
pytest, no typing at run time)."""

from boards.pole_node import regmap, rtu, slave
from boards.pole_node.node import PoleNode
from tests.micropython.common import UNIT, MemFlash, lamp, read_req, req, words, write1, write_n

# ---------------------------------------------------------------- CRC and framing


def test_crc_known_vectors() -> None:
    assert rtu.with_crc(bytes((1, 4, 0, 0, 0, 2)))[-2:] == bytes((0x71, 0xCB))
    assert rtu.crc16(bytes((1, 3, 0, 0, 0, 1))) == 0x0A84
    assert rtu.crc_ok(read_req(3, 0, 1))
    assert not rtu.crc_ok(b"\x01\x03")


def test_t35_timing() -> None:
    assert rtu.t35_us(9600) == 4011
    assert rtu.t35_us(19200) == 2006
    assert rtu.t35_us(115200) == 1750


def test_framer_splits_on_silence() -> None:
    f = rtu.Framer(9600)
    odd = req(UNIT, 43, 14, 1, 0)  # no known length: only a silence ends it
    b = read_req(3, 0, 1)
    assert f.feed(odd[:3], 0) is None
    assert f.feed(odd[3:], 2000) is None  # within t3.5: same frame
    assert f.poll(5000) is None
    assert f.feed(b, 7000) == odd  # after the silence, the next bytes start a new frame
    assert f.poll(7000) == b  # a read request is whole at 8 bytes with a good CRC: no need to wait
    assert f.poll(20000) is None


def test_framer_tolerates_a_stall_inside_a_known_length_request() -> None:
    f = rtu.Framer(9600)
    a = read_req(4, 0, 2)
    assert f.feed(a[:5], 0) is None
    assert f.feed(a[5:], 15000) is None  # read 15 ms later (the loop was busy): still one frame
    assert f.poll(15000) == a
    w = write_n(1, [600, 100])
    assert f.feed(w[:7], 20000) is None
    assert f.poll(30000) is None  # shorter than its byte count says: waiting
    assert f.feed(w[7:], 30000) is None
    assert f.poll(30000) == w


def test_framer_truncated_request_then_a_good_one() -> None:
    f = rtu.Framer(9600)
    a = read_req(4, 0, 2)
    assert f.feed(a[:5], 0) is None
    assert f.poll(10000) is None  # maybe a stall
    assert f.poll(25000) == a[:5]  # too long for a stall: the truncated frame ends (bad CRC)
    assert f.feed(a, 200000) is None  # the master's retry
    assert f.poll(200000) == a


def test_framer_back_to_back_requests() -> None:
    f = rtu.Framer(19200)
    a, b = read_req(4, 0, 2), read_req(3, 0, 9)
    assert f.feed(a + b, 0) is None
    assert f.poll(0) == a and f.poll(0) == b and f.poll(10000) is None


def test_framer_flood_is_dropped_and_recovers() -> None:
    f = rtu.Framer(9600)
    t = 0
    for _ in range(100):  # 800 bytes without a gap: more than an ADU
        assert f.feed(read_req(3, 0, 1), t) is None
        t += 100
    assert len(f.buf) <= rtu.MAX_ADU
    assert f.poll(t + 5000) is None and f.dropped == 1
    good = read_req(3, 0, 1)
    f.feed(good, t + 10000)
    assert f.poll(t + 20000) == good


# ---------------------------------------------------------------- the slave


def test_slave_bad_crc_and_short_frames_are_silent() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    bad = bytearray(read_req(4, 0, 2))
    bad[-1] ^= 0xFF
    assert n.request(bytes(bad), 10) is None
    assert n.request(b"\x07\x04", 10) is None
    assert n.request(b"", 10) is None
    assert n.slave.bad_crc == 3
    assert n.failsafe.polled is False  # garbage is not a poll


def test_slave_other_unit_silent() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    assert n.request(read_req(4, 0, 2, unit=8), 10) is None
    assert n.request(write1(0, 50, unit=8), 10) is None
    assert n.holding[0] == 0 and n.slave.other_unit == 2


def test_slave_reads_the_map() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    lamp(n, 1000)
    r = n.request(read_req(4, 0, regmap.INPUT_COUNT), 1500)
    assert r is not None and r[:3] == bytes((UNIT, 4, 2 * regmap.INPUT_COUNT))
    w = words(r)
    assert w[0] == 2300 and w[11] == 100 and w[18] == 0x0100
    h = words(n.request(read_req(3, 0, regmap.HOLDING_COUNT), 1600) or b"")
    assert h == regmap.defaults()


def test_slave_exceptions_1_2_3() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    assert n.request(req(UNIT, 1, 0, 0, 0, 1), 1) == rtu.exception_reply(UNIT, 1, 1)
    assert n.request(req(UNIT, 43, 14, 1, 0), 1) == rtu.exception_reply(UNIT, 43, 1)
    assert n.request(read_req(4, regmap.INPUT_COUNT - 1, 2), 1) == rtu.exception_reply(UNIT, 4, 2)
    assert n.request(read_req(3, 100, 1), 1) == rtu.exception_reply(UNIT, 3, 2)
    assert n.request(write1(regmap.HOLDING_COUNT, 1), 1) == rtu.exception_reply(UNIT, 6, 2)
    assert n.request(read_req(4, 0, 0), 1) == rtu.exception_reply(UNIT, 4, 3)
    assert n.request(read_req(4, 0, 126), 1) == rtu.exception_reply(UNIT, 4, 3)
    assert n.slave.exceptions == 7


def test_slave_wrong_length_with_good_crc() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    assert n.request(req(UNIT, 4, 0, 0, 0, 2, 0), 1) == rtu.exception_reply(UNIT, 4, 3)
    assert n.request(req(UNIT, 6, 0, 0, 0), 1) == rtu.exception_reply(UNIT, 6, 3)
    short16 = req(UNIT, 16, 0, 1, 0, 2, 4, 0, 30)  # byte count says 4, 2 present
    assert n.request(short16, 1) == rtu.exception_reply(UNIT, 16, 3)
    assert n.slave.bad_frame == 3 and n.holding == regmap.defaults()


def test_slave_writes_and_echoes() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    frame = write1(0, 40)
    assert n.request(frame, 1) == frame
    assert n.holding[0] == 40
    reply = n.request(write_n(3, [20, 80]), 2)
    assert reply == rtu.with_crc(bytes((UNIT, 16, 0, 3, 0, 2)))
    assert n.holding[3:5] == [20, 80]


def test_slave_out_of_range_writes_change_nothing() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    assert n.request(write1(0, 101), 1) == rtu.exception_reply(UNIT, 6, 3)
    assert n.request(write1(1, 5), 1) == rtu.exception_reply(UNIT, 6, 3)  # timeout below 10 s
    assert n.request(write1(4, 30), 1) == rtu.exception_reply(UNIT, 6, 3)  # dawn not above dusk
    # all or nothing: the first value is fine, the second is not
    assert n.request(write_n(2, [50, 0]), 1) == rtu.exception_reply(UNIT, 16, 3)
    assert n.holding == regmap.defaults()
    assert "dusk_lux=0" in n.slave.last_error


def test_broadcast_write_applied_never_answered() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    assert n.request(write1(0, 70, unit=0), 1) is None
    assert n.holding[0] == 70
    assert n.request(write_n(0, [30, 900], unit=0), 2) is None
    assert n.holding[0:2] == [30, 900]
    assert n.request(write1(0, 300, unit=0), 3) is None  # out of range: ignored, still silent
    assert n.holding[0] == 30
    assert n.request(read_req(4, 0, 2, unit=0), 4) is None  # a broadcast read is ignored
    assert n.failsafe.polled


def test_request_flood() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    answered = silent = 0
    for i in range(1500):
        kind = i % 5
        if kind == 0:
            frame = read_req(4, 0, regmap.INPUT_COUNT)
        elif kind == 1:
            frame = read_req(4, 0, 2, unit=9)
        elif kind == 2:
            frame = bytes((UNIT, 3, i & 0xFF, 0, 0, 1, 0, 0))  # bad CRC
        elif kind == 3:
            frame = write1(0, i % 101)
        else:
            frame = write1(2, i % 101)  # a setting, changing all the time
        reply = n.request(frame, i)
        if reply is None:
            silent += 1
        else:
            answered += 1
            assert rtu.crc_ok(reply)
        lamp(n, i)
    assert answered == 900 and silent == 600
    assert n.slave.served == 900 and n.slave.bad_crc == 300 and n.slave.other_unit == 300
    # the settings kept changing for 1.5 s: coalesced, not one flash write per request
    assert n.store.writes == 0
    lamp(n, 1499 + 2000)
    assert n.store.writes == 1


def test_unit_id_checked() -> None:
    for bad in (0, 248, -1):
        try:
            slave.Slave(bad)
        except ValueError:
            continue
        raise AssertionError(f"unit {bad} accepted")
