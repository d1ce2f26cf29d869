"""Batch body version 2: points named by their index in the cabinet's point catalogue
(agent/wire/catalogue.py), the series' fields as columns (docs/batch-format.md §1.6).
Pure: no I/O.

    byte 0      0x10 | compression (0 none, 1 zlib, 2 zstd): the high nibble 1 says "version 2"
    bytes 1..8  the catalogue reference (first 8 bytes of its SHA-256 id), not compressed
    bytes 9..   a msgpack array of 11, compressed as byte 0 says: [t0, points, kinds, layout,
                time_a, time_b, time_c, value_orders, values, exceptions, extra]

Values, kinds, decimals and the sparse exceptions of each series are encoded exactly as in
version 1 (agent.wire.batch). Timestamps come in one of two layouts, whichever makes the
smaller body: 0, per series as in version 1 (ns, ts_orders, ts concatenated); 1, one table
of the batch's distinct milliseconds (instants, delta-coded) and, per instant, the series
with a reading then (counts, series): readings of one device poll share an instant, so its
timestamp is sent once per poll, not once per reading. Points are named by index (`points`:
first index, then differences, strictly increasing); index N + k is `extra[k]`, a name the
catalogue (N points) does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any, NamedTuple

import msgpack

from agent.model import Reading
from agent.wire.batch import (
    DEFAULT_COMPRESSION,
    MAX_BODY,
    MAX_MS,
    MAX_READINGS,
    NULL,
    BatchError,
    check_reading,
    compress,
    decode_series,
    decompress,
    series_of,
    split_body,
)
from agent.wire.catalogue import REF_LEN

V2 = 0x10  # high nibble of byte 0
FIELDS = (
    "t0",
    "points",
    "kinds",
    "layout",
    "time_a",
    "time_b",
    "time_c",
    "value_orders",
    "values",
    "exceptions",
    "extra",
)
PER_SERIES, INSTANTS = 0, 1  # time layouts: time_a, b, c = ns, ts_orders, ts | instants, counts, series


class IndexOutside(BatchError):
    """A v2 body names a point index outside its catalogue (and its extra names)."""


class Peek(NamedTuple):
    """What the ingest checks before it stores a v2 body: its catalogue and the point indices."""

    ref: bytes
    indices: list[int]  # strictly increasing
    extra: list[str]


def is_v2(body: bytes) -> bool:
    return bool(body) and body[0] >> 4 == 1


def catalogue_ref(body: bytes) -> bytes:
    """The catalogue reference of a v2 body, without decompressing anything."""
    if not is_v2(body) or len(body) < 1 + REF_LEN:
        raise BatchError("not a version 2 body (byte 0 0x1N, then an 8-byte catalogue reference)")
    return bytes(body[1 : 1 + REF_LEN])


def encode_v2(
    readings: Sequence[Reading],
    *,
    ref: bytes,
    index: Mapping[str, int],
    compression: str = DEFAULT_COMPRESSION,
    layout: int | None = None,
) -> bytes:
    """Readings -> v2 body naming catalogue `ref`, whose points are `index` (name -> index,
    0..N-1). Points not in `index` go to the body's extra names. The time layout is the one
    that makes the smaller body, or `layout` (PER_SERIES, INSTANTS) when given."""
    if not isinstance(ref, bytes) or len(ref) != REF_LEN:
        raise BatchError(f"catalogue reference must be {REF_LEN} bytes")
    n = len(readings)
    if n == 0:
        raise BatchError("a batch needs at least one reading")
    if n > MAX_READINGS:
        raise BatchError(f"{n} readings in one batch; at most {MAX_READINGS}")
    rows = [check_reading(i, r) for i, r in enumerate(readings)]
    size = len(index)
    extra = sorted({row[0] for row in rows if row[0] not in index})
    pos = {**index, **{name: size + k for k, name in enumerate(extra)}}
    rows.sort(key=lambda row: (pos[row[0]], row[1]))  # stable: equal (point, ms) keep input order
    t0 = min(row[1] for row in rows)
    points: list[int] = []
    kinds: list[int] = []
    v_orders: list[int] = []
    values: list[Any] = []
    exceptions: list[list[Any]] = []
    at: dict[int, list[int]] = {}  # ms -> series positions with a reading then (ascending)
    ns: list[int] = []
    ts_orders: list[int] = []
    ts: list[int] = []
    start, last = 0, 0
    for end in range(1, n + 1):
        if end == n or rows[end][0] != rows[start][0]:
            p = pos[rows[start][0]]
            j = len(kinds)
            kind, count, t_order, t_col, v_order, v_col, exc = series_of(rows[start:end], t0)
            ns.append(count)
            ts_orders.append(t_order)
            ts.extend(t_col)
            points.append(p - last)
            last = p
            kinds.append(kind)
            for row in rows[start:end]:
                at.setdefault(row[1], []).append(j)
            v_orders.append(v_order)
            if kind != NULL:
                values.extend(v_col)
            if exc:
                exceptions.append([j, *exc])
            start = end
    instants = sorted(at)
    times = (
        [PER_SERIES, ns, ts_orders, ts],
        [
            INSTANTS,
            _delta([m - t0 for m in instants]),
            [len(at[m]) for m in instants],
            [d for m in instants for d in _delta(at[m])],
        ],
    )
    best = b""
    for cols in times:  # both time layouts; the smaller body is sent (ties: per series)
        if layout is not None and cols[0] != layout:
            continue
        try:
            raw = msgpack.packb([t0, points, kinds, *cols, v_orders, values, exceptions, extra], use_bin_type=True)
        except UnicodeEncodeError:
            raise BatchError("a reading's text is not valid Unicode (lone surrogates)") from None
        body = compress(raw, compression, high=V2)
        if not best or len(body) < len(best):
            best = body
    return best[:1] + ref + best[1:]


def _delta(xs: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *xs], xs, strict=False)]


def _doc(data: bytes) -> list[Any]:
    method, payload = split_body(data)
    if method >> 4 != 1:
        raise BatchError(f"byte 0 0x{method:02x} is not a version 2 body (0x10..0x12)")
    if len(payload) < REF_LEN:
        raise BatchError("version 2 body is too short for its catalogue reference")
    raw = decompress(method & 0x0F, payload[REF_LEN:])
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
            max_map_len=0,
        )
    except Exception as e:  # noqa: BLE001 - msgpack raises several types (ExtraData, ValueError, UnicodeDecodeError ...)
        raise BatchError(f"batch body is not valid msgpack: {type(e).__name__}: {e}") from None
    if not isinstance(doc, list) or len(doc) != len(FIELDS):
        raise BatchError(f"version 2 body must be a {len(FIELDS)}-element array [{', '.join(FIELDS)}]")
    for name, col in zip(FIELDS, doc, strict=True):
        if name not in ("t0", "layout") and not isinstance(col, list):
            raise BatchError(f"{name} must be an array")
    return doc


def _indices(deltas: list[Any]) -> list[int]:
    if not deltas:
        raise BatchError("points must name at least one point")
    if any(type(d) is not int for d in deltas) or deltas[0] < 0 or any(d < 1 for d in deltas[1:]):
        raise BatchError("points must be the first index (>= 0), then differences >= 1 (strictly increasing)")
    return list(accumulate(deltas))


def peek(data: bytes) -> Peek:
    """The catalogue reference, point indices and extra names of a v2 body (decompressed and
    unpacked, series not decoded). BatchError if malformed."""
    ref = catalogue_ref(data)
    doc = _doc(data)
    extra = doc[10]
    if any(not isinstance(x, str) or not x for x in extra) or extra != sorted(set(extra)):
        raise BatchError("extra must be unique non-empty point names in code-point order")
    return Peek(ref, _indices(doc[1]), extra)


def check_indices(p: Peek, size: int) -> None:
    """IndexOutside when an index is outside a catalogue of `size` points plus the extra names."""
    top = size + len(p.extra)
    if p.indices[-1] >= top:
        raise IndexOutside(
            f"point index {p.indices[-1]} is outside the catalogue ({size} points, {len(p.extra)} extra names)"
        )
    if p.extra and p.indices[-len(p.extra) :] != list(range(size, top)):
        raise IndexOutside("every extra name must be used by exactly one series")


def decode_v2(data: bytes, names: Sequence[str]) -> list[Reading]:
    """v2 body + the point names of its catalogue (in index order) -> readings, grouped by point
    in index order, then by time. BatchError naming what is wrong (IndexOutside for an index
    outside the catalogue)."""
    p = peek(data)
    check_indices(p, len(names))
    doc = _doc(data)
    t0, _, kinds, layout, time_a, time_b, time_c, v_orders, values, exceptions, extra = doc
    if type(t0) is not int or not -MAX_MS <= t0 <= MAX_MS:
        raise BatchError(f"t0 must be an integer in {-MAX_MS}..{MAX_MS}, got {t0!r}")
    m = len(p.indices)
    if not len(kinds) == len(v_orders) == m:
        raise BatchError(f"kinds and value_orders must have one entry per point ({m})")
    if layout == INSTANTS and type(layout) is int:
        ts = _times(time_a, time_b, time_c, m)
        ns, ts_orders = [len(x) for x in ts], [0] * m
    elif layout == PER_SERIES and type(layout) is int:
        ns, ts_orders, ts = _per_series(time_a, time_b, time_c, m)
    else:
        raise BatchError(f"layout must be {PER_SERIES} (per series) or {INSTANTS} (instants), got {layout!r}")
    n_values = sum(k for kind, k in zip(kinds, ns, strict=True) if kind != NULL)
    if len(values) != n_values:
        raise BatchError(f"values must hold one entry per reading of a non-null series ({n_values})")
    exc: dict[int, list[Any]] = {}
    for e in exceptions:
        if not isinstance(e, list) or not e or type(e[0]) is not int or not 0 <= e[0] < m or e[0] in exc:
            raise BatchError("exceptions must be [series position, gap, quality, reason, ...] entries, one per series")
        if exc and e[0] < max(exc):
            raise BatchError("exceptions must be in series order")
        exc[e[0]] = e[1:]
    all_names = [*names, *extra]
    out: list[Reading] = []
    v_at = 0
    for j, (idx, kind, k) in enumerate(zip(p.indices, kinds, ns, strict=True)):
        has_values = kind != NULL
        one = [
            kind,
            k,
            ts_orders[j],
            ts[j],
            v_orders[j],
            values[v_at : v_at + k] if has_values else None,
            exc.get(j, []),
        ]
        v_at += k if has_values else 0
        decode_series(all_names[idx], j, one, t0, out)
    return out


def _per_series(ns: list[Any], ts_orders: list[Any], ts: list[Any], m: int) -> tuple[list[int], list[Any], list[Any]]:
    """Layout 0: per series its count, delta order and ts column (checked by decode_series)."""
    if not len(ns) == len(ts_orders) == m:
        raise BatchError(f"ns and ts_orders must have one entry per point ({m})")
    if any(type(k) is not int or not 1 <= k <= MAX_READINGS for k in ns) or sum(ns) > MAX_READINGS:
        raise BatchError(f"ns must be integers 1..{MAX_READINGS}, at most {MAX_READINGS} readings in all")
    if len(ts) != sum(ns):
        raise BatchError(f"ts must hold one entry per reading ({sum(ns)})")
    cols, at = [], 0
    for k in ns:
        cols.append(ts[at : at + k])
        at += k
    return ns, ts_orders, cols


def _times(instants: list[Any], counts: list[Any], series: list[Any], m: int) -> list[list[int]]:
    """Per series, its readings' ms − t0 (ascending), from the instants table."""
    if len(counts) != len(instants) or any(type(c) is not int or c < 1 for c in counts):
        raise BatchError("counts must hold one integer >= 1 per instant")
    if len(series) != sum(counts) or sum(counts) > MAX_READINGS:
        raise BatchError(f"series must hold sum(counts) entries, at most {MAX_READINGS}")
    if any(type(d) is not int for d in instants) or any(d < 1 for d in instants[1:]) or instants[:1] != [0]:
        raise BatchError("instants must be 0 (t0), then differences >= 1 (strictly increasing)")
    if any(type(d) is not int for d in series):
        raise BatchError("series must hold integers")
    ts: list[list[int]] = [[] for _ in range(m)]
    at = 0
    for ms, c in zip(accumulate(instants), counts, strict=True):
        j = -1
        for k, d in enumerate(series[at : at + c]):
            j = d if k == 0 else j + d
            if d < 0 or not 0 <= j < m:
                raise BatchError(f"series: position {j} at instant {ms} is not one of the {m} series (or decreasing)")
            ts[j].append(ms)
        at += c
    if any(not x for x in ts):
        raise BatchError("every series must have at least one reading")
    return ts
