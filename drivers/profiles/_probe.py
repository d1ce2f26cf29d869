"""Reading probe answers safely: the shared vocabulary of every profile's recognize().

A probe result (one per ProbeRead, see base.Probe) is a list of register values or
bits, an int Modbus exception code, or None for no answer. Results come from the
field, so nothing here trusts them: `words` / `bits` return None for anything that
is not exactly the expected shape, and `padded` makes a short result list safe to
index. recognize() functions built on these never raise on any input. Pure code.
"""

from __future__ import annotations

import math
import struct
from typing import Any

__all__ = ["bits", "clamp", "exception", "f32", "finite_in", "int16", "padded", "u32", "words"]


def padded(results: Any, n: int) -> list[Any]:
    """`results` as a list of exactly n entries (missing ones = no answer)."""
    if not isinstance(results, (list, tuple)):
        return [None] * n
    out = list(results[:n])
    return out + [None] * (n - len(out))


def _is_word(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF


def words(result: Any, n: int) -> list[int] | None:
    """Exactly n 16-bit register values, or None (exception, no answer, bad shape)."""
    if not isinstance(result, (list, tuple)) or len(result) != n:
        return None
    if not all(_is_word(v) for v in result):
        return None
    return list(result)


def bits(result: Any, n: int) -> list[bool] | None:
    """At least n bits (bool or 0/1; replies are padded to whole bytes), or None."""
    if not isinstance(result, (list, tuple)) or len(result) < n:
        return None
    if not all(isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)) for v in result[:n]):
        return None
    return [bool(v) for v in result[:n]]


def exception(result: Any) -> int | None:
    """The Modbus exception code if the result is one, else None."""
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return None


def f32(hi: int, lo: int) -> float:
    """Two registers, high word first, big-endian bytes (Eastron) -> float."""
    value: float
    (value,) = struct.unpack(">f", struct.pack(">HH", hi, lo))
    return value


def finite_in(v: float, lo: float, hi: float) -> bool:
    return math.isfinite(v) and lo <= v <= hi


def int16(w: int) -> int:
    return w - 0x10000 if w & 0x8000 else w


def u32(hi: int, lo: int) -> int:
    return (hi << 16) | lo


def clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else float(x)
