"""drivers.gps: GpsReader on a real pseudo-terminal that can vanish and come back."""

from __future__ import annotations

import asyncio
import os
import time
import tty
from functools import reduce

import pytest

from drivers import nmea
from drivers.gps import GpsReader


def line(body: str) -> bytes:
    crc = reduce(lambda a, b: a ^ b, body.encode("ascii"), 0)
    return f"${body}*{crc:02X}\r\n".encode("ascii")


GGA = line("GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
RMC = line("GNRMC,123520.00,A,4807.038,N,01131.000,E,0.5,84.4,230324,,,A")
BAD_CRC = GGA[:-4] + (b"00" if GGA[-4:-2] != b"00" else b"01") + b"\r\n"


class Port:
    """A pty whose slave is reachable through a symlink, like /dev/serial/by-id/...
    `unplug()` closes the pty and removes the link; `plug()` makes a new one."""

    def __init__(self, path):
        self.path = str(path)
        self.master: int | None = None
        self.slave: int | None = None

    def plug(self) -> Port:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.path + ".new"
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)
        return self

    def unplug(self) -> None:
        if self.master is not None:
            assert self.slave is not None  # plug() opens both
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = None
        if os.path.lexists(self.path):
            os.unlink(self.path)

    def write(self, data: bytes) -> None:
        assert self.master is not None, "Port.write: unplugged"
        os.write(self.master, data)


@pytest.fixture
def port(tmp_path):
    p = Port(tmp_path / "gps0")
    yield p
    p.unplug()


