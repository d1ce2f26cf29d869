"""A device profile declared entirely in config: for devices without a profile file.

Owns turning `[devices.X.options]` of profile "generic" into a DeviceProfile, and
every check on the way. Every error is a ProfileError whose `key` is the path of
the offending value (`points[2].address`, `limits.forbidden[0][1]`) and whose
message gives the value and what is allowed. Example (TOML):

    [devices.pump.options]
    limits = { max_registers = 32, max_gap = 4, forbidden = [["holding", 100, 110]] }
    [[devices.pump.options.points]]
    key = "state"
    table = "holding"
    address = 0x1F
    enum = { "0" = "off", "1" = "on", "0x10" = "fault" }
    [[devices.pump.options.points]]
    key = "flow"
    table = "input"
    address = 0x20
    type = "float32"
    word_order = "little"
    unit = "m3/h"
    valid = [0, 500]

Point fields: key, table (coil, discrete, holding, input), address (0..65535),
type (bool for coil/discrete, default; int16 .. float64 for registers, default
uint16), unit, scale (non-zero), offset, byte_order, word_order ("big"/"little"),
bit (0..15 of an int16/uint16 register), enum (raw = label; raw as decimal or 0x
hex text, since TOML keys are strings), valid = [lo, hi], writable (coil/holding
only; not for bit points), description. Limits: max_registers (1..125),
max_bits (1..2000), max_gap (0..2000), forbidden = [[table, start, end], ...]
(end exclusive). No probe: a generic device cannot be recognized. Pure code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from drivers.profiles._options import as_bool, as_int, as_list, as_number, as_str, as_table, fail, resolve
from drivers.profiles.base import (
    DataType,
    DeviceProfile,
    Limits,
    LineDefaults,
    Option,
    ProfileError,
    ProfileSpec,
    RegisterPoint,
    Table,
)

LINE = LineDefaults()
TABLES = tuple(t.value for t in Table)
TYPES = tuple(t.value for t in DataType)
ORDERS = ("big", "little")
FIELDS = (
    "key",
    "table",
    "address",
    "type",
    "unit",
    "scale",
    "offset",
    "byte_order",
    "word_order",
    "bit",
    "enum",
    "valid",
    "writable",
    "description",
)
REQUIRED = ("key", "table", "address")
LIMIT_FIELDS = ("max_registers", "max_bits", "max_gap", "forbidden")
KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_INT_RANGE = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
    DataType.INT64: (-(1 << 63), (1 << 63) - 1),
    DataType.UINT64: (0, (1 << 64) - 1),
}

OPTIONS = {
    "points": Option("list", [], "the device's points, a list of tables (see the module doc)"),
    "limits": Option("table", {}, "max_registers, max_bits, max_gap, forbidden = [[table, start, end], ...]"),
}


def _enum_raw(key: str, k: Any, dtype: DataType) -> int:
    raw: int | None = None
    if isinstance(k, int) and not isinstance(k, bool):
        raw = k
    elif isinstance(k, str):
        for base in (10, 0):
            try:
                raw = int(k.strip(), base)
                break
            except ValueError:
                pass
    if raw is None:
        fail(key, k, "raw value is not an integer", 'a decimal or 0x hex integer as text, e.g. "3" or "0x1F"')
    lo, hi = _INT_RANGE[dtype]
    if not lo <= raw <= hi:
        fail(key, k, f"does not fit {dtype.value}", f"{lo}..{hi}")
    return raw


def _enum(path: str, v: Any, dtype: DataType) -> dict[int, str]:
    table = as_table(path, v)
    if not table:
        fail(path, v, "empty", "at least one raw = label entry")
    out: dict[int, str] = {}
    for k, label in table.items():
        key = f'{path}."{k}"'
        raw = _enum_raw(key, k, dtype)
        if raw in out:
            fail(key, k, f"the same raw value as another entry ({raw})", "each raw value once")
        out[raw] = as_str(key, label)
    return out


def _point(path: str, spec: Any, seen: dict[str, str]) -> RegisterPoint:
    """One `[[devices.X.options.points]]` table -> a RegisterPoint. The checks run in
    a fixed order (fields, key, table and type, address, scale, ...); the first problem
    found is the error."""
    spec = as_table(path, spec)
    _check_fields(path, spec)
    key = _key(path, spec, seen)
    table, dtype = _table_and_type(path, spec)
    address = _address(path, spec, dtype)
    scale = as_number(f"{path}.scale", spec.get("scale", 1))
    if scale == 0:
        fail(f"{path}.scale", scale, "zero", "any non-zero number")
    offset = as_number(f"{path}.offset", spec.get("offset", 0))
    bit = _bit(path, spec, dtype)
    enum = _point_enum(path, spec, dtype, bit, scaled=scale != 1 or offset != 0)
    valid = _valid(path, spec)
    writable = _writable(path, spec, table, bit)
    unit = as_str(f"{path}.unit", spec.get("unit", ""))
    byte_order = as_str(f"{path}.byte_order", spec.get("byte_order", "big"), ORDERS)
    word_order = as_str(f"{path}.word_order", spec.get("word_order", "big"), ORDERS)
    description = as_str(f"{path}.description", spec.get("description", ""))
    try:
        return RegisterPoint(
            key,
            table,
            address,
            dtype,
            unit=unit,
            scale=scale,
            offset=offset,
            byte_order=byte_order,
            word_order=word_order,
            bit=bit,
            enum=enum,
            valid=valid,
            writable=writable,
            description=description,
        )
    except ProfileError as exc:  # base.py's own checks; the above should catch all first
        raise ProfileError(path, f"{path}: {exc}", exc.value, exc.allowed) from None


def _check_fields(path: str, spec: Mapping[str, Any]) -> None:
    for f in spec:
        if f not in FIELDS:
            fail(f"{path}.{f}", spec[f], "unknown field", ", ".join(FIELDS))
    for f in REQUIRED:
        if f not in spec:
            fail(f"{path}.{f}", None, "missing", "required: " + ", ".join(REQUIRED))


def _key(path: str, spec: Mapping[str, Any], seen: dict[str, str]) -> str:
    """The point's key, usable and unique in the device (recorded in `seen`)."""
    key = as_str(f"{path}.key", spec["key"])
    if not KEY_RE.fullmatch(key):
        fail(
            f"{path}.key",
            key,
            "not a usable key",
            "1..64 letters, digits, '_', '.', '-' (not starting with '.' or '-')",
        )
    if key in seen:
        fail(f"{path}.key", key, f"already used by {seen[key]}", "a key unique in this device")
    seen[key] = path
    return key


