"""The batch body codec: round trips of every value kind, the canonical order, the
decimal choice, sizes on simulated cabinet and W1 data, and malformed input.

`python tests/test_batch.py` prints the size/speed table of docs/batch-format.md.
"""

from __future__ import annotations

import math
import random
import struct
import sys
import time
import zlib
from typing import Any

import msgpack
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import Quality, Reading
from agent.wire import batch, cose
from agent.wire.batch import BatchError, decode_body, encode_body

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
G = Quality.GOOD


def canonical(readings) -> list[Reading]:
    """What decode returns: t rounded to ms, sorted by point then time (stable)."""
    rs = [r._replace(t=round(r.t * 1000) / 1000) for r in readings]
    return sorted(rs, key=lambda r: (r.point, round(r.t * 1000)))


def exact(readings) -> list[tuple]:
    """Compare values by type and repr, so 1 != 1.0 != True, -0.0 != 0.0 and nan == nan."""
    return [(r.point, r.t, type(r.value).__name__, repr(r.value), Quality(r.quality), r.reason) for r in readings]


def doc(body: bytes) -> list:
    raw = (
        zstandard.ZstdDecompressor().decompress(body[1:])
        if body[0] == 2
        else zlib.decompress(body[1:])
        if body[0] == 1
        else body[1:]
    )
    return msgpack.unpackb(raw)


def kinds(readings) -> dict[str, int]:
    d = doc(encode_body(readings, compression="none"))
    return {name: s[0] for name, s in zip(d[2], d[3], strict=True)}  # one series per name


def raw_body(document) -> bytes:
    return b"\x00" + msgpack.packb(document)


# ---------------------------------------------------------------------- simulated data


def f32(v: float) -> float:
    """A float32 register value as the driver reports it (7 significant digits)."""
    x = struct.unpack(">f", struct.pack(">f", v))[0]
    return float(f"{x:.7g}")


def cabinet_readings(n: int, seed: int = 1) -> list[Reading]:
    """A street cabinet: GPS and I/O every 1 s, meters every 5 s, climate/lux/UPS every 10 s,
    a few ms of poll jitter, now and then a timed-out meter."""
    rnd = random.Random(seed)
    out: list[Reading] = []
    s = {
        "v1": 230.0,
        "v2": 231.0,
        "v3": 229.5,
        "e": 123456.78,
        "e1": 4567.89,
        "e2": 3456.12,
        "temp": 21.3,
        "hum": 45.0,
        "lux": 120,
    }
    sec = 0
    while len(out) < n:
        t = T0 + sec
        tg, td = t + rnd.randint(0, 40) / 1000, t + rnd.randint(0, 40) / 1000
        out += [
            Reading("gps.lat", tg, round(52.521912 + rnd.gauss(0, 4e-6), 6), G),
            Reading("gps.lon", tg, round(13.413215 + rnd.gauss(0, 4e-6), 6), G),
            Reading("io.door", td, sec % 600 > 580, G),
            Reading("relay.k1", td, True, G),
            Reading("relay.k2", td, False, G),
        ]
        if sec % 5 == 0:
            tm = t + rnd.randint(0, 40) / 1000
            for k, ph in (("v1", 1), ("v2", 2), ("v3", 3)):
                s[k] = round(s[k] + rnd.gauss(0, 0.15), 2)
                out.append(Reading(f"meter_main.voltage_l{ph}", tm, s[k], G))
                out.append(Reading(f"meter_main.current_l{ph}", tm, round(4 + rnd.gauss(0, 0.05), 3), G))
            s["e"] = round(s["e"] + 0.004, 2)
            out += [
                Reading("meter_main.power", tm, round(2760 + rnd.gauss(0, 15), 1), G),
                Reading("meter_main.frequency", tm, round(50 + rnd.gauss(0, 0.02), 2), G),
                Reading("meter_main.pf", tm, round(0.97 + rnd.gauss(0, 0.005), 3), G),
                Reading("meter_main.energy", tm, s["e"], G),
            ]
            for seg in (1, 2):
                ts = t + rnd.randint(0, 40) / 1000
                if rnd.random() < 0.02:
                    out += [
                        Reading(f"meter_seg{seg}.voltage", ts, None, Quality.BAD, "timeout"),
                        Reading(f"meter_seg{seg}.energy", ts, None, Quality.BAD, "timeout"),
                    ]
                    continue
                s[f"e{seg}"] = round(s[f"e{seg}"] + 0.002, 2)
                out += [
                    Reading(f"meter_seg{seg}.voltage", ts, round(230 + rnd.gauss(0, 0.4), 2), G),
                    Reading(f"meter_seg{seg}.energy", ts, s[f"e{seg}"], G),
                ]
        if sec % 10 == 0:
            tc = t + rnd.randint(0, 40) / 1000
            s["temp"] = round(s["temp"] + rnd.choice((-0.1, 0, 0, 0.1)), 1)
            s["hum"] = round(s["hum"] + rnd.choice((-0.1, 0, 0, 0.1)), 1)
            s["lux"] = max(0, s["lux"] + rnd.randint(-3, 3))
            out += [
                Reading("climate.temperature", tc, s["temp"], G),
                Reading("climate.humidity", tc, s["hum"], G),
                Reading("lux.lux", tc, s["lux"], G),
                Reading("ups.battery_v", tc, round(27.3 + rnd.gauss(0, 0.02), 2), G),
                Reading("ups.state", tc, "online", G),
            ]
        sec += 1
    return out[:n]


