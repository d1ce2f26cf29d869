"""The simulated GPS receiver (boards/sim/nmea_out.py): sentences and the pty writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import random
import re
import time
from functools import reduce
from types import SimpleNamespace

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from agent.clock import ScaledClock, SimClock
from boards.sim.nmea_out import MODES, NmeaWriter, gga, mode_name, rmc, sentences
from boards.sim.plant import Site

T = dt.datetime(2024, 6, 21, 12, 34, 56, 780_000, tzinfo=dt.UTC)
BEND = Site(44.068998, -121.3143, 1100.0, "America/Los_Angeles")
LINE = re.compile(rb"\$([^$*\r\n]*)\*([0-9A-F]{2})\r\n")


def xor(body: bytes) -> int:
    return reduce(lambda a, b: a ^ b, body, 0)


def check(line: str) -> list[str]:
    """Assert the framing and checksum independently of the module; return the fields."""
    raw = line.encode("ascii")
    m = LINE.fullmatch(raw)
    assert m, line
    assert int(m.group(2), 16) == xor(m.group(1)), line
    assert len(raw) <= 82
    return m.group(1).decode().split(",")


def degrees(value: str, hemi: str) -> float:
    width = 2 if hemi in "NS" else 3
    d = int(value[:width]) + float(value[width:]) / 60
    return -d if hemi in "SW" else d


# ---- sentences -------------------------------------------------------------------------


def test_reproduces_reference_rmc_exactly():
    when = dt.datetime(2017, 1, 10, 0, 10, 31, tzinfo=dt.UTC)
    lat, lon = degrees("4404.13993", "N"), degrees("12118.86023", "W")
    assert (
        rmc(when, lat, lon, speed_kn=0.146) == "$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B\r\n"
    )


def test_known_coordinates_within_format_precision():
    f = check(rmc(T, 44.068998, -121.3143))
    assert f[3:7] == ["4404.13988", "N", "12118.85800", "W"]
    assert degrees(f[3], f[4]) == pytest.approx(44.068998, abs=1e-7)
    assert degrees(f[5], f[6]) == pytest.approx(-121.3143, abs=1e-7)
    # and the published example's position is the same place to ~1e-6 deg
    assert degrees("4404.13993", "N") == pytest.approx(44.068998, abs=1e-6)


@pytest.mark.parametrize(
    "lat, lon, want",
    [
        (-33.8688, 151.2093, ["3352.12800", "S", "15112.55800", "E"]),
        (52.52, 13.405, ["5231.20000", "N", "01324.30000", "E"]),
        (0.0, -0.5, ["0000.00000", "N", "00030.00000", "W"]),
        (10.99999999999, -179.9999999999, ["1100.00000", "N", "18000.00000", "W"]),  # rounding carries
    ],
)
def test_hemispheres_padding_and_carry(lat, lon, want):
    assert check(rmc(T, lat, lon))[3:7] == want
    assert check(gga(T, lat, lon))[2:6] == want


@given(st.floats(-90, 90), st.floats(-180, 180))
def test_coordinates_round_trip(lat, lon):
    f = check(gga(T, lat, lon))
    assert degrees(f[2], f[3]) == pytest.approx(lat, abs=0.5e-5 / 60 + 1e-12)
    assert degrees(f[4], f[5]) == pytest.approx(lon, abs=0.5e-5 / 60 + 1e-12)


def test_rmc_fields():
    f = check(rmc(T, 1.35, 103.82, speed_kn=1.5, course=271.3, talker="GP"))
    assert f[0] == "GPRMC" and len(f) == 13
    assert f[1] == "123456.78" and f[2] == "A" and f[9] == "210624" and f[12] == "A"
    assert f[7] == "1.500" and f[8] == "271.30"
    # naive datetimes are UTC, epoch floats work too
    naive = T.replace(tzinfo=None)
    assert rmc(naive, 1, 2) == rmc(T, 1, 2) == rmc(T.timestamp(), 1, 2)
    assert rmc(T.astimezone(dt.timezone(dt.timedelta(hours=8))), 1, 2) == rmc(T, 1, 2)


def test_rmc_invalid():
    f = check(rmc(T, 44.068998, -121.3143, valid=False))
    assert f[2] == "V" and f[12] == "N"
    assert f[3:9] == ["", "", "", "", "", ""]  # no position, speed, course
    assert f[1] == "123456.78" and f[9] == "210624"  # the receiver's clock still runs


def test_gga_fields():
    f = check(gga(T, 44.068998, -121.3143, satellites=11, hdop=0.87, altitude=1100.25))
    assert f[0] == "GNGGA" and len(f) == 15
    assert f[6:11] == ["1", "11", "0.87", "1100.2", "M"] or f[6:11] == ["1", "11", "0.87", "1100.3", "M"]
    f0 = check(gga(T, 44.0, -121.0, quality=0))
    assert f0[2:8] == ["", "", "", "", "0", "00"] and f0[9] == ""
    with pytest.raises(ValueError):
        gga(T, 0, 0, quality=9)
    with pytest.raises(ValueError, match="latitude"):
        rmc(T, 91, 0)


def test_parsed_by_the_agents_nmea_driver():
    nmea = pytest.importorskip("drivers.nmea")
    r = nmea.parse(rmc(T, 44.068998, -121.3143))
    g = nmea.parse(gga(T, 44.068998, -121.3143, altitude=1100.0))
    assert r.valid and r.time_utc == T.replace(microsecond=780_000)
    assert r.latitude == pytest.approx(44.068998, abs=1e-6) and r.longitude == pytest.approx(-121.3143, abs=1e-6)
    assert g.fix_quality == 1 and g.altitude_m == 1100.0
    bad = nmea.parse(rmc(T, 0, 0, valid=False))
    assert not bad.valid and bad.latitude is None
    assert nmea.parse(gga(T, 0, 0, quality=0)).fix_quality == 0


# ---- modes -----------------------------------------------------------------------------


def lines(data: bytes) -> list[str]:
    return [ln + "\r\n" for ln in data.decode("ascii").split("\r\n") if ln]


def test_modes_content():
    rng = random.Random(1)
    normal = lines(sentences("normal", T, BEND, rng))
    assert [check(x)[0] for x in normal] == ["GNRMC", "GNGGA"]
    assert check(normal[1])[9] == "1100.0"  # altitude from the site

    nofix = [check(x) for x in lines(sentences("no_fix", T, BEND, rng))]
    assert nofix[0][2] == "V" and nofix[1][6] == "0"

    bad = lines(sentences("bad_checksum", T, BEND, rng))
    for good_line, bad_line in zip(normal, bad, strict=False):
        assert bad_line[:-4] == good_line[:-4] and bad_line[-4:-2] != good_line[-4:-2]
        m = LINE.fullmatch(bad_line.encode())
        assert m and int(m.group(2), 16) != xor(m.group(1))

    garbage = sentences("garbage", T, BEND, rng)
    assert len(garbage) >= 40 and b"$" not in garbage
    assert sentences("silent", T, BEND, rng) == b""


def test_mode_names():
    import enum

    class GpsMode(enum.Enum):
        NORMAL = "normal"
        NO_FIX = "no_fix"

    class Other(enum.Enum):
        SILENT = 1

    assert mode_name(GpsMode.NO_FIX) == "no_fix" and mode_name(Other.SILENT) == "silent"
    assert mode_name("Bad-Checksum") == "bad_checksum"
    with pytest.raises(ValueError, match="jamming"):
        mode_name("jamming")


# ---- writer on a real pty --------------------------------------------------------------


def read_available(port: serial.Serial, settle: float = 0.05) -> bytes:
    """Everything the pty has for us now (the kernel moves bytes master->slave async)."""
    out, t0 = b"", time.monotonic()
    while True:
        time.sleep(settle)
        chunk = port.read(port.in_waiting) if port.in_waiting else b""
        if not chunk and (out or time.monotonic() - t0 > 0.15):
            return out
        out += chunk


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock(start=T.replace(microsecond=0).timestamp() + 0.4)


@pytest.mark.integration  # a real pty
async def test_writer_serves_lines_on_the_symlink(tmp_path, sim_clock):
    link = tmp_path / "ttyGPS"
    os.symlink("/nonexistent", link)  # a stale link from a previous run is replaced
    writer = NmeaWriter(link, sim_clock, BEND)
    writer.open()
    assert os.readlink(link) == writer.slave_name
    with serial.Serial(str(link), 9600, timeout=0) as port:
        writer.start()
        await asyncio.sleep(0)
        await sim_clock.advance(3.0)
        data = read_available(port)
    await writer.aclose()
    assert not link.exists() and not os.path.islink(link)
    got = [check(x) for x in lines(data)]
    assert [f[0] for f in got] == ["GNRMC", "GNGGA"] * 4
    stamps = [f[1] for f in got[::2]]
    assert stamps == ["123456.00", "123457.00", "123458.00", "123459.00"]  # whole seconds of clock time
    assert got[0][3:7] == ["4404.13988", "N", "12118.85800", "W"]
    assert writer.epochs == 4 and writer.dropped_bytes == 0 and writer.written_bytes == len(data)


@pytest.mark.integration
async def test_writer_follows_fault_modes_live(tmp_path, sim_clock):
    faults = SimpleNamespace(mode="normal")
    link = tmp_path / "gps"
    async with NmeaWriter(link, sim_clock, BEND, faults=faults) as writer:
        with serial.Serial(str(link), 9600, timeout=0) as port:
            seen = {}
            for mode in MODES:
                faults.mode = mode
                await sim_clock.advance(1.0)
                seen[mode] = read_available(port, settle=0.02)
    assert [check(x)[2] for x in lines(seen["normal"])][:1] == ["A"]
    nofix = [check(x) for x in lines(seen["no_fix"])]
    assert nofix[0][2] == "V" and nofix[1][6] == "0"
    for ln in lines(seen["bad_checksum"]):
        m = LINE.fullmatch(ln.encode())
        assert m and int(m.group(2), 16) != xor(m.group(1))
    assert seen["garbage"] and b"$" not in seen["garbage"]
    assert seen["silent"] == b""
    assert writer.epochs == len(MODES)  # the task first runs inside the first advance


@pytest.mark.integration
async def test_writer_never_blocks_without_a_reader(tmp_path, sim_clock):
    writer = NmeaWriter(tmp_path / "gps", sim_clock, BEND, rate_hz=10)
    writer.start()
    await asyncio.sleep(0)
    await sim_clock.advance(600.0)  # ~900 kB, nobody reads
    assert writer.epochs == 6001
    assert writer.dropped_bytes > 0 and writer.written_bytes > 0
    assert writer._task is not None
    assert not writer._task.done()  # still alive: no EIO, no blocking
    # a reader that attaches late still gets whole lines after the first line break
    with serial.Serial(str(tmp_path / "gps"), 9600, timeout=0) as port:
        await sim_clock.advance(0.3)
        data = read_available(port)
    assert [check(x)[0] for x in lines(data)][:2] == ["GNRMC", "GNGGA"]
    await writer.aclose()


@pytest.mark.integration  # a real pty, in (scaled) real time
async def test_writer_with_a_scaled_clock(tmp_path):
    clock = ScaledClock(speed=50, start=T.timestamp())
    link = tmp_path / "gps"
    async with NmeaWriter(link, clock, BEND) as writer:
        fd = os.open(link, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            await asyncio.sleep(0.2)  # 10 s of clock time
            data = b""
            while True:
                try:
                    data += os.read(fd, 4096)
                except BlockingIOError:
                    break
        finally:
            os.close(fd)
    got = [check(x) for x in lines(data)]
    stamps = [f[1] for f in got if f[0] == "GNRMC"]
    assert len(stamps) >= 7
    assert all(s.endswith(".00") for s in stamps)
    secs = [int(s[4:6]) for s in stamps]
    assert all((b - a) % 60 == 1 for a, b in itertools.pairwise(secs))  # no gaps, no repeats
    assert writer.dropped_bytes == 0


def test_rejects_bad_rate(tmp_path):
    with pytest.raises(ValueError):
        NmeaWriter(tmp_path / "x", SimClock(), BEND, rate_hz=0)
