"""Pure core pieces: clocks, process image, report-by-exception, poll schedule,
device backoff, reply classification."""

from __future__ import annotations

import asyncio
import struct

import pytest

from agent.clock import ScaledClock, SimClock
from agent.field.image import ProcessImage
from agent.field.poller import PollSchedule
from agent.field.report import ReportFilter
from agent.model import Point, Quality, Reading
from drivers.modbus import replies
from drivers.modbus.health import DeviceHealth


def test_crc16_known_frames():
    assert replies.crc16(bytes.fromhex("010400000002")).to_bytes(2, "little") == bytes.fromhex("71CB")
    assert replies.crc_ok(bytes.fromhex("01040443663334 1B38".replace(" ", "")))
    assert not replies.crc_ok(bytes.fromhex("0104044366333400 00".replace(" ", "")))


def test_wire_timing_numbers():
    assert replies.char_time(9600) == pytest.approx(1.1458e-3, rel=1e-3)
    assert replies.t35(9600) == pytest.approx(4.01e-3, rel=1e-2)
    assert replies.t35(2400) == pytest.approx(16.0e-3, rel=1e-2)
    assert replies.t35(38400) == 0.00175
    assert replies.read_reply_len(3, 125) == 255 and replies.read_reply_len(1, 9) == 7


def _frame(body: bytes) -> bytes:
    return body + struct.pack("<H", replies.crc16(body))


@pytest.mark.parametrize(
    "rx,expect",
    [
        (b"", "no response"),
        (_frame(bytes([2, 3, 4, 1, 2, 3, 4])), "reply from wrong unit id 2"),
        (bytes([1, 3, 4, 1, 2, 3, 4, 0, 0]), "CRC error"),
        (bytes([1, 3, 4, 1]), "short reply (4 of 9 bytes)"),
        (b"\xde\xad\xbe\xef\x01\x02\x03\x04\x05", "garbled reply"),
        (_frame(bytes([2, 0x83, 2])), "reply from wrong unit id 2"),
        (bytes([1, 0x83, 2, 0, 0]), "CRC error"),
    ],
)
def test_classify_rtu(rx, expect):
    assert replies.classify_rtu(rx, unit=1, fc=3, expected_len=9) == expect


def test_classify_tcp():
    ok_header = struct.pack(">HHHB", 1, 0, 7, 5) + bytes([3, 4, 0, 1, 0, 2])
    assert replies.classify_tcp(ok_header, unit=1, fc=3) == "reply from wrong unit id 5"
    assert replies.classify_tcp(b"\x00\x01", 1, 3).startswith("short reply")
    assert "MBAP length" in replies.classify_tcp(struct.pack(">HHHB", 1, 0, 999, 1) + b"\x03\x00", 1, 3)
    assert replies.classify_tcp(b"", 1, 3) == "no response"


def test_device_backoff_grows_caps_and_resets():
    h = DeviceHealth(initial_s=1.0, max_s=8.0, jitter=0.0)
    assert h.ready(0.0) and h.state == "unknown"
    assert h.failure(0.0, "no response") is True  # state change -> log
    assert h.next_try == 1.0 and not h.ready(0.5) and h.ready(1.0)
    assert h.failure(1.0, "no response") is False  # same reason: no new log line
    assert h.next_try == 3.0
    for t in (3.0, 7.0, 15.0, 23.0):
        h.failure(t, "no response")
    assert h.next_try - 23.0 == 8.0  # capped
    assert h.failure(31.0, "CRC error") is True  # new reason -> log once
    assert h.success(40.0) is True and h.ready(40.0) and h.failures == 0
    assert h.success(41.0) is False


def test_backoff_jitter_is_bounded_and_deterministic():
    a = DeviceHealth(1.0, 60.0, jitter=0.1, seed="m1")
    b = DeviceHealth(1.0, 60.0, jitter=0.1, seed="m1")
    for i in range(10):
        a.failure(float(i), "x")
        b.failure(float(i), "x")
        assert a.next_try == b.next_try
        base = min(60.0, 2**i)
        assert base * 0.9 <= a.next_try - i <= base * 1.1