def w1_readings(n: int, seed: int = 1) -> list[Reading]:
    """W1 (docs/benchmarks.md): 10 devices x (10 int16 scale 0.1 + 5 float32) per second,
    the values of tools/bench/simserver.py."""
    rnd = random.Random(seed)
    out: list[Reading] = []
    sec = 0
    while len(out) < n:
        t = T0 + sec
        for dev in range(10):
            td = t + rnd.randint(0, 25) / 1000
            out += [
                Reading(f"dev{dev:02d}.i{k}", td, round(20 + 10 * math.sin(t / 7 + k + dev), 1), G) for k in range(10)
            ]
            out += [Reading(f"dev{dev:02d}.f{k}", td, f32(230 + 5 * math.sin(t / 3 + k + dev)), G) for k in range(5)]
        sec += 1
    return out[:n]


KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TOPIC = "city/v1/cab/CAB-SIM-0001/telemetry"


def sealed_size(readings, compression=batch.DEFAULT_COMPRESSION) -> int:
    body = encode_body(readings, compression=compression)
    return len(
        cose.seal_batch(
            body, key=KEY, kid=cose.key_id(KEY.public_key()), cabinet="CAB-SIM-0001", boot=12, seq=123456, topic=TOPIC
        )
    )


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("gen", [cabinet_readings, w1_readings])
@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
def test_simulated_batches_round_trip(gen, compression):
    rs = gen(1500)
    body = encode_body(rs, compression=compression)
    assert body[0] == batch.COMPRESSION[compression]
    assert exact(decode_body(body)) == exact(canonical(rs))


POINTS = st.sampled_from(["a", "b.x", "b.y", "zz", "ä.1"])
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(batch.INT_MIN, batch.INT_MAX),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**9), 10**9).map(lambda n: n / 100),
    st.integers(-(10**7), 10**7).map(lambda n: n / 10),
)
TIMES = st.one_of(
    st.integers(0, 10**7).map(lambda ms: T0 + ms / 1000), st.floats(-1e12, 1e12), st.integers(-(10**9), 10**9)
)
READING = st.builds(Reading, POINTS, TIMES, VALUES, st.sampled_from(list(Quality)), st.none() | st.text(max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.lists(READING, min_size=1, max_size=40), st.sampled_from(["none", "zlib", "zstd"]))
def test_round_trip_any_readings(rs, compression):
    assert exact(decode_body(encode_body(rs, compression=compression))) == exact(canonical(rs))


DECIMAL_FLOATS = (
    st.builds(lambda n, d: n / 10**d, st.integers(-(2**54), 2**54), st.integers(0, 7))
    | st.floats(-1e17, 1e17)
    | st.sampled_from([0.0, -0.0, 0.1 + 0.2, 1e-7, 2.0**50 / 1000 + 0.001])
)


def _brute_decimals(vs):
    return next((d for d in range(batch.MAX_DECIMALS + 1) if all(batch._fits(v, d) for v in vs)), None)


@settings(max_examples=500, deadline=None)
@given(st.lists(DECIMAL_FLOATS, min_size=1, max_size=12))
def test_decimals_shortcut_is_the_smallest_exact_choice(vs):
    assert batch._decimals(vs) == _brute_decimals(vs)
    rs = [Reading("p", T0 + i, v, G) for i, v in enumerate(vs)]
    assert exact(decode_body(encode_body(rs))) == exact(rs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(batch.INT_MIN, batch.INT_MAX)), min_size=1, max_size=30))
