"""Register codec: Modbus registers <-> values, for every profile and the simulator.

Handles int16/uint16/int32/uint32/int64/uint64/float32/float64 with byte order
(inside a register) and word order (between registers), bits of a register, enums,
scale and offset, and plausibility. `BlockDecoder` precompiles the points of one
block read so the poll hot path is one struct call per point. Pure code.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from drivers.profiles.base import DataType, RegisterPoint

_FMT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT64: "d",
}


class DecodeError(ValueError):
    pass


def _decimals(x: float) -> int:
    """Decimal places needed to show multiples of `x` exactly (0.1 -> 1, 0.25 -> 2)."""
    if x == int(x):
        return 0
    exp = Decimal(repr(x)).normalize().as_tuple().exponent
    return max(0, -int(exp))


def short_float32(v: float) -> float:
    """A float32 as the decimal it stands for: 7 significant digits, the precision a
    float32 carries (0x43663334 = 230.2000122... -> 230.2)."""
    if not math.isfinite(v):
        return v
    return float(f"{v:.7g}")


def _registers_to_bytes(point: RegisterPoint, regs: Sequence[int]) -> bytes:
    words = list(regs) if point.word_order == "big" else list(reversed(regs))
    raw = struct.pack(f">{len(words)}H", *words)
    if point.byte_order == "little":
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    return raw


def _bytes_to_registers(point: RegisterPoint, raw: bytes) -> list[int]:
    if point.byte_order == "little":
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    words = list(struct.unpack(f">{len(raw) // 2}H", raw))
    return words if point.word_order == "big" else list(reversed(words))


def decode_raw(point: RegisterPoint, regs: Sequence[int]) -> int | float | bool:
    """Registers (exactly `point.width` of them, or one bit) -> the raw number."""
    if point.dtype is DataType.BOOL:
        if len(regs) != 1:
            raise DecodeError(f"{point.key}: expected 1 bit, got {len(regs)}")
        return bool(regs[0])
    if len(regs) != point.width:
        raise DecodeError(f"{point.key}: expected {point.width} registers, got {len(regs)}")
    for r in regs:
        if not 0 <= r <= 0xFFFF:
            raise DecodeError(f"{point.key}: register value {r} is not 16-bit")
    raw: int | float
    (raw,) = struct.unpack(">" + _FMT[point.dtype], _registers_to_bytes(point, regs))
    return raw


class _ValueMaker:
    """raw -> final value for one point (bit, enum, scale/offset, float32 rounding)."""

    __slots__ = ("bit", "decimals", "digits", "enum", "is_f32", "offset", "plain", "scale")

    def __init__(self, point: RegisterPoint) -> None:
        self.bit = point.bit
        self.enum = point.enum
        self.scale = point.scale
        self.offset = point.offset
        self.digits = max(_decimals(point.scale), _decimals(point.offset))
        self.is_f32 = point.dtype is DataType.FLOAT32
        self.plain = point.scale == 1 and point.offset == 0 and point.decimals is None
        self.decimals = point.decimals

    def __call__(self, raw: Any) -> Any:
        if self.bit is not None:
            return bool((raw >> self.bit) & 1)
        if self.enum is not None:
            return self.enum.get(raw, raw)
        if isinstance(raw, bool):
            return raw
        if self.is_f32:
            raw = short_float32(raw)
        if self.plain:
            return raw
        v = raw * self.scale + self.offset
        if isinstance(raw, int):
            v = round(v, self.digits) if self.digits else round(v)
            if self.decimals is not None and isinstance(v, float) and self.decimals < self.digits:
                v = round(v, self.decimals)
            return v
        if self.decimals is not None and math.isfinite(v):
            v = round(v, self.decimals)
            return v + 0.0  # no -0.0
        return v


def to_value(point: RegisterPoint, raw: Any) -> Any:
    return _ValueMaker(point)(raw)


def decode(point: RegisterPoint, regs: Sequence[int]) -> Any:
    """Registers -> final value (scaled, enum label, or bit)."""
    return to_value(point, decode_raw(point, regs))


def check(point: RegisterPoint, value: Any) -> str | None:
    """Plausibility: None when the value may be trusted, else the reason."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"not a number ({value})"
    if point.valid is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = point.valid
        if not lo <= value <= hi:
            return f"out of range: {value} not in {lo}..{hi}"
    return None


def encode(point: RegisterPoint, value: Any) -> list[int]:
    """Final value -> registers (or [bit]) as the device holds them."""
    if point.dtype is DataType.BOOL:
        return [bool(value)]
    if point.bit is not None:
        raise DecodeError(f"{point.key}: a bit point is written through its whole register")
    if point.enum is not None and isinstance(value, str):
        inverse = {label: raw for raw, label in point.enum.items()}
        if value not in inverse:
            raise DecodeError(f"{point.key}: {value!r} is not one of {sorted(inverse)}")
        value = inverse[value]
    if not isinstance(value, (int, float)):
        raise DecodeError(f"{point.key}: {value!r} is not a number")
    raw: float | int
    if isinstance(value, bool):
        raw = int(value)
    elif point.scale == 1 and point.offset == 0:
        raw = value  # exact: no float detour for 64-bit integers
    else:
        raw = (value - point.offset) / point.scale
    if not point.dtype.is_float and isinstance(raw, float):
        if not math.isfinite(raw):
            raise DecodeError(f"{point.key}: {value!r} does not fit {point.dtype.value}")
        raw = round(raw)
    try:
        packed = struct.pack(">" + _FMT[point.dtype], raw)
    except struct.error as exc:
        raise DecodeError(f"{point.key}: {value!r} does not fit {point.dtype.value}: {exc}") from None
    return _bytes_to_registers(point, packed)


class BlockDecoder:
    """Decodes all points of one block read in one pass.

    `decode(regs)` returns a list of (point, value, reason) in the order of `points`;
    reason is None for a good value, else why the value cannot be trusted.
    """

    __slots__ = ("_items", "count", "is_bits", "start")

    def __init__(self, start: int, count: int, points: Sequence[RegisterPoint]) -> None:
        self.start = start
        self.count = count
        self.is_bits = bool(points) and points[0].table.is_bits
        items = []
        for p in points:
            off = p.address - start
            if off < 0 or off + p.width > count:
                raise ValueError(f"point {p.key} ({p.address}+{p.width}) outside block {start}+{count}")
            fast = None
            if not self.is_bits and p.byte_order == "big" and p.word_order == "big":
                fast = struct.Struct(">" + _FMT[p.dtype])
            items.append((p, off, fast, _ValueMaker(p), p.valid is not None or p.dtype.is_float))
        self._items = items

    def decode(self, regs: Sequence[Any]) -> list[tuple[RegisterPoint, Any, str | None]]:
        if len(regs) < self.count:
            raise DecodeError(f"short reply: {len(regs)} of {self.count} values")
        out: list[tuple[RegisterPoint, Any, str | None]] = []
        if self.is_bits:
            for p, off, _, _, _ in self._items:
                out.append((p, bool(regs[off]), None))
            return out
        try:
            buf = struct.pack(f">{self.count}H", *regs[: self.count])
        except struct.error:
            raise DecodeError(
                f"reply holds a value that is not a 16-bit register: {list(regs[: self.count])}"
            ) from None
        for p, off, fast, make, needs_check in self._items:
            if fast is not None:
                (raw,) = fast.unpack_from(buf, off * 2)
            else:
                raw = decode_raw(p, regs[off : off + p.width])
            value = make(raw)
            out.append((p, value, check(p, value) if needs_check else None))
        return out