def test_poll_schedule_no_drift_and_skips_missed_cycles():
    s = PollSchedule()
    s.add("fast", 1.0, 0.0)
    s.add("slow", 5.0, 0.0)
    assert s.next() == ("fast", 0.0)
    s.done("fast", 0.3)
    assert s.due("fast") == 1.0
    assert s.next() == ("slow", 0.0)
    s.done("slow", 0.4)
    assert s.next() == ("fast", 1.0)
    s.done("fast", 3.5)  # overran: cycles at 2 and 3 were missed
    assert s.due("fast") == 4.0 and s.skipped["fast"] == 2
    # a device in backoff is not picked before its retry time
    assert s.next(lambda n: 100.0 if n == "slow" else 0.0) == ("fast", 4.0)
    assert s.next(lambda n: 100.0 if n == "fast" else 0.0) == ("slow", 5.0)


def _pt(name, **kw):
    return Point(name, **kw)


def test_process_image_staleness_and_unknown_points():
    img = ProcessImage([_pt("a", unit="V", stale_after_s=10.0)])
    assert img.get("a", 0.0) == (None, None)
    img.update(Reading("a", 1000.0, 230.1, Quality.GOOD), mono=5.0)
    r, age = img.get("a", 12.0)
    assert r is not None
    assert r.quality is Quality.GOOD and age == 7.0 and img.value("a", 12.0) == 230.1
    r, _ = img.get("a", 16.0)
    assert r is not None and r.reason is not None
    assert r.quality is Quality.STALE and "no update" in r.reason and img.value("a", 16.0) is None
    with pytest.raises(KeyError):
        img.update(Reading("zz", 0.0, 1, Quality.GOOD), 0.0)
    snap = img.snapshot(16.0)
    assert snap[0]["name"] == "a" and snap[0]["quality"] == "stale" and snap[0]["unit"] == "V"


def test_report_filter_deadband_quality_heartbeat():
    f = ReportFilter([_pt("v", deadband=0.5, heartbeat_s=60.0), _pt("s", deadband=0.0, heartbeat_s=60.0)])
    good = lambda p, v: Reading(p, 0.0, v, Quality.GOOD)  # noqa: E731
    assert f.offer(good("v", 230.0), 0.0)  # first
    assert not f.offer(good("v", 230.4), 1.0)  # inside deadband
    assert not f.offer(good("v", 229.6), 2.0)  # still inside, relative to the last reported
    assert f.offer(good("v", 230.6), 3.0)  # moved more than 0.5
    assert f.offer(Reading("v", 0.0, None, Quality.BAD, "no response"), 4.0)  # quality change
    assert not f.offer(Reading("v", 0.0, None, Quality.BAD, "no response"), 5.0)
    assert f.offer(Reading("v", 0.0, None, Quality.BAD, "CRC error"), 6.0)  # new reason
    assert f.offer(good("v", 230.6), 7.0)
    assert f.offer(good("v", 230.6), 67.0)  # heartbeat
    assert f.offer(good("s", False), 0.0) and not f.offer(good("s", False), 1.0) and f.offer(good("s", True), 2.0)
    assert f.offer(good("s", "x"), 3.0) and not f.offer(good("s", "x"), 4.0)
    assert f.reported == 9 and f.offered == 14


async def test_sim_clock_wakes_sleepers_in_order():
    clock = SimClock(start=1000.0)
    woke = []

    async def sleeper(name, s):
        await clock.sleep(s)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper("b", 5)), asyncio.create_task(sleeper("a", 2))]
    await asyncio.sleep(0)
    await clock.advance(1)
    assert woke == []
    await clock.advance(10)
    assert woke == [("a", 2.0), ("b", 5.0)]
    assert clock.now() == 1011.0
    clock.set_wall(5000.0)
    assert clock.now() == 5000.0 and clock.monotonic() == 11.0
    await asyncio.gather(*tasks)


async def test_scaled_clock_runs_faster():
    clock = ScaledClock(speed=100.0, start=0.0)
    t0 = clock.monotonic()
    await clock.sleep(5.0)  # 50 ms real
    assert clock.monotonic() - t0 >= 5.0
    assert clock.now() - clock.monotonic() == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError):
        ScaledClock(speed=0)


async def test_cancel_all_cancels_again_when_a_cancellation_is_swallowed():
    from agent.aio import cancel_all

    swallowed: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)  # like wait_for on Python 3.11 losing a cancel that raced a reply

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all([task]), 5)
    assert task.cancelled() and swallowed == [1]