def test_extreme_int_series_round_trip(values):
    rs = [Reading("p", T0 + i, v, G) for i, v in enumerate(values)]
    assert exact(decode_body(encode_body(rs))) == exact(rs)


def test_timestamps_round_to_milliseconds():
    rs = [
        Reading("p", T0 + 0.0004, 1, G),
        Reading("p", T0 + 0.0006, 2, G),
        Reading("q", -1.25, 3, G),
        Reading("q", 5, 4, G),
    ]
    out = decode_body(encode_body(rs))
    assert [r.t for r in out] == [T0, T0 + 0.001, -1.25, 5.0]


def test_order_is_by_point_then_time_and_stable_for_ties():
    rs = [
        Reading("b", 3.0, 1, G),
        Reading("a", 2.0, "x", G),
        Reading("b", 1.0, 2, G),
        Reading("a", 2.0, "y", G),
        Reading("a", 1.0, "z", G),
    ]
    assert [(r.point, r.t, r.value) for r in decode_body(encode_body(rs))] == [
        ("a", 1.0, "z"),
        ("a", 2.0, "x"),
        ("a", 2.0, "y"),
        ("b", 1.0, 2),
        ("b", 3.0, 1),
    ]


def test_quality_and_reason_survive_on_any_value():
    rs = [
        Reading("p", 1.0, 230.1, Quality.STALE, "old"),
        Reading("p", 2.0, None, Quality.BAD, "timeout"),
        Reading("p", 3.0, 230.2, Quality.SUBSTITUTED, None),
        Reading("p", 4.0, 230.3, G, "note on a good one"),
        Reading("p", 5.0, 230.4, "good", None),  # type: ignore[arg-type]  # a plain str quality is accepted
    ]
    assert exact(decode_body(encode_body(rs))) == exact(rs)
    assert all(type(r.quality) is Quality for r in decode_body(encode_body(rs)))


def test_nan_inf_and_negative_zero_are_kept_as_float64():
    rs = [
        Reading("n", 1.0, math.nan, Quality.BAD, "sensor"),
        Reading("n", 2.0, 1.5, G),
        Reading("i", 1.0, math.inf, G),
        Reading("i", 2.0, -math.inf, G),
        Reading("z", 1.0, -0.0, G),
    ]
    out = decode_body(encode_body(rs))
    assert exact(out) == exact(canonical(rs))
    assert math.copysign(1, next(r for r in out if r.point == "z").value) == -1
    assert kinds(rs) == {"i": batch.FLOAT, "n": batch.FLOAT, "z": batch.FLOAT}


def test_value_kind_and_decimal_choice():
    rs = [
        Reading("v", 1.0, 230.07, G),
        Reading("v", 2.0, 229.9, G),  # d = 2
        Reading("t", 1.0, 21.3, G),
        Reading("t", 2.0, 21.0, G),  # d = 1
        Reading("w", 1.0, 12.0, G),
        Reading("w", 2.0, -3.0, G),  # d = 0, still floats
        Reading("lat", 1.0, 52.521912, G),
        Reading("lat", 2.0, 52.5219, G),  # d = 6
        Reading("r", 1.0, 0.1 + 0.2, G),  # needs 17 digits: float64
        Reading("s", 1.0, 1e-7, G),  # 7 decimals: float64
        Reading("big", 1.0, 2.0**60, G),  # beyond 2^53: float64
        Reading("i", 1.0, 5, G),
        Reading("b", 1.0, True, G),
        Reading("x", 1.0, "on", G),
        Reading("m", 1.0, 1, G),
        Reading("m", 2.0, 1.0, G),
        Reading("m", 3.0, True, G),  # mixed
        Reading("nul", 1.0, None, Quality.BAD, "timeout"),
    ]
    D = batch.DECIMAL
    assert kinds(rs) == {
        "v": D + 2,
        "t": D + 1,
        "w": D + 0,
        "lat": D + 6,
        "r": batch.FLOAT,
        "s": batch.FLOAT,
        "big": batch.FLOAT,
        "i": batch.INT,
        "b": batch.BOOL,
        "x": batch.STR,
        "m": batch.MIXED,
        "nul": batch.NULL,
    }
    assert exact(decode_body(encode_body(rs))) == exact(canonical(rs))


