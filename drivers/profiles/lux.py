"""A Modbus lux (illuminance) sensor with a configurable map (4800 Bd 8N1 default).

Lux sensors have no common register map (domain.md §8.5), so this profile owns
one point, `lux` (lx), placed by options:
  table       "holding" (default; Renke-style sensors are FC03 only) or "input"
  address     wire address, default 0x0007
  type        "uint16", "uint32" (default) or "float32"
  word_order  "big" (default: high word first) or "little"; ignored for uint16
  scale       lx per raw unit, > 0 (1 default; 0.1, 0.01, 0.001 for ×10/×100/×1000 units)
The defaults are the documented 0-200 000 lx variant: holding 0x0007 (high) and
0x0008 (low), `01 03 00 07 00 02` -> 0x0002 0x06F6 = 132 854 lx.

Configuration registers (`config`, never polled) only for the defaults' map (that
documented variant): holding 0x0100 address (1..247) and 0x0101 baud code
(0 = 2400, 1 = 4800, 2 = 9600, the coding common to these sensors; check the unit's
sheet), both writable with FC06. Other maps declare none.

Plausibility: 0..200 000 lx. For uint16 the top is also kept below raw 0xFFFF (the
usual "sensor error" pattern); for uint32 0xFFFFFFFF/0x7FFFFFFF are far above
200 000 lx anyway, and a float32 NaN is never plausible. Stuck values are the
runtime's to flag, not a register property.

Probe (low confidence, the defaults' map only): holding 0x0007..0x0008 read as a
uint32 in 0..200 000 lx: 0.25, which `cabinet scan` lists as a candidate but does
not claim (its bar is 0.5); holding 0x0100..0x0101 (that variant's address and
baud code) also answering an address 1..247 and a baud code 0..7: 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.profiles import _probe as pr
from drivers.profiles._options import fail, resolve
from drivers.profiles.base import (
    ConfigRegister,
    DataType,
    DeviceProfile,
    Limits,
    LineDefaults,
    Option,
    Probe,
    ProbeRead,
    ProfileSpec,
    RegisterPoint,
    Table,
)

LINE = LineDefaults(baudrate=4800, parity="N", stopbits=1)
MAX_LUX = 200_000.0

TABLES = {"holding": Table.HOLDING, "input": Table.INPUT}
TYPES = {"uint16": DataType.UINT16, "uint32": DataType.UINT32, "float32": DataType.FLOAT32}

OPTIONS = {
    "table": Option("str", "holding", "register table: holding (FC03) or input (FC04)", choices=tuple(TABLES)),
    "address": Option("int", 0x0007, "wire address of the lux value", min=0, max=0xFFFF),
    "type": Option("str", "uint32", "register type", choices=tuple(TYPES)),
    "word_order": Option("str", "big", "big = high word first", choices=("big", "little")),
    "scale": Option("float", 1.0, "lx per raw unit, e.g. 1, 0.1, 0.01, 0.001"),
}


BAUDS = {0: "2400", 1: "4800", 2: "9600"}


def _baud(unit: int, line: LineDefaults | None) -> str:
    text = str((line or LINE).baudrate)
    return text if text in BAUDS.values() else str(LINE.baudrate)


CONFIG = (
    ConfigRegister(
        RegisterPoint("config.address", Table.HOLDING, 0x0100, valid=(1, 247), writable=True, description="address"),
        1,
        lambda unit, line: unit,
    ),
    ConfigRegister(
        RegisterPoint("config.baud", Table.HOLDING, 0x0101, enum=BAUDS, writable=True, description="baud rate code"),
        str(LINE.baudrate),
        _baud,
    ),
)
DEFAULT_MAP = {k: OPTIONS[k].default for k in ("table", "address", "type", "word_order", "scale")}


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    dtype = TYPES[opts["type"]]
    address, scale = opts["address"], opts["scale"]
    if address + dtype.width > 0x10000:
        fail(
            "address",
            address,
            f"a {opts['type']} there runs past the last register",
            f"0..{0x10000 - dtype.width} for {opts['type']}",
        )
    if not 0 < scale <= 1000:
        fail("scale", scale, "not a positive factor", "a number > 0 and <= 1000, e.g. 1, 0.1, 0.01, 0.001")
    top = MAX_LUX if dtype is not DataType.UINT16 else min(MAX_LUX, 0xFFFE * scale)
    point = RegisterPoint(
        "lux",
        TABLES[opts["table"]],
        address,
        dtype,
        unit="lx",
        scale=scale,
        word_order=opts["word_order"],
        valid=(0.0, top),
        description="illuminance",
    )
    return DeviceProfile(
        name="lux",
        points=(point,),
        limits=Limits(max_registers=16, max_gap=0),
        line=LINE,
        description=f"lux sensor ({opts['table']} {address:#06x} {opts['type']} ×{scale:g})",
        config=CONFIG if opts == DEFAULT_MAP else (),
    )


PROBE_READS = (
    ProbeRead(Table.HOLDING, 0x0007, 2),  # lux, uint32 high word first
    ProbeRead(Table.HOLDING, 0x0100, 2),  # address, baud code
)


def recognize(results: Sequence[Any]) -> float:
    value, config = pr.padded(results, len(PROBE_READS))
    w = pr.words(value, 2)
    if w is None or pr.u32(*w) > MAX_LUX:
        return 0.0
    score = 0.25
    c = pr.words(config, 2)
    if c is not None and 1 <= c[0] <= 247 and c[1] <= 7:
        score += 0.25
    return score


SPEC = ProfileSpec(
    name="lux",
    description="Modbus lux sensor, configurable register, type, word order and scale",
    build=build,
    options=OPTIONS,
    probe=Probe(PROBE_READS, recognize),
    line=LINE,
)
