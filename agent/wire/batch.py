"""The telemetry batch body: a list of Readings <-> compact bytes (pure, no I/O).

This module owns the body format described in docs/batch-format.md: one
compression byte, then a columnar, delta-coded msgpack document (version 1)
holding the point names of the batch and, per point, its timestamps, values,
and the readings whose quality is not good (sparse). Signing and topics live in
agent.wire.cose; this module knows nothing of keys or MQTT.

`decode_body` treats its input as hostile: every field is type- and
range-checked, the decompressed size and the number of readings are capped, and
anything wrong raises BatchError naming the field. Readings come back grouped by
point (names in code-point order), then by time; `t` is rounded to whole
milliseconds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import Any

import msgpack
import zstandard

from agent.model import QUALITY_CODES, QUALITY_OF_CODE, Quality, Reading

VERSION = 1
MAX_BODY = 16 * 1024 * 1024  # decompressed msgpack bytes
MAX_READINGS = 200_000
MAX_DECIMALS = 6
MAX_MS = 2**53  # |t| in ms; also the bound of a decimal's scaled integer
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# compression byte (byte 0 of the body)
NONE, ZLIB, ZSTD = 0, 1, 2
COMPRESSION = {"none": NONE, "zlib": ZLIB, "zstd": ZSTD}
DEFAULT_COMPRESSION = "zstd"
ZSTD_LEVEL, ZLIB_LEVEL = 19, 9

# value kinds of a series; decimal with d digits is DECIMAL + d
NULL, BOOL, INT, FLOAT, STR, MIXED, DECIMAL = 0, 1, 2, 3, 4, 5, 16
# quality codes: agent.model.QUALITY_CODES (the one table, shared with the outbox)
_POW10 = tuple(10**d for d in range(MAX_DECIMALS + 1))


class BatchError(ValueError):
    """A batch cannot be encoded (unsupported reading) or decoded (malformed bytes)."""


# ---------------------------------------------------------------------- encoding


def encode_body(readings: Sequence[Reading], *, compression: str = DEFAULT_COMPRESSION) -> bytes:
    """Readings -> body bytes. Raises BatchError for an empty batch, too many readings
    or a reading the format cannot carry (the message names the reading)."""
    if compression not in COMPRESSION:
        raise BatchError(f"compression must be one of {sorted(COMPRESSION)}, not {compression!r}")
    n = len(readings)
    if n == 0:
        raise BatchError("a batch needs at least one reading")
    if n > MAX_READINGS:
        raise BatchError(f"{n} readings in one batch; at most {MAX_READINGS}")
    rows = [_row(i, r) for i, r in enumerate(readings)]
    rows.sort(key=lambda row: (row[0], row[1]))  # stable: equal (point, ms) keep input order
    t0 = min(row[1] for row in rows)
    names: list[str] = []
    series: list[list[Any]] = []
    start = 0
    for end in range(1, n + 1):
        if end == n or rows[end][0] != rows[start][0]:
            names.append(rows[start][0])
            series.append(_series(rows[start:end], t0))
            start = end
    try:
        raw = msgpack.packb([VERSION, t0, names, series], use_bin_type=True)
    except UnicodeEncodeError:
        i = next(i for i, r in enumerate(readings) if not all(_utf8(x) for x in (r[0], r[2], r[4])))
        raise BatchError(f"reading {i} ({readings[i][0]!r}): text is not valid Unicode (lone surrogates)") from None
    return compress(raw, compression)


def compress(raw: bytes, compression: str = DEFAULT_COMPRESSION, high: int = 0) -> bytes:
    """msgpack document -> compression byte (`high` | method) + compressed bytes; stored as
    is (method 0) when compressing does not make it smaller."""
    if len(raw) > MAX_BODY:
        raise BatchError(f"encoded batch is {len(raw)} bytes; at most {MAX_BODY} (split the batch)")
    if compression == "zstd":
        packed = bytes([high | ZSTD]) + zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_checksum=False, write_content_size=True
        ).compress(raw)
    elif compression == "zlib":
        packed = bytes([high | ZLIB]) + zlib.compress(raw, ZLIB_LEVEL)
    else:
        packed = b""
    if not packed or len(packed) > len(raw) + 1:  # compression did not pay: store as is
        packed = bytes([high | NONE]) + raw
    return packed


def _row(i: int, r: Any) -> tuple[str, int, Any, int, str | None]:
    """Validate one reading -> (point, ms, value, quality code, reason)."""
    try:
        point, t, value, quality, reason = r
    except (TypeError, ValueError):
        raise BatchError(f"reading {i}: not a Reading (point, t, value, quality, reason): {r!r}") from None
    # fast path: the common shapes, exact types, checked as strictly as below
    tt, tv = type(t), type(value)
    if (
        type(point) is str
        and point
        and (tt is float or tt is int)
        and -MAX_S < t < MAX_S
        and (tv is float or tv is bool or value is None or (tv is int and INT_MIN <= value <= INT_MAX))
        and reason is None
    ):
        q = _QUALITY_FAST.get(quality)
        if q is not None:
            return point, round(t * 1000), value, q, None
    if not isinstance(point, str) or not point:
        raise BatchError(f"reading {i}: point must be a non-empty str, got {point!r}")
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise BatchError(f"reading {i} ({point}): t must be seconds as int or float, got {t!r}")
    if not math.isfinite(t) or abs(t) * 1000 > MAX_MS:
        raise BatchError(f"reading {i} ({point}): t = {t!r} is not a finite time within ±{MAX_MS // 1000} s")
    ms = round(t * 1000)
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise BatchError(
            f"reading {i} ({point}): value type {type(value).__name__} is not bool, int, float, str or None"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT_MIN <= value <= INT_MAX:
            raise BatchError(f"reading {i} ({point}): int value {value} does not fit in 64 bits")
        value = int(value)  # IntEnum etc. -> plain int
    elif isinstance(value, float):
        value = float(value)
    elif isinstance(value, str):
        value = str(value)
    try:
        q = QUALITY_CODES[Quality(quality)]
    except ValueError:
        raise BatchError(f"reading {i} ({point}): unknown quality {quality!r}") from None
    if reason is not None and not isinstance(reason, str):
        raise BatchError(f"reading {i} ({point}): reason must be str or None, got {reason!r}")
    return point, ms, value, q, reason


_QUALITY_FAST = {q: QUALITY_CODES[q] for q in Quality}  # Quality is a str enum: "good" finds it too
MAX_S = MAX_MS / 1000


def _utf8(x: Any) -> bool:
    if isinstance(x, str):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _kind(values: list[Any]) -> int:
    types = {type(v) for v in values if v is not None}
    if not types:
        return NULL
    if len(types) > 1:
        return MIXED
    t = types.pop()
    if t is float:
        d = _decimals([v for v in values if v is not None])
        return FLOAT if d is None else DECIMAL + d
    return {bool: BOOL, int: INT, str: STR}[t]


def _fits(v: float, d: int) -> bool:
    """Does v come back bit-exactly as round(v * 10^d) / 10^d (sign of zero included)?"""
    n = round(v * _POW10[d])
    return abs(n) <= MAX_MS and n / _POW10[d] == v and (n != 0 or math.copysign(1.0, v) > 0)


def _decimals(floats: list[float]) -> int | None:
    """The smallest d in 0..6 at which every value round-trips, or None (store float64).

    The shortest repr of a float tells its decimals d. For |v| * 10^d < 2^50 that is
    exact: round(v * 10^d) is the integer the repr shows (the product's error is below
    1/4), and IEEE division is correctly rounded, so it gives back the double nearest
    that decimal, which is v. Larger magnitudes, exponent forms and the sign of zero
    are checked with _fits."""
    distinct = set(floats)  # 0.0 == -0.0: a set keeps one of them
    if 0.0 in distinct and any(v == 0.0 and math.copysign(1.0, v) < 0 for v in floats):
        return None  # -0.0 keeps its sign only as a float64
    reps = list(map(repr, distinct))
    joined = "".join(reps)
    if "e" in joined or "n" in joined:  # an exponent form, inf or nan somewhere: one by one
        return _decimals_search(distinct)
    # "230.0" -> 0, "230.12" -> 2 (a shortest repr has no other trailing zeros)
    need = max(len(r.rstrip("0")) - r.index(".") for r in reps) - 1
    biggest = max(max(distinct), -min(distinct))
    if need > MAX_DECIMALS or biggest > MAX_MS:
        return None
    if biggest * _POW10[need] >= 2.0**50:  # where the shortcut is not exact: check, go finer
        big = [v for v in distinct if abs(v) * _POW10[need] >= 2.0**50]
        while not all(_fits(v, need) for v in big):
            need += 1
            if need > MAX_DECIMALS:
                return None
    return need


def _decimals_search(distinct: set[float]) -> int | None:
    if not all(math.isfinite(v) and abs(v) <= MAX_MS for v in distinct):
        return None
    need = 0
    while not all(_fits(v, need) for v in distinct):
        need += 1
        if need > MAX_DECIMALS:
            return None
    return need


_SAFE_MAGNITUDE = 2.0**50 / 10**6  # below this, |v| * 10^d < 2^50 for every d <= 6


def _delta(xs: list[int]) -> list[int]:
    return [b - a for a, b in pairwise([0, *xs])]


def _best_deltas(xs: list[int]) -> tuple[int, list[int]]:
    """Delta order 0, 1 or 2, whichever packs smallest (ties: lower order)."""
    best = (0, xs)
    size = len(msgpack.packb(xs))
    cur = xs
    for order in (1, 2):
        cur = _delta(cur)
        if cur and (min(cur) < INT_MIN or max(cur) > INT_MAX):
            break
        s = len(msgpack.packb(cur))
        if s < size:
            best, size = (order, cur), s
    return best


def _series(rows: list[tuple[str, int, Any, int, str | None]], t0: int) -> list[Any]:
    ts_order, ts = _best_deltas([row[1] - t0 for row in rows])
    values = [row[2] for row in rows]
    kind = _kind(values)
    v_order = 0
    column: list[Any] | None = values
    if kind == NULL:
        column = None
    elif kind == INT or kind >= DECIMAL:
        if kind >= DECIMAL:
            scale = _POW10[kind - DECIMAL]
            values = [None if v is None else round(v * scale) for v in values]
        present = [v for v in values if v is not None]
        v_order, coded = _best_deltas(present)
        it = iter(coded)
        column = [None if v is None else next(it) for v in values]
    exceptions: list[Any] = []
    last = -1
    for i, row in enumerate(rows):
        if row[3] or row[4] is not None:
            exceptions += (i - last - 1, row[3], row[4])
            last = i
    return [kind, len(rows), ts_order, ts, v_order, column, exceptions]


# ---------------------------------------------------------------------- decoding


def _unpack(data: bytes) -> tuple[int, list[Any], list[Any]]:
    """Body bytes -> (t0, names, series) after the checks that need no per-reading work."""
    raw = _decompress(*_split(data))
    try:
        doc = msgpack.unpackb(
            raw,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_BODY,
            max_bin_len=0,
            max_ext_len=0,
            max_array_len=3 * MAX_READINGS,
            max_map_len=16,
        )
    except Exception as e:  # noqa: BLE001 - msgpack raises several types (ExtraData, ValueError, UnicodeDecodeError ...)
        raise BatchError(f"batch body is not valid msgpack: {type(e).__name__}: {e}") from None
    if not isinstance(doc, list) or len(doc) != 4:
        raise BatchError("batch body must be a 4-element array [version, t0, names, series]")
    version, t0, names, series = doc
    if not isinstance(series, list):
        raise BatchError("series must be an array with one entry per name")
    return _check_head(version, t0, names, len(series)), names, series


def _split(data: bytes) -> tuple[int, bytes]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BatchError(f"batch body must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BatchError("batch body is empty (no compression byte)")
    return data[0], data[1:]


def _check_head(version: Any, t0: Any, names: Any, n_series: int) -> int:
    """Checks of version, t0 and names -> t0."""
    if type(version) is not int or version != VERSION:
        raise BatchError(f"unsupported batch version {version!r} (this decoder reads version {VERSION})")
    start = _int(t0, "t0", -MAX_MS, MAX_MS)
    if not isinstance(names, list) or not names:
        raise BatchError("names must be a non-empty array of point names")
    if n_series != len(names):
        raise BatchError(f"series must be an array with one entry per name ({len(names)})")
    return start


def decode_body(data: bytes) -> list[Reading]:
    """Body bytes -> readings (grouped by point in name order, then by time).
    Raises BatchError naming what is wrong for any malformed input."""
    t0, names, series = _unpack(data)
    out: list[Reading] = []
    prev = None
    for p, (name, s) in enumerate(zip(names, series, strict=True)):  # _check_head: as many series as names
        if not isinstance(name, str) or not name:
            raise BatchError(f"names[{p}] must be a non-empty string, got {name!r}")
        if prev is not None and not prev < name:
            raise BatchError(f"names[{p}] {name!r}: names must be unique and in code-point order")
        prev = name
        _decode_series(name, p, s, t0, out)
        if len(out) > MAX_READINGS:
            raise BatchError(f"more than {MAX_READINGS} readings in one batch")
    return out


_ZSTD_D = zstandard.ZstdDecompressor(max_window_size=1 << 24)  # reusable, one call at a time (no threads here)


def _decompress(method: int, payload: bytes) -> bytes:
    if method == NONE:
        raw = payload
    elif method == ZLIB:
        d = zlib.decompressobj()
        try:
            raw = d.decompress(payload, MAX_BODY + 1)
        except zlib.error as e:
            raise BatchError(f"zlib body is corrupt: {e}") from None
        if len(raw) > MAX_BODY:
            raise BatchError(f"zlib body inflates to more than {MAX_BODY} bytes")
        if not d.eof:
            raise BatchError("zlib body is truncated")
        if d.unused_data:
            raise BatchError(f"{len(d.unused_data)} bytes after the end of the zlib stream")
    elif method == ZSTD:
        try:
            size = zstandard.frame_content_size(payload)
        except zstandard.ZstdError as e:
            raise BatchError(f"zstd body has no valid frame header: {e}") from None
        if size < 0:
            raise BatchError("zstd frame does not declare its content size")
        if size > MAX_BODY:
            raise BatchError(f"zstd body declares {size} bytes; at most {MAX_BODY}")
        try:
            raw = _ZSTD_D.decompress(payload, max_output_size=MAX_BODY, allow_extra_data=False)
        except zstandard.ZstdError as e:
            raise BatchError(f"zstd body is corrupt: {e}") from None
        if len(raw) != size:
            raise BatchError(f"zstd body is {len(raw)} bytes, its header says {size}")
    elif method >> 4 == 1:
        raise BatchError(f"byte 0 0x{method:02x}: a version 2 body, decoded with its catalogue (agent.wire.batch_v2)")
    else:
        raise BatchError(f"unknown compression byte 0x{method:02x} (0 none, 1 zlib, 2 zstd)")
    if len(raw) > MAX_BODY:
        raise BatchError(f"body is {len(raw)} bytes; at most {MAX_BODY}")
    return raw


def _int(x: Any, what: str, lo: int, hi: int) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise BatchError(f"{what} must be an integer in {lo}..{hi}, got {x!r}")
    return x


def _undelta(xs: list[int], order: int) -> list[int]:
    for _ in range(order):
        xs = list(accumulate(xs))
    return xs


def _decode_series(name: str, p: int, s: Any, t0: int, out: list[Reading]) -> None:
    where = f"series[{p}] ({name})"
    if not isinstance(s, list) or len(s) != 7:
        raise BatchError(f"{where} must be a 7-element array [kind, n, ts_order, ts, value_order, values, exceptions]")
    kind, n, ts_order, ts, v_order, values, exc = s
    kind = _int(kind, f"{where} kind", 0, DECIMAL + MAX_DECIMALS)
    if MIXED < kind < DECIMAL:
        raise BatchError(f"{where}: unknown value kind {kind}")
    n = _int(n, f"{where} n", 1, MAX_READINGS)
    ts_order = _int(ts_order, f"{where} ts_order", 0, 2)
    v_order = _int(v_order, f"{where} value_order", 0, 2)
    if not isinstance(ts, list) or len(ts) != n:
        raise BatchError(f"{where}: ts must be an array of n = {n} integers")
    if any(type(x) is not int for x in ts):
        raise BatchError(f"{where}: ts must hold integers only")
    ms = _undelta(ts, ts_order)
    if any(b < a for a, b in pairwise(ms)):
        raise BatchError(f"{where}: timestamps must not decrease")
    if ms[0] < 0 or t0 + ms[-1] > MAX_MS:
        raise BatchError(f"{where}: timestamps out of range (before t0 or beyond {MAX_MS} ms)")
    vals = _decode_values(where, kind, n, v_order, values)
    qs = [Quality.GOOD] * n
    reasons: list[str | None] = [None] * n
    if not isinstance(exc, list) or len(exc) % 3:
        raise BatchError(f"{where}: exceptions must be an array of (gap, quality, reason) triples")
    i = -1
    for k in range(0, len(exc), 3):
        gap, q, reason = exc[k : k + 3]
        i += _int(gap, f"{where} exception {k // 3} gap", 0, n - 1) + 1
        if i >= n:
            raise BatchError(f"{where}: exception {k // 3} points past the last reading")
        q = _int(q, f"{where} exception {k // 3} quality", 0, 3)
        if reason is not None and not isinstance(reason, str):
            raise BatchError(f"{where}: exception {k // 3} reason must be a string or nil")
        if q == 0 and reason is None:
            raise BatchError(f"{where}: exception {k // 3} is good with no reason (must be left out)")
        qs[i], reasons[i] = QUALITY_OF_CODE[q], reason
    out.extend(Reading(name, (t0 + m) / 1000, v, q, r) for m, v, q, r in zip(ms, vals, qs, reasons, strict=True))


_TYPES = {BOOL: (bool,), INT: (int,), FLOAT: (float,), STR: (str,), MIXED: (bool, int, float, str)}


def _decode_values(where: str, kind: int, n: int, order: int, values: Any) -> list[Any]:
    if kind == NULL:
        if values is not None or order:
            raise BatchError(f"{where}: a null-only series has nil values and value_order 0")
        return [None] * n
    if not isinstance(values, list) or len(values) != n:
        raise BatchError(f"{where}: values must be an array of n = {n} entries")
    numeric = kind == INT or kind >= DECIMAL
    if order and not numeric:
        raise BatchError(f"{where}: value_order must be 0 for a non-numeric series")
    allowed = (int,) if numeric else _TYPES[kind]
    for j, v in enumerate(values):
        if v is not None and type(v) not in allowed:
            raise BatchError(f"{where}: values[{j}] = {v!r} does not fit the series kind {kind}")
    if not numeric:
        return values
    present = _undelta([v for v in values if v is not None], order)
    if kind == INT:
        lo, hi = INT_MIN, INT_MAX
    else:
        lo, hi, scale = -MAX_MS, MAX_MS, _POW10[kind - DECIMAL]
    if present and not (lo <= min(present) and max(present) <= hi):
        raise BatchError(f"{where}: values out of range {lo}..{hi}")
    if kind != INT:
        present = [x / scale for x in present]
    it = iter(present)
    return [None if v is None else next(it) for v in values]


# the parts batch format v2 (agent/wire/batch_v2.py) shares with version 1
check_reading = _row
series_of = _series
split_body = _split
decompress = _decompress
decode_series = _decode_series