def test_int_subclasses_come_back_as_int():
    import enum

    class Mode(enum.IntEnum):
        AUTO = 2

    out = decode_body(encode_body([Reading("m", 1.0, Mode.AUTO, G)]))
    assert out[0].value == 2 and type(out[0].value) is int


def test_layout_of_a_small_batch():
    """The documented layout, field by field (docs/batch-format.md, 'Body')."""
    rs = [
        Reading("m.v", T0 + 0.012, 230.07, G),
        Reading("m.v", T0 + 5.013, None, Quality.BAD, "timeout"),
        Reading("m.v", T0 + 10.011, 229.98, G),
        Reading("d.open", T0, False, G),
        Reading("d.open", T0 + 5, True, G),
    ]
    body = encode_body(rs, compression="none")
    assert body[0] == 0
    assert doc(body) == [
        1,
        1767225600000,
        ["d.open", "m.v"],
        [
            [batch.BOOL, 2, 0, [0, 5000], 0, [False, True], []],
            [batch.DECIMAL + 2, 3, 2, [12, 4989, -3], 1, [23007, None, -9], [1, 2, "timeout"]],
        ],
    ]


def test_counter_and_regular_timestamps_delta_code_to_small_numbers():
    rs = [Reading("e", T0 + 5 * i, 123456.78 + i * 0.01, G) for i in range(100)]
    rs = [r._replace(value=round(r.value, 2)) for r in rs]
    kind, n, ts_order, ts, v_order, values, _exc = doc(encode_body(rs, compression="none"))[3][0]
    assert (kind, n, ts_order, v_order) == (batch.DECIMAL + 2, 100, 2, 1)
    assert ts[:2] == [0, 5000] and set(ts[2:]) == {0} and values[0] == 12345678 and set(values[1:]) == {1}


def test_empty_batch_is_refused():
    with pytest.raises(BatchError, match="at least one"):
        encode_body([])


@pytest.mark.parametrize(
    "reading, what",
    [
        (Reading("p", 1.0, b"bytes", G), "value type bytes"),
        (Reading("p", 1.0, [1], G), "value type list"),
        (Reading("p", 1.0, 2**63, G), "64 bits"),
        (Reading("p", 1.0, -(2**63) - 1, G), "64 bits"),
        (Reading("p", math.nan, 1, G), "finite time"),
        (Reading("p", math.inf, 1, G), "finite time"),
        (Reading("p", 1e20, 1, G), "finite time"),
        (Reading("p", True, 1, G), "t must be"),
        (Reading("p", "1", 1, G), "t must be"),  # type: ignore[arg-type]  # wrong on purpose
        (Reading("p", 1.0, 1, "fine"), "unknown quality"),  # type: ignore[arg-type]  # wrong on purpose
        (Reading("p", 1.0, 1, G, 5), "reason"),  # type: ignore[arg-type]  # wrong on purpose
        (Reading("", 1.0, 1, G), "point"),
        (Reading(None, 1.0, 1, G), "point"),  # type: ignore[arg-type]  # wrong on purpose
        ((1, 2), "not a Reading"),
    ],
)
def test_unencodable_readings_are_named(reading, what):
    with pytest.raises(BatchError, match=what) as e:
        encode_body([Reading("ok", 1.0, 1, G), reading])
    assert "reading 1" in str(e.value)


def test_encode_limits():
    with pytest.raises(BatchError, match="at most"):
        encode_body([Reading("p", 1.0, 1, G)] * (batch.MAX_READINGS + 1))
    with pytest.raises(BatchError, match="compression"):
        encode_body([Reading("p", 1.0, 1, G)], compression="lz4")
    with pytest.raises(BatchError, match=r"surrogates|str"):
        encode_body([Reading("p", 1.0, "\ud800", G)])