async def until(cond, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Harness:
    def __init__(self, path, **kw):
        self.sentences: list[nmea.Sentence] = []
        self.errors: list[str] = []
        kw.setdefault("backoff_initial_s", 0.02)
        kw.setdefault("backoff_max_s", 0.1)
        self.reader = GpsReader(path, 9600, on_sentence=self.sentences.append, on_error=self.errors.append, **kw)
        self.task: asyncio.Task | None = None

    async def __aenter__(self):
        self.task = asyncio.create_task(self.reader.run())
        return self

    async def __aexit__(self, *exc):
        self.reader.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


def open_fds_to(target: str) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            pass
    return count


@pytest.mark.integration  # a real pty, in real time
async def test_good_sentences_arrive_parsed(port):
    port.plug()
    async with Harness(port.path) as h:
        await until(lambda: h.reader.is_open, what="port open")
        port.write(GGA + RMC)
        await until(lambda: len(h.sentences) == 2, what="two sentences")
    gga, rmc = h.sentences
    assert isinstance(gga, nmea.GGA) and gga.fix_quality == 1 and gga.satellites == 8
    assert isinstance(rmc, nmea.RMC) and rmc.valid
    assert (h.reader.lines_ok, h.reader.lines_bad, h.reader.reopen_count) == (2, 0, 0)
    assert h.errors == [] and not h.reader.is_open


@pytest.mark.integration
async def test_bad_lines_are_counted_and_reading_goes_on(port):
    port.plug()
    async with Harness(port.path) as h:
        await until(lambda: h.reader.is_open)
        port.write(BAD_CRC + b"\x00\xff\xfe\x80 binary junk \x1b[0m\r\n" + BAD_CRC + GGA)
        await until(lambda: len(h.sentences) == 1, what="the good line after bad ones")
        assert h.reader.lines_bad == 3 and h.reader.lines_ok == 1
        assert len(h.errors) == 1 and "checksum mismatch" in h.errors[0]  # rate-limited: first at once
        port.write(b"\x01\x02\x03" + RMC)  # noise glued to a good sentence: noise counted, sentence kept
        await until(lambda: len(h.sentences) == 2)
        assert h.reader.lines_bad == 4
    assert "3 bad NMEA lines" in h.errors[-1] and "noise before '$'" in h.errors[-1]  # flushed on stop


@pytest.mark.integration
async def test_partial_line_over_two_writes(port):
    port.plug()
    async with Harness(port.path) as h:
        await until(lambda: h.reader.is_open)
        port.write(GGA[:20])
        await asyncio.sleep(0.05)
        assert h.sentences == []
        port.write(GGA[20:] + RMC[:7])
        await until(lambda: len(h.sentences) == 1)
        port.write(RMC[7:])
        await until(lambda: len(h.sentences) == 2)
    assert h.reader.lines_bad == 0 and isinstance(h.sentences[1], nmea.RMC)


@pytest.mark.integration
async def test_port_vanishes_and_comes_back(port):
    port.plug()
    async with Harness(port.path) as h:
        await until(lambda: h.reader.is_open)
        port.write(GGA)
        await until(lambda: len(h.sentences) == 1)
        port.unplug()  # USB adapter pulled
        await until(lambda: not h.reader.is_open, what="reader noticing the loss")
        await until(lambda: any("lost" in e for e in h.errors))
        await asyncio.sleep(0.2)  # several failed reopen attempts, reported only once
        assert len(h.errors) == 1
        assert "hang-up" in h.errors[0] or "EIO" in h.errors[0]  # a hung-up tty reads EOF on Linux
        port.plug()  # plugged back in: a new pty behind the same path
        await until(lambda: h.reader.reopen_count == 1, what="reopen")
        port.write(RMC)
        await until(lambda: len(h.sentences) == 2, what="data after reopen")
    assert h.reader.lines_bad == 0 and len(h.errors) == 1


@pytest.mark.integration
async def test_port_missing_at_start(port):
    async with Harness(port.path) as h:
        await until(lambda: len(h.errors) == 1)
        assert "cannot be opened" in h.errors[0] and not h.reader.is_open
        port.plug()
        await until(lambda: h.reader.is_open)
        port.write(GGA)
        await until(lambda: len(h.sentences) == 1)
    assert h.reader.reopen_count == 0 and len(h.errors) == 1


@pytest.mark.integration
async def test_cancellation_closes_the_port(port):
    port.plug()
    target = os.ttyname(port.slave)
    h = Harness(port.path)
    task = asyncio.create_task(h.reader.run())
    await until(lambda: h.reader.is_open)
    assert open_fds_to(target) == 2  # ours (the test's slave fd) and the reader's
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not h.reader.is_open and open_fds_to(target) == 1


@pytest.mark.integration
async def test_stop_during_backoff_is_prompt(port):
    h = Harness(port.path, backoff_initial_s=5.0, backoff_max_s=5.0)
    task = asyncio.create_task(h.reader.run())
    await until(lambda: h.errors)
    started = time.monotonic()
    h.reader.stop()
    await asyncio.wait_for(task, 1.0)
    assert time.monotonic() - started < 0.5


def test_rate_limit_and_line_splitting_without_a_port():
    now = [0.0]
    errors: list[str] = []
    got: list[nmea.Sentence] = []
    r = GpsReader("/dev/null", on_sentence=got.append, on_error=errors.append, mono=lambda: now[0], error_interval_s=10)
    for _ in range(50):
        r.feed_bytes(b"garbage\r\n")
    assert r.lines_bad == 50 and len(errors) == 1 and "missing '$'" in errors[0]
    now[0] = 10.0
    r.feed_bytes(b"$GPGGA,1*00\n")
    assert len(errors) == 2 and errors[1].startswith("GPS /dev/null: 50 bad NMEA lines; last: checksum")
    r.feed_bytes(GGA.replace(b"\r\n", b"\r") + RMC.replace(b"\r\n", b"\n") + b"\r\n\r\n")  # CR or LF alone
    assert len(got) == 2 and r.lines_ok == 2
    r.feed_bytes(b"x" * 600)  # no line end at all
    assert r.lines_bad == 52


def test_callback_errors_do_not_stop_reading():
    errors: list[str] = []

    def explode(sentence):
        raise RuntimeError("consumer bug")

    r = GpsReader("/dev/null", on_sentence=explode, on_error=errors.append)
    r.feed_bytes(GGA + RMC)
    assert r.lines_ok == 2 and r.callback_errors == 2 and "consumer bug" in errors[0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": ""},
        {"baudrate": 0},
        {"baudrate": "9600"},
        {"error_interval_s": 0},
        {"backoff_initial_s": 2, "backoff_max_s": 1},
    ],
)
def test_bad_arguments(kwargs):
    args = {"port": "/dev/ttyUSB0", **kwargs}
    with pytest.raises(ValueError):
        GpsReader(**args)


@pytest.mark.integration
async def test_empty_read_without_hangup_is_not_a_loss(port):
    """pyserial sets VMIN=0: a read with nothing queued returns b"" like EOF does.
    Only a hang-up may count as the port being gone."""
    import serial

    port.plug()
    r = GpsReader(port.path)
    ser = serial.Serial(port.path, 9600, timeout=0)
    try:
        r._lost = asyncio.get_running_loop().create_future()
        r._on_readable(ser.fileno())  # nothing queued: spurious readiness
        assert not r._lost.done()
        os.close(port.master)
        port.master = os.dup(port.slave)  # keep unplug() happy; the pty is hung up now
        r._on_readable(ser.fileno())
        assert r._lost.done() and "hang-up" in r._lost.result()
    finally:
        ser.close()