def _table_and_type(path: str, spec: Mapping[str, Any]) -> tuple[Table, DataType]:
    table = Table(as_str(f"{path}.table", spec["table"], TABLES))
    dtype = DataType(as_str(f"{path}.type", spec.get("type", "bool" if table.is_bits else "uint16"), TYPES))
    if table.is_bits != (dtype is DataType.BOOL):
        fail(
            f"{path}.type",
            dtype.value,
            f"does not fit table {table.value!r}",
            "bool" if table.is_bits else "one of " + ", ".join(t for t in TYPES if t != "bool"),
        )
    return table, dtype


def _address(path: str, spec: Mapping[str, Any], dtype: DataType) -> int:
    address = as_int(f"{path}.address", spec["address"], 0, 0xFFFF)
    if address + dtype.width > 0x10000:
        fail(
            f"{path}.address",
            address,
            f"a {dtype.value} there runs past the last register",
            f"0..{0x10000 - dtype.width}",
        )
    return address


def _bit(path: str, spec: Mapping[str, Any], dtype: DataType) -> int | None:
    bit = spec.get("bit")
    if bit is None:
        return None
    bit = as_int(f"{path}.bit", bit, 0, 15)
    if dtype not in (DataType.INT16, DataType.UINT16):
        fail(
            f"{path}.bit",
            bit,
            f"a bit needs a 16-bit register, not {dtype.value}",
            "bit only with table holding/input and type int16 or uint16",
        )
    return bit