# ---------------------------------------------------------------------- sizes


@pytest.mark.parametrize("gen", [cabinet_readings, w1_readings])
@pytest.mark.parametrize("n", [1000, 2000])
def test_at_most_3_bytes_per_reading_including_envelope(gen, n):
    assert sealed_size(gen(n)) / n <= 3.0


def test_columnar_beats_row_wise_msgpack_by_far():
    rs = cabinet_readings(1000)
    rows = msgpack.packb([[r.point, round(r.t * 1000), r.value, Quality(r.quality).value] for r in rs])
    assert len(encode_body(rs)) * 3 < len(zstandard.ZstdCompressor(level=19).compress(rows))


# ---------------------------------------------------------------------- malformed input

GOOD_DOC: list[Any] = [
    1,
    1000,
    ["a", "b"],
    [[batch.INT, 2, 1, [0, 10], 1, [5, 1], []], [batch.DECIMAL + 1, 1, 0, [3], 0, [213], [0, 2, "timeout"]]],
]


def test_hand_built_document_decodes():
    assert exact(decode_body(raw_body(GOOD_DOC))) == exact(
        [Reading("a", 1.0, 5, G), Reading("a", 1.01, 6, G), Reading("b", 1.003, 21.3, Quality.BAD, "timeout")]
    )


def mutate(path, value):
    import copy

    d = copy.deepcopy(GOOD_DOC)
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return raw_body(d)


@pytest.mark.parametrize(
    "data, what",
    [
        (b"", "empty"),
        (b"\x07" + msgpack.packb(GOOD_DOC), "unknown compression byte 0x07"),
        (b"\x00\xc1", "not valid msgpack"),
        (raw_body(GOOD_DOC) + b"\x00", "not valid msgpack"),
        (raw_body({"v": 1}), "4-element array"),
        (raw_body(GOOD_DOC[:3]), "4-element array"),
        (mutate([0], 2), "unsupported batch version 2"),
        (mutate([0], True), "unsupported batch version"),
        (mutate([1], 2**60), "t0"),
        (mutate([1], 1.5), "t0"),
        (mutate([2], []), "names"),
        (mutate([2], ["b", "a"]), "code-point order"),
        (mutate([2], ["a", "a"]), "code-point order"),
        (mutate([2, 0], 7), "names\\[0\\]"),
        (mutate([3], GOOD_DOC[3][:1]), "one entry per name"),
        (mutate([3, 0], [batch.INT, 2]), "7-element array"),
        (mutate([3, 0, 0], 9), "unknown value kind 9"),
        (mutate([3, 0, 0], 23), "kind"),
        (mutate([3, 0, 1], 0), "n must be"),
        (mutate([3, 0, 1], 3), "ts must be an array of n = 3"),
        (mutate([3, 0, 2], 3), "ts_order"),
        (mutate([3, 0, 3], [0, "x"]), "integers only"),
        (mutate([3, 0, 3], [10, -5]), "must not decrease"),
        (mutate([3, 0, 3], [-1, 5]), "out of range"),
        (mutate([3, 0, 4], 7), "value_order"),
        (mutate([3, 0, 5], [5]), "values must be an array of n = 2"),
        (mutate([3, 0, 5], [5, 1.5]), "does not fit the series kind"),
        (mutate([3, 0, 5], [5, True]), "does not fit the series kind"),
        (mutate([3, 0, 5], [2**63 - 1, 1]), "out of range"),
        (mutate([3, 1, 5], [2**53 + 1]), "out of range"),
        (mutate([3, 1, 6], [0, 2]), "triples"),
        (mutate([3, 1, 6], [1, 2, "x"]), "gap"),
        (mutate([3, 1, 6], [0, 4, "x"]), "quality"),
        (mutate([3, 1, 6], [0, 2, 5]), "reason"),
        (mutate([3, 1, 6], [0, 0, None]), "must be left out"),
        (mutate([3, 1, 6], [0, 2, "x", 0, 1, None]), "past the last reading"),
        (raw_body([1, 0, ["a"], [[batch.NULL, 1, 0, [0], 0, [None], []]]]), "null-only"),
        (raw_body([1, 0, ["a"], [[batch.STR, 1, 0, [0], 1, ["x"], []]]]), "value_order must be 0"),
        (raw_body([1, 0, ["a"], [[batch.BOOL, 1, 0, [0], 0, [1], []]]]), "does not fit"),
    ],
)
def test_malformed_bodies_are_named(data, what):
    with pytest.raises(BatchError, match=what):
        decode_body(data)


