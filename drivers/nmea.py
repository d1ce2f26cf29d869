"""NMEA 0183 sentences from a GPS/GNSS receiver, and the GPS state built from them.

Owns: `parse()` (one line -> `RMC`, `GGA` or a generic `Sentence`; anything malformed
raises `NmeaError`, a ValueError naming the reason) and `GpsState` (feed sentences
with a monotonic timestamp, ask for a `GpsFix` snapshot). Pure code: no I/O, never
reads a clock; the caller passes `mono` in. The serial side is drivers/gps.py.

Choices where the standard leaves room:
* Line length: the standard allows 82 chars incl. `$` and CR/LF; some receivers send
  longer lines, so `parse` accepts up to `MAX_LINE` = 120 (counted as if CR/LF were
  present) unless told otherwise.
* The checksum is required for every sentence.
* Dates: 2-digit year yy -> 20yy. A valid RMC whose date is before `min_year`
  (default 2020) is rejected as "week rollover suspected"; after `max_year` (default
  2079: a receiver's 1980 epoch default reads as 2080) as "receiver default date". An
  RMC that says itself it is not valid gets `time_utc=None` instead of an error.
  A date or time of all zeros (zero-filled invalid field) counts as empty.
* A leap second (ss = 60) rolls over into the next minute in `RMC.time_utc` and is
  clamped to hh:mm:59.999999 in `GGA.time`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Literal

MAX_LINE = 120  # tolerated line length incl. `$` and CR/LF (standard: 82)
VALID_MODES = frozenset("AD")  # FAA modes that allow an RMC to count as valid
KNOWN_MODES = frozenset("ADEFMNPRS")


class NmeaError(ValueError):
    """A line is not a usable NMEA sentence. `reason` says why, `line` what it was."""

    def __init__(self, reason: str, line: str | bytes | None = None) -> None:
        self.reason = reason
        self.line = line
        shown = "" if line is None else f" in {_shorten(line)}"
        super().__init__(f"{reason}{shown}")


def _shorten(line: str | bytes, limit: int = 60) -> str:
    text = repr(line)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, kw_only=True)
class Sentence:
    """Any checksum-valid sentence. `fields` are the data fields after the address.
    Proprietary sentences (`$PXXXX`) get talker "P" and type = the rest."""

    talker: str
    type: str
    fields: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RMC(Sentence):
    """Recommended minimum data. `valid` = status A and FAA mode (if sent) A or D."""

    time_utc: dt.datetime | None  # aware, UTC; None without date or time
    status: str  # "A" valid, "V" warning / invalid
    mode: str | None  # FAA mode (NMEA >= 2.3), None if absent or empty
    valid: bool
    latitude: float | None  # signed degrees, + north
    longitude: float | None  # signed degrees, + east
    speed_knots: float | None
    course_deg: float | None
    magnetic_variation_deg: float | None  # + east


@dataclass(frozen=True, kw_only=True)
class GGA(Sentence):
    """Fix data. `fix_quality` 0 = no fix, 1 GPS, 2 DGPS, ... 8 simulation."""

    time: dt.time | None  # UTC time of day (GGA carries no date)
    latitude: float | None
    longitude: float | None
    fix_quality: int
    satellites: int | None
    hdop: float | None
    altitude_m: float | None  # above mean sea level
    geoid_separation_m: float | None
    dgps_age_s: float | None
    dgps_station: str | None


def checksum(body: str) -> int:
    """XOR of the characters between `$` and `*`."""
    value = 0
    for ch in body.encode("ascii"):
        value ^= ch
    return value


def parse(line: str | bytes, *, min_year: int = 2020, max_year: int = 2079, max_length: int = MAX_LINE) -> Sentence:
    """Parse one line (with or without CR/LF). Raises NmeaError with the reason."""
    text = _decode(line)
    stripped = text.rstrip("\r\n")
    if len(stripped) + 2 > max_length:
        raise NmeaError(f"line too long: {len(stripped) + 2} chars incl. CR/LF, limit {max_length}", line)
    if not stripped:
        raise NmeaError("empty line", line)
    if stripped[0] != "$":
        raise NmeaError("missing '$' at start", line)
    for pos, ch in enumerate(stripped):
        if not " " <= ch <= "~":
            raise NmeaError(f"control character 0x{ord(ch):02X} at position {pos}", line)
        if ch == "$" and pos:
            raise NmeaError(f"unexpected '$' at position {pos} (two sentences run together?)", line)
    star = stripped.rfind("*")
    if star < 0:
        raise NmeaError("missing checksum (*hh)", line)
    given = stripped[star + 1 :]
    if not re.fullmatch(r"[0-9A-Fa-f]{2}", given):
        raise NmeaError(f"invalid checksum field '*{given}' (want * and 2 hex digits at the end)", line)
    body = stripped[1:star]
    computed = checksum(body)
    if int(given, 16) != computed:
        raise NmeaError(f"checksum mismatch: line says {given.upper()}, computed {computed:02X}", line)
    parts = body.split(",")
    address, fields = parts[0], tuple(parts[1:])
    if address.startswith("P") and re.fullmatch(r"P[A-Z0-9]{1,9}", address):
        return Sentence(talker="P", type=address[1:], fields=fields)
    if not re.fullmatch(r"[A-Z][A-Z0-9][A-Z0-9]{3}", address):
        raise NmeaError(f"address field '{address}' is not talker (2) + type (3) letters", line)
    talker, kind = address[:2], address[2:]
    try:
        if kind == "RMC":
            return _rmc(talker, fields, min_year, max_year)
        if kind == "GGA":
            return _gga(talker, fields)
    except NmeaError as exc:
        raise NmeaError(f"{address}: {exc.reason}", line) from None
    return Sentence(talker=talker, type=kind, fields=fields)


def _decode(line: str | bytes) -> str:
    if isinstance(line, (bytes, bytearray, memoryview)):
        raw = bytes(line)
        for pos, byte in enumerate(raw):
            if byte > 0x7F:
                raise NmeaError(f"non-ASCII byte 0x{byte:02X} at position {pos}", raw)
        return raw.decode("ascii")
    if not isinstance(line, str):
        raise NmeaError(f"expected str or bytes, got {type(line).__name__}")
    for pos, ch in enumerate(line):
        if ord(ch) > 0x7F:
            raise NmeaError(f"non-ASCII character {ch!r} at position {pos}", line)
    return line


# ---- field helpers (raise NmeaError naming the field) --------------------------------

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_LATITUDE = re.compile(r"(\d{1,2})(\d{2}(?:\.\d*)?)")  # ddmm.mmmm
_LONGITUDE = re.compile(r"(\d{1,3})(\d{2}(?:\.\d*)?)")  # dddmm.mmmm


def _num(value: str, name: str) -> float | None:
    if value == "":
        return None
    if not _NUMBER.fullmatch(value):
        raise NmeaError(f"{name} '{value}' is not a number")
    return float(value)


def _int(value: str, name: str) -> int | None:
    if value == "":
        return None
    if not value.isdigit() or not value.isascii():
        raise NmeaError(f"{name} '{value}' is not an unsigned integer")
    return int(value)


def _nonneg(value: str, name: str) -> float | None:
    number = _num(value, name)
    if number is not None and number < 0:
        raise NmeaError(f"{name} {value} is negative")
    return number


def _coord(value: str, hemi: str, name: str) -> float | None:
    """ddmm.mmmm (latitude) or dddmm.mmmm (longitude) + hemisphere -> signed degrees."""
    is_lat = name == "latitude"
    if value == "" and hemi == "":
        return None
    signs = {"N": 1, "S": -1} if is_lat else {"E": 1, "W": -1}
    if hemi not in signs:
        raise NmeaError(f"{name} hemisphere '{hemi}' is not {' or '.join(signs)}")
    max_deg_digits = 2 if is_lat else 3
    match = (_LATITUDE if is_lat else _LONGITUDE).fullmatch(value)
    if not match:
        raise NmeaError(f"{name} '{value}' is not {'d' * max_deg_digits}mm.mmmm")
    degrees, minutes = int(match.group(1)), float(match.group(2))
    if minutes >= 60:
        raise NmeaError(f"{name} '{value}': minutes {minutes:g} >= 60")
    result = degrees + minutes / 60
    limit = 90 if is_lat else 180
    if result > limit:
        raise NmeaError(f"{name} '{value}' is {result:.6f} degrees, more than {limit}")
    return signs[hemi] * result


def _clock(value: str) -> tuple[int, int, int, int] | None:
    """hhmmss(.s...) -> (h, m, s, microseconds); empty -> None."""
    if value == "":
        return None
    match = re.fullmatch(r"(\d\d)(\d\d)(\d\d)(\.\d*)?", value)
    if not match:
        raise NmeaError(f"UTC time '{value}' is not hhmmss.ss")
    h, m, s = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if h > 23 or m > 59 or s > 60:
        raise NmeaError(f"UTC time '{value}' is out of range")
    frac = match.group(4) or "."
    micro = min(999_999, round(float("0" + frac) * 1e6)) if len(frac) > 1 else 0
    return h, m, s, micro


def _rmc(talker: str, f: tuple[str, ...], min_year: int, max_year: int) -> RMC:
    if len(f) not in (11, 12, 13):
        raise NmeaError(f"{len(f)} data fields, expected 11 (NMEA 2.0), 12 (2.3) or 13 (4.1)")
    status = f[1]
    if status not in ("A", "V"):
        raise NmeaError(f"status '{status}' is not A or V")
    mode = f[11] if len(f) >= 12 and f[11] != "" else None
    if mode is not None and mode not in KNOWN_MODES:
        raise NmeaError(f"FAA mode '{mode}' is not one of {''.join(sorted(KNOWN_MODES))}")
    valid = status == "A" and (mode is None or mode in VALID_MODES)
    latitude = _coord(f[2], f[3], "latitude")
    longitude = _coord(f[4], f[5], "longitude")
    speed = _nonneg(f[6], "speed")
    course = _nonneg(f[7], "course")
    if course is not None and course > 360:
        raise NmeaError(f"course {f[7]} is more than 360")
    variation = _nonneg(f[9], "magnetic variation")
    if variation is not None:
        if f[10] not in ("E", "W"):
            raise NmeaError(f"magnetic variation direction '{f[10]}' is not E or W")
        variation = -variation if f[10] == "W" else variation
    clock = _clock(f[0])
    date = _date(f[8])
    time_utc = None
    if clock is not None and date is not None:
        h, m, s, micro = clock
        time_utc = dt.datetime(date.year, date.month, date.day, h, m, 0, micro, dt.UTC)
        time_utc += dt.timedelta(seconds=s)  # s may be 60 (leap second)
    if date is not None and not min_year <= date.year <= max_year:
        if valid:
            if date.year < min_year:
                raise NmeaError(f"week rollover suspected: date {date} is before {min_year}")
            raise NmeaError(f"receiver default date suspected: date {date} is after {max_year}")
        time_utc = None
    return RMC(
        talker=talker,
        type="RMC",
        fields=f,
        time_utc=time_utc,
        status=status,
        mode=mode,
        valid=valid,
        latitude=latitude,
        longitude=longitude,
        speed_knots=speed,
        course_deg=course,
        magnetic_variation_deg=variation,
    )


def _date(value: str) -> dt.date | None:
    if value == "" or value == "000000":
        return None
    if not re.fullmatch(r"\d{6}", value):
        raise NmeaError(f"date '{value}' is not ddmmyy")
    day, month, year = int(value[0:2]), int(value[2:4]), 2000 + int(value[4:6])
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise NmeaError(f"date '{value}' is not a calendar date") from None


def _gga(talker: str, f: tuple[str, ...]) -> GGA:
    if len(f) != 14:
        raise NmeaError(f"{len(f)} data fields, expected 14")
    clock = _clock(f[0])
    time = None
    if clock is not None:
        h, m, s, micro = clock
        time = dt.time(h, m, 59, 999_999) if s == 60 else dt.time(h, m, s, micro)
    quality = _int(f[5], "fix quality") or 0
    if quality > 8:
        raise NmeaError(f"fix quality {quality} is not 0..8")
    satellites = _int(f[6], "satellites")
    if satellites is not None and satellites > 99:
        raise NmeaError(f"satellites {satellites} is more than 99")
    for unit_field, name in ((f[9], "altitude unit"), (f[11], "geoid separation unit")):
        if unit_field not in ("", "M"):
            raise NmeaError(f"{name} '{unit_field}' is not M")
    return GGA(
        talker=talker,
        type="GGA",
        fields=f,
        time=time,
        latitude=_coord(f[1], f[2], "latitude"),
        longitude=_coord(f[3], f[4], "longitude"),
        fix_quality=quality,
        satellites=satellites,
        hdop=_nonneg(f[7], "HDOP"),
        altitude_m=_num(f[8], "altitude"),
        geoid_separation_m=_num(f[10], "geoid separation"),
        dgps_age_s=_nonneg(f[12], "DGPS age"),
        dgps_station=f[13] or None,
    )


# ---- GPS state --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpsFix:
    """What the GPS says at one moment (see GpsState.snapshot)."""

    time_utc: dt.datetime | None  # last valid RMC time + elapsed monotonic time
    time_valid: bool  # time_quality == "gps"
    time_quality: Literal["gps", "none", "stale"]
    time_age_s: float | None  # seconds since the last valid RMC
    latitude: float | None  # last good position (kept when stale, for the astro clock)
    longitude: float | None
    altitude: float | None
    fix_quality: int  # latest GGA's quality if recent, else 0
    satellites: int | None  # latest GGA's, if recent
    hdop: float | None
    position_valid: bool  # recent GGA with quality > 0
    age_s: float | None  # seconds since the last valid fix (GGA quality > 0)


class GpsState:
    """Accumulates sentences; `mono` is a monotonic timestamp in seconds passed in by
    the caller. Data older than `stale_after_s` is stale. Time comes only from a valid
    RMC; position only from a GGA with quality > 0. Other sentences are ignored."""

    def __init__(self, stale_after_s: float = 5.0) -> None:
        if not (isinstance(stale_after_s, (int, float)) and math.isfinite(stale_after_s) and stale_after_s > 0):
            raise ValueError(f"stale_after_s must be a positive number of seconds, got {stale_after_s!r}")
        self.stale_after_s = float(stale_after_s)
        self._time: tuple[dt.datetime, float] | None = None  # (utc, mono) of the last valid RMC
        self._gga: tuple[GGA, float] | None = None  # latest GGA, any quality
        self._fix: tuple[GGA, float] | None = None  # latest GGA with quality > 0

    def feed(self, sentence: Sentence, mono: float) -> None:
        mono = _check_mono(mono)
        if isinstance(sentence, RMC):
            if sentence.valid and sentence.time_utc is not None:
                self._time = (sentence.time_utc, mono)
        elif isinstance(sentence, GGA):
            self._gga = (sentence, mono)
            if sentence.fix_quality > 0 and sentence.latitude is not None and sentence.longitude is not None:
                self._fix = (sentence, mono)

    def snapshot(self, mono: float) -> GpsFix:
        mono = _check_mono(mono)
        time_utc, time_age, quality = None, None, "none"
        if self._time is not None:
            utc, at = self._time
            time_age = max(0.0, mono - at)
            time_utc = utc + dt.timedelta(seconds=time_age)
            quality = "gps" if time_age <= self.stale_after_s else "stale"
        fix_quality, satellites, hdop = 0, None, None
        if self._gga is not None and mono - self._gga[1] <= self.stale_after_s:
            gga = self._gga[0]
            fix_quality, satellites, hdop = gga.fix_quality, gga.satellites, gga.hdop
        lat = lon = alt = age = None
        if self._fix is not None:
            fix, at = self._fix
            lat, lon, alt, age = fix.latitude, fix.longitude, fix.altitude_m, max(0.0, mono - at)
        position_valid = fix_quality > 0 and age is not None and age <= self.stale_after_s
        return GpsFix(
            time_utc=time_utc,
            time_valid=quality == "gps",
            time_quality=quality,  # type: ignore[arg-type]
            time_age_s=time_age,
            latitude=lat,
            longitude=lon,
            altitude=alt,
            fix_quality=fix_quality,
            satellites=satellites,
            hdop=hdop,
            position_valid=position_valid,
            age_s=age,
        )


def _check_mono(mono: float) -> float:
    if isinstance(mono, bool) or not isinstance(mono, (int, float)) or not math.isfinite(mono):
        raise ValueError(f"mono must be a finite monotonic timestamp in seconds, got {mono!r}")
    return float(mono)
