"""Register codec: every type, byte and word order; the edge cases the profiles rely on."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import BlockDecoder, DecodeError, check, decode, encode, short_float32
from drivers.profiles.base import DataType, ProfileError, RegisterPoint, Table

INT_TYPES = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64]
ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]


def pt(dtype=DataType.UINT16, **kw) -> RegisterPoint:
    return RegisterPoint("p", Table.HOLDING, 0, dtype, **kw)


@pytest.mark.parametrize("dtype", INT_TYPES)
@pytest.mark.parametrize("byte_order,word_order", ORDERS)
def test_integer_registers_round_trip(dtype, byte_order, word_order):
    p = pt(dtype, byte_order=byte_order, word_order=word_order)

    @given(st.lists(st.integers(0, 0xFFFF), min_size=p.width, max_size=p.width))
    def prop(regs):
        assert encode(p, decode(p, regs)) == regs

    prop()


def test_word_and_byte_order_layouts():
    v = 0x11223344
    assert encode(pt(DataType.UINT32), v) == [0x1122, 0x3344]
    assert encode(pt(DataType.UINT32, word_order="little"), v) == [0x3344, 0x1122]
    assert encode(pt(DataType.UINT32, byte_order="little"), v) == [0x2211, 0x4433]
    assert encode(pt(DataType.UINT32, byte_order="little", word_order="little"), v) == [0x4433, 0x2211]
    assert decode(pt(DataType.INT16), [0xFF33]) == -205


def test_float32_doc_example_and_rounding():
    p = pt(DataType.FLOAT32)
    assert decode(p, [0x4366, 0x3334]) == 230.2  # 230.2000122... shown as the decimal it stands for
    assert short_float32(float("inf")) == float("inf")
    assert math.isnan(decode(p, [0x7FC0, 0])) and check(p, decode(p, [0x7FC0, 0])) is not None


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_values_are_a_fixed_point(v):
    p = pt(DataType.FLOAT32, word_order="little")
    once = decode(p, encode(p, v))
    assert decode(p, encode(p, once)) == once


def test_decimals_round_to_the_resolution_worth_reporting():
    v = pt(DataType.FLOAT32, decimals=1)
    regs = encode(pt(DataType.FLOAT32), 230.1203)
    assert decode(pt(DataType.FLOAT32), regs) == 230.1203 and decode(v, regs) == 230.1
    assert decode(pt(DataType.FLOAT32, decimals=0), encode(pt(DataType.FLOAT32), -0.3)) == 0.0
    assert math.copysign(1, decode(pt(DataType.FLOAT32, decimals=0), encode(pt(DataType.FLOAT32), -0.3))) == 1
    assert decode(pt(DataType.INT16, scale=0.01, decimals=1), [1234]) == 12.3
    assert decode(pt(DataType.INT16, scale=0.1, decimals=3), [1234]) == 123.4  # never invents digits
    assert math.isnan(decode(pt(DataType.FLOAT32, decimals=1), [0x7FC0, 0]))


def test_scale_offset_and_enum():
    t = pt(DataType.INT16, scale=0.1, offset=-40)
    assert decode(t, [0x0131]) == pytest.approx(-9.5) and encode(t, -9.5) == [0x0131]
    e = pt(enum={0: "off", 1: "on"})
    assert decode(e, [1]) == "on" and decode(e, [7]) == 7 and encode(e, "off") == [0]
    with pytest.raises(DecodeError):
        encode(e, "maybe")
    b = pt(bit=3)
    assert decode(b, [0b1000]) is True and decode(b, [0b0111]) is False
    with pytest.raises(DecodeError):
        encode(b, True)


def test_uint64_encodes_exactly():
    # was: (value - 0.0) / 1.0 went through a float and 2**64-1 rounded to 2**64 -> "does not fit"
    p = pt(DataType.UINT64)
    assert encode(p, 2**64 - 1) == [0xFFFF] * 4
    assert decode(p, encode(p, 2**53 + 1)) == 2**53 + 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), None, "12", [1]])
def test_encode_rejects_non_numbers_with_decode_error(value):
    # was: ValueError / OverflowError / TypeError from int() or arithmetic, without the point key
    with pytest.raises(DecodeError, match="p:"):
        encode(pt(DataType.UINT16, scale=0.1), value)


def test_encode_out_of_range_is_decode_error():
    with pytest.raises(DecodeError):
        encode(pt(DataType.UINT16), 70000)
    with pytest.raises(DecodeError):
        encode(pt(DataType.INT16), -40000)


def test_block_decoder_registers_and_bits():
    pts = [
        RegisterPoint("a", Table.INPUT, 10, DataType.FLOAT32, valid=(0, 500)),
        RegisterPoint("b", Table.INPUT, 13, DataType.INT16, scale=0.1),
        RegisterPoint("c", Table.INPUT, 14, DataType.UINT32, word_order="little"),
    ]
    hi, lo = struct.unpack(">HH", struct.pack(">f", 600.5))
    out = BlockDecoder(10, 6, pts).decode([hi, lo, 0, 0xFF33, 0x0002, 0x0001])
    assert [(p.key, v) for p, v, _ in out] == [("a", 600.5), ("b", -20.5), ("c", 0x00010002)]
    assert out[0][2] is not None and out[1][2] is None
    with pytest.raises(DecodeError):
        BlockDecoder(10, 6, pts).decode([0, 0, 0])
    with pytest.raises(ValueError):
        BlockDecoder(10, 4, pts)  # c lies outside
    coils = [RegisterPoint(f"r{i}", Table.COIL, i, DataType.BOOL) for i in range(3)]
    assert [v for _, v, _ in BlockDecoder(0, 8, coils).decode([1, 0, 1, 0, 0, 0, 0, 0])] == [True, False, True]


def test_block_decoder_rejects_values_that_are_not_registers():
    # was: struct.error from the packing; now a DecodeError like decode() gives
    with pytest.raises(DecodeError):
        BlockDecoder(0, 2, [pt(DataType.UINT32)]).decode([1, 0x10000])


def test_points_with_enum_are_hashable():
    # was: TypeError unhashable type 'dict' (frozen dataclass hashing every field)
    a, b = pt(enum={0: "off"}), pt(enum={0: "off"})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert pt(enum={0: "off"}) != pt(enum={0: "on"})


@pytest.mark.parametrize("kw", [{"scale": float("inf")}, {"scale": float("nan")}, {"offset": float("nan")}])
def test_point_rejects_non_finite_scale_or_offset(kw):
    # was: accepted; inf scale crashed the value maker, NaN made every value NaN
    with pytest.raises(ProfileError):
        pt(**kw)