def _point_enum(
    path: str, spec: Mapping[str, Any], dtype: DataType, bit: int | None, *, scaled: bool
) -> dict[int, str] | None:
    if "enum" not in spec:
        return None
    if dtype.is_float or dtype is DataType.BOOL or bit is not None:
        fail(
            f"{path}.enum",
            spec["enum"],
            f"an enum needs an integer register, not {dtype.value}" + (" with bit" if bit is not None else ""),
            "enum with int16..uint64 and no bit",
        )
    if scaled:
        fail(
            f"{path}.enum",
            spec["enum"],
            "an enum labels raw values; scale/offset would not apply",
            "enum with scale = 1 and offset = 0",
        )
    return _enum(f"{path}.enum", spec["enum"], dtype)


def _valid(path: str, spec: Mapping[str, Any]) -> tuple[float, float] | None:
    if "valid" not in spec:
        return None
    pair = as_list(f"{path}.valid", spec["valid"])
    if len(pair) != 2:
        fail(f"{path}.valid", spec["valid"], "not a pair", "[lo, hi]")
    lo, hi = (as_number(f"{path}.valid[{j}]", v) for j, v in enumerate(pair))
    if lo > hi:
        fail(f"{path}.valid", spec["valid"], "lo is above hi", "[lo, hi] with lo <= hi")
    return (lo, hi)


def _writable(path: str, spec: Mapping[str, Any], table: Table, bit: int | None) -> bool:
    writable = as_bool(f"{path}.writable", spec.get("writable", False))
    if writable and not table.writable:
        fail(f"{path}.writable", writable, f"table {table.value!r} is read-only", "writable only for coil/holding")
    if writable and bit is not None:
        fail(f"{path}.writable", writable, "a bit of a register cannot be written alone", "false for bit points")
    return writable


def _limits(v: Mapping[str, Any]) -> Limits:
    for f in v:
        if f not in LIMIT_FIELDS:
            fail(f"limits.{f}", v[f], "unknown field", ", ".join(LIMIT_FIELDS))
    d = Limits()
    forbidden = []
    for k, item in enumerate(as_list("limits.forbidden", v.get("forbidden", []))):
        path = f"limits.forbidden[{k}]"
        triple = as_list(path, item)
        if len(triple) != 3:
            fail(path, item, "not a [table, start, end] triple", '[table, start, end], e.g. ["holding", 100, 110]')
        table = Table(as_str(f"{path}[0]", triple[0], TABLES))
        start = as_int(f"{path}[1]", triple[1], 0, 0xFFFF)
        end = as_int(f"{path}[2]", triple[2], start + 1, 0x10000)
        forbidden.append((table, start, end))
    return Limits(
        max_registers=as_int("limits.max_registers", v.get("max_registers", d.max_registers), 1, 125),
        max_bits=as_int("limits.max_bits", v.get("max_bits", d.max_bits), 1, 2000),
        max_gap=as_int("limits.max_gap", v.get("max_gap", d.max_gap), 0, 2000),
        forbidden=tuple(forbidden),
    )


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    specs = opts["points"]
    if not specs:
        fail("points", specs, "no points", "a list of at least one point table")
    seen: dict[str, str] = {}
    points = tuple(_point(f"points[{i}]", s, seen) for i, s in enumerate(specs))
    limits = _limits(opts["limits"])
    for i, p in enumerate(points):
        if p.width > limits.max_count(p.table):
            fail(
                "limits.max_registers",
                limits.max_registers,
                f"points[{i}] ({p.dtype.value}) needs {p.width} registers in one request",
                f">= {p.width}",
            )
        for k, (table, start, end) in enumerate(limits.forbidden):
            if table is p.table and p.address < end and start < p.end:
                fail(
                    f"points[{i}].address",
                    p.address,
                    f"{p.table.value} {p.address}..{p.end - 1} overlaps limits.forbidden[{k}] ({start}..{end - 1})",
                    "an address outside the forbidden ranges",
                )
    return DeviceProfile(
        name="generic", points=points, limits=limits, line=LINE, description=f"generic device, {len(points)} points"
    )


SPEC = ProfileSpec(
    name="generic",
    description="a device declared in config: points, types, scaling, limits",
    build=build,
    options=OPTIONS,
    probe=None,
    line=LINE,
)