def test_not_bytes():
    with pytest.raises(BatchError, match="must be bytes"):
        decode_body("00")  # type: ignore[arg-type]


def test_every_truncation_is_rejected():
    for comp in ("none", "zlib", "zstd"):
        body = encode_body(cabinet_readings(60), compression=comp)
        for cut in range(len(body)):
            with pytest.raises(BatchError):
                decode_body(body[:cut])


def test_decompression_bombs_are_capped():
    bomb = msgpack.packb([1, 0, ["a"], [[batch.STR, 1, 0, [0], 0, ["x" * (batch.MAX_BODY + 10)], []]]])
    with pytest.raises(BatchError, match="more than"):
        decode_body(b"\x01" + zlib.compress(bomb, 1))
    with pytest.raises(BatchError, match="declares"):
        decode_body(b"\x02" + zstandard.ZstdCompressor(level=1).compress(bomb))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(raw_body(GOOD_DOC)[1:])
    with pytest.raises(BatchError, match="content size"):
        decode_body(b"\x02" + no_size)
    two_frames = zstandard.ZstdCompressor().compress(raw_body(GOOD_DOC)[1:]) * 2
    with pytest.raises(BatchError, match="corrupt"):
        decode_body(b"\x02" + two_frames)
    with pytest.raises(BatchError, match="after the end"):
        decode_body(b"\x01" + zlib.compress(raw_body(GOOD_DOC)[1:]) + b"\x00")


def test_too_many_readings():
    n = batch.MAX_READINGS + 1
    with pytest.raises(BatchError, match="n must be"):
        decode_body(raw_body([1, 0, ["a"], [[batch.NULL, n, 1, [0] * n, 0, None, []]]]))
    half = batch.MAX_READINGS // 2 + 1
    s = [batch.NULL, half, 1, [0] * half, 0, None, []]
    with pytest.raises(BatchError, match="more than"):
        decode_body(raw_body([1, 0, ["a", "b"], [s, s]]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_raises_only_batch_error_on_junk(data):
    try:
        decode_body(data)
    except BatchError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_of_corrupted_bodies_raises_only_batch_error(data):
    body = bytearray(
        encode_body(cabinet_readings(40), compression=data.draw(st.sampled_from(["none", "zlib", "zstd"])))
    )
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    try:
        out = decode_body(bytes(body))
    except BatchError:
        return
    assert all(isinstance(r, Reading) for r in out)  # the body has no checksum: the signature protects it


# ---------------------------------------------------------------------- measurement table (not a test)


def measure() -> None:
    def best(f, reps=10):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                f()
            times.append((time.perf_counter() - t) / reps)
        return min(times)

    print(
        "| data | readings | body none | zlib-9 | zstd-19 | sealed zstd (B/reading) | sealed zlib (B/reading) "
        "| encode/s zstd | encode/s zlib | decode/s zstd |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for gen in (cabinet_readings, w1_readings):
        for n in (100, 500, 1000, 2000):
            rs = gen(n)
            sizes = {c: len(encode_body(rs, compression=c)) for c in ("none", "zlib", "zstd")}
            body = encode_body(rs)
            enc = {c: best(lambda c=c, rs=rs: encode_body(rs, compression=c)) for c in ("zstd", "zlib")}
            dec = best(lambda body=body: decode_body(body))
            sz, sl = sealed_size(rs), sealed_size(rs, "zlib")
            print(
                f"| {gen.__name__[:-9]} | {n} | {sizes['none']} | {sizes['zlib']} | {sizes['zstd']} "
                f"| {sz} ({sz / n:.2f}) | {sl} ({sl / n:.2f}) | {n / enc['zstd']:,.0f} | {n / enc['zlib']:,.0f} "
                f"| {n / dec:,.0f} |"
            )


if __name__ == "__main__":
    measure() if sys.argv[1:] in ([], ["measure"]) else sys.exit("usage: python tests/test_batch.py [measure]")
