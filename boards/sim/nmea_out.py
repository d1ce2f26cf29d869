"""The simulated GPS receiver: NMEA 0183 sentences, and a writer that serves them on a pty.

Owns: the pure sentence builders `rmc()` and `gga()` (complete lines with checksum and
CR/LF), `sentences()` (the bytes one output second carries in a given fault mode), and
`NmeaWriter`, a thin asyncio task that creates a pseudo-terminal, points a symlink at
its slave side (the "serial port" the agent opens) and writes RMC + GGA once per
second of the clock's time.

Fault modes (`MODES`): "normal"; "no_fix" (RMC status V / mode N with time and date
but empty position, GGA quality 0 with empty position); "bad_checksum" (the normal
lines with a wrong checksum); "garbage" (random non-NMEA bytes, as at a wrong baud
rate; never contains '$'); "silent" (nothing). The mode comes from `writer.mode`, or,
when a `faults` object is given, from its `mode` attribute (a str or an Enum whose
value or name is one of MODES) read every second, so a scenario can change it live.

Choices: coordinates with 5 decimals of minutes (ddmm.mmmmm / dddmm.mmmmm, ~2 cm);
time hhmmss.ss; speed with 3 decimals; empty course and magnetic variation unless
given; GGA geoid separation empty unless given. Timestamps are aligned to whole
multiples of 1/rate_hz of wall time, as receivers stamp fixes at epoch boundaries.
The writer keeps the slave fd open (so master writes never fail with EIO while no
reader is attached), writes non-blocking and drops what does not fit in the pty buffer
(counted in `dropped_bytes`): it never blocks the simulator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import math
import os
import random
import tty
from typing import Any, Protocol

log = logging.getLogger(__name__)

MODES = ("normal", "no_fix", "bad_checksum", "garbage", "silent")


class _Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class _Site(Protocol):  # read-only: boards.sim.plant.Site is a frozen dataclass
    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...
    @property
    def elevation(self) -> float: ...


def checksum(body: str) -> str:
    """Two upper-case hex digits: XOR of the characters between `$` and `*`."""
    value = 0
    for byte in body.encode("ascii"):
        value ^= byte
    return f"{value:02X}"


def sentence(body: str) -> str:
    """`$body*hh\\r\\n`."""
    return f"${body}*{checksum(body)}\r\n"


def _utc(when: dt.datetime | float) -> dt.datetime:
    if isinstance(when, dt.datetime):
        return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(when, dt.UTC)


def _hhmmss(t: dt.datetime) -> str:
    return f"{t.hour:02d}{t.minute:02d}{t.second:02d}.{t.microsecond // 10_000:02d}"


def _coord(degrees: float, width: int, hemis: str) -> tuple[str, str]:
    """Signed degrees -> ("ddmm.mmmmm" or "dddmm.mmmmm", hemisphere letter)."""
    limit = 90.0 if width == 2 else 180.0
    if not math.isfinite(degrees) or abs(degrees) > limit:
        raise ValueError(f"{'latitude' if width == 2 else 'longitude'} {degrees} is not within +-{limit:g}")
    units = round(abs(degrees) * 60 * 100_000)  # 1e-5 minutes; carries 59.999996' into the degree
    deg, rest = divmod(units, 60 * 100_000)
    minutes, frac = divmod(rest, 100_000)
    return f"{deg:0{width}d}{minutes:02d}.{frac:05d}", hemis[0] if degrees >= 0 else hemis[1]


def rmc(
    dt_utc: dt.datetime | float,
    lat: float,
    lon: float,
    *,
    valid: bool = True,
    talker: str = "GN",
    speed_kn: float = 0.0,
    course: float | None = None,
) -> str:
    """A complete RMC sentence. Not valid: status V, FAA mode N, empty position."""
    t = _utc(dt_utc)
    date = f"{t.day:02d}{t.month:02d}{t.year % 100:02d}"
    if valid:
        la, ns = _coord(lat, 2, "NS")
        lo, ew = _coord(lon, 3, "EW")
        fields = [_hhmmss(t), "A", la, ns, lo, ew, f"{speed_kn:.3f}", "" if course is None else f"{course:.2f}"]
    else:
        fields = [_hhmmss(t), "V", "", "", "", "", "", ""]
    fields += [date, "", "", "A" if valid else "N"]
    return sentence(f"{talker}RMC," + ",".join(fields))


def gga(
    dt_utc: dt.datetime | float,
    lat: float,
    lon: float,
    *,
    quality: int = 1,
    satellites: int = 8,
    hdop: float = 0.9,
    altitude: float = 34.0,
    talker: str = "GN",
    geoid_sep: float | None = None,
) -> str:
    """A complete GGA sentence. Quality 0: empty position, 00 satellites, empty HDOP and altitude."""
    if not 0 <= quality <= 8:
        raise ValueError(f"GGA fix quality {quality} is not 0..8")
    t = _utc(dt_utc)
    if quality:
        la, ns = _coord(lat, 2, "NS")
        lo, ew = _coord(lon, 3, "EW")
        fields = [_hhmmss(t), la, ns, lo, ew, str(quality), f"{satellites:02d}", f"{hdop:.2f}", f"{altitude:.1f}", "M"]
    else:
        fields = [_hhmmss(t), "", "", "", "", "0", "00", "", "", ""]
    fields += ["", ""] if geoid_sep is None else [f"{geoid_sep:.1f}", "M"]
    fields += ["", ""]  # DGPS age, station id
    return sentence(f"{talker}GGA," + ",".join(fields))


def mode_name(mode: Any) -> str:
    """Normalise a fault mode (str, or an Enum with such a value or name) to one of MODES."""
    if isinstance(mode, enum.Enum):
        mode = mode.value if isinstance(mode.value, str) else mode.name
    text = str(mode).strip().lower().replace("-", "_")
    if text not in MODES:
        raise ValueError(f"GPS fault mode {mode!r} is not one of {', '.join(MODES)}")
    return text


def sentences(mode: str, when: dt.datetime | float, site: _Site, rng: random.Random) -> bytes:
    """The bytes one output epoch carries in fault mode `mode` (pure but for `rng`)."""
    mode = mode_name(mode)
    lat, lon, alt = site.latitude, site.longitude, getattr(site, "elevation", 0.0)
    if mode == "silent":
        return b""
    if mode == "garbage":
        alphabet = bytes(b for b in range(256) if b != ord("$"))
        return bytes(rng.choice(alphabet) for _ in range(rng.randint(40, 120)))
    if mode == "no_fix":
        text = rmc(when, lat, lon, valid=False) + gga(when, lat, lon, quality=0)
        return text.encode("ascii")
    lines = [rmc(when, lat, lon), gga(when, lat, lon, altitude=alt)]
    if mode == "bad_checksum":
        lines = [f"{ln[:-4]}{int(ln[-4:-2], 16) ^ 0x5A:02X}\r\n" for ln in lines]
    return "".join(lines).encode("ascii")


class NmeaWriter:
    """Serves the simulated receiver's output on a pty whose slave `link` points to."""

    def __init__(
        self,
        link: str | os.PathLike[str],
        clock: _Clock,
        site: _Site,
        *,
        rate_hz: float = 1.0,
        faults: Any = None,
        seed: int = 0,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.link = os.fspath(link)
        self.clock = clock
        self.site = site
        self.rate_hz = rate_hz
        self.faults = faults
        self._mode = "normal"
        self._rng = random.Random(seed)
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.epochs = 0  # output epochs handled (including silent ones)
        self.written_bytes = 0
        self.dropped_bytes = 0
        self._bad_mode_logged = False

    @property
    def mode(self) -> str:
        return mode_name(self.faults.mode) if self.faults is not None else self._mode

    @mode.setter
    def mode(self, value: Any) -> None:
        self._mode = mode_name(value)

    def open(self) -> str:
        """Create the pty and the symlink (replacing a stale one). Returns the slave name."""
        if self._master is not None:
            return self.slave_name or ""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            name = os.ttyname(slave)
            if os.path.islink(self.link):
                os.unlink(self.link)
            os.symlink(name, self.link)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave, self.slave_name = master, slave, name
        return name

    def close(self) -> None:
        """Close the pty and remove the symlink if it still points to our slave."""
        if self._master is None:
            return
        try:
            if os.path.islink(self.link) and os.readlink(self.link) == self.slave_name:
                os.unlink(self.link)
        finally:
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None

    def _write(self, data: bytes) -> None:
        if not data or self._master is None:
            return
        try:
            n = os.write(self._master, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        self.written_bytes += n
        self.dropped_bytes += len(data) - n

    def emit(self, when: float) -> None:
        """Write one epoch's output for wall time `when` (in the current mode)."""
        try:
            mode = self.mode
        except ValueError as exc:
            if not self._bad_mode_logged:
                log.error("GPS simulator writes nothing: %s", exc)
                self._bad_mode_logged = True
            return
        self._bad_mode_logged = False
        self._write(sentences(mode, when, self.site, self._rng))
        self.epochs += 1

    async def run(self) -> None:
        """Write every 1/rate_hz of clock time until cancelled."""
        self.open()
        last: int | None = None
        while True:
            now = self.clock.now()
            k = math.floor(now * self.rate_hz + 1e-3)  # tolerate waking a hair early
            if k != last:  # a new epoch (or the wall clock was stepped)
                self.emit(round(k / self.rate_hz, 2))
                last = k
            await self.clock.sleep(max(0.0, (k + 1) / self.rate_hz - now))

    def start(self) -> asyncio.Task[None]:
        self.open()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"nmea-writer {self.link}")
        return self._task

    async def aclose(self) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # we are being cancelled ourselves
        finally:
            self.close()

    async def __aenter__(self) -> NmeaWriter:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
