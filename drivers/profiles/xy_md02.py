"""XY-MD02 (SHT20) temperature/humidity sensor and its clones (9600 Bd 8N1 default).

Owns the sensor's register map (domain.md §8.3): input 0x0001 temperature (int16,
two's complement), input 0x0002 relative humidity (uint16), both ×10 on the common
firmware (0x0131 = 30.5 °C) and ×100 on the "MD02 red LED" clones (0x0BEA = 30.50 °C):
option `variant` = "x10" (default) or "x100". Some units ship with even parity;
the line defaults say 8N1, the config sets what the unit really uses.

Option `config_registers` (default false) adds the configuration holding registers
as read-only points (not polled unless set). Reading them is safe (FC03, no side
effects); writing address/baud is a commissioning step, not something the poller
does, so none are writable as points. The device itself accepts FC06 writes of
address, baud and offsets (its `config` registers). Their layout follows the variant:
  x10:  0x0101 address, 0x0102 baud (0 = 9600, 1 = 14400, 2 = 19200),
        0x0103 temperature offset (int16 ÷10 °C), 0x0104 humidity offset (÷10 %RH)
  x100: 0x0100 address, 0x0101 baud (0 = 2400, 1 = 4800, 2 = 9600); offsets unknown
A unit that stores the literal baud (0x2580 = 9600) shows the number unlabelled.

Probe: input 0x0001..0x0002 must read as a plausible temperature (-40..80 °C) and
humidity (0..100 %RH) at ×10 or ×100 (`guess_variant` says which): 0.7.
RH exactly 0 is suspicious (0.3), all-zero registers (what many other devices hold
there) 0.1. Holding 0x0101 (address on x10, baud code on x100) answering a small
number (0..247 or a literal baud) adds 0.15; answering something else takes 0.2 off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.profiles import _probe as pr
from drivers.profiles._options import resolve
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

LINE = LineDefaults(baudrate=9600, parity="N", stopbits=1)
VARIANTS = ("x10", "x100")
T_VALID = (-40.0, 80.0)
RH_VALID = (0.0, 100.0)

BAUDS = {"x10": {0: "9600", 1: "14400", 2: "19200"}, "x100": {0: "2400", 1: "4800", 2: "9600"}}

OPTIONS = {
    "variant": Option("str", "x10", "measurement scaling: x10 (XY-MD02) or x100 (MD02 clones)", choices=VARIANTS),
    "config_registers": Option("bool", False, "also read the configuration holding registers"),
}


def _config_points(variant: str, writable: bool = False) -> tuple[RegisterPoint, ...]:
    H, w = Table.HOLDING, writable
    if variant == "x10":
        return (
            RegisterPoint("config.address", H, 0x0101, valid=(1, 247), writable=w, description="Modbus address"),
            RegisterPoint("config.baud", H, 0x0102, enum=BAUDS["x10"], writable=w, description="baud rate code"),
            RegisterPoint(
                "config.temperature_offset",
                H,
                0x0103,
                DataType.INT16,
                unit="°C",
                scale=0.1,
                valid=(-10.0, 10.0),
                writable=w,
                description="temperature correction",
            ),
            RegisterPoint(
                "config.humidity_offset",
                H,
                0x0104,
                DataType.INT16,
                unit="%RH",
                scale=0.1,
                valid=(-10.0, 10.0),
                writable=w,
                description="humidity correction",
            ),
        )
    return (
        RegisterPoint("config.address", H, 0x0100, valid=(1, 247), writable=w, description="Modbus address"),
        RegisterPoint("config.baud", H, 0x0101, enum=BAUDS["x100"], writable=w, description="baud rate code"),
    )


def config_registers(variant: str) -> tuple[ConfigRegister, ...]:
    """The sensor's configuration registers as the device has them: address, baud
    and offsets writable (FC06), the address following the unit id, the baud code
    the line's baud rate."""
    bauds = BAUDS[variant]

    def baud(unit: int, line: LineDefaults | None) -> str:
        text = str((line or LINE).baudrate)
        return text if text in bauds.values() else str(LINE.baudrate)

    follows = {"config.address": lambda unit, line: unit, "config.baud": baud}
    factory = {"config.address": 1, "config.baud": "9600"}  # offsets 0.0
    return tuple(
        ConfigRegister(p, factory.get(p.key, 0.0), follows.get(p.key)) for p in _config_points(variant, writable=True)
    )


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    scale = 0.1 if opts["variant"] == "x10" else 0.01
    points: tuple[RegisterPoint, ...] = (
        RegisterPoint(
            "temperature",
            Table.INPUT,
            0x0001,
            DataType.INT16,
            unit="°C",
            scale=scale,
            valid=T_VALID,
            description="air temperature",
        ),
        RegisterPoint(
            "humidity",
            Table.INPUT,
            0x0002,
            DataType.UINT16,
            unit="%RH",
            scale=scale,
            valid=RH_VALID,
            description="relative humidity",
        ),
    )
    if opts["config_registers"]:
        points += _config_points(opts["variant"])
    return DeviceProfile(
        name="xy-md02",
        points=points,
        limits=Limits(max_registers=8, max_gap=2),
        line=LINE,
        description=f"XY-MD02 temperature/humidity sensor ({opts['variant']})",
        config=config_registers(opts["variant"]),
    )


PROBE_READS = (
    ProbeRead(Table.INPUT, 0x0001, 2),  # temperature, humidity
    ProbeRead(Table.HOLDING, 0x0101, 1),  # x10: address; x100: baud code
)


def _plausible(t_raw: int, rh_raw: int, div: int) -> bool:
    t, rh = pr.int16(t_raw) / div, rh_raw / div
    return T_VALID[0] <= t <= T_VALID[1] and RH_VALID[0] <= rh <= RH_VALID[1]


def guess_variant(results: Sequence[Any]) -> str | None:
    """Which scaling fits the probe answer: "x10", "x100" or None (neither).

    When both fit, x10: an x100 unit only reads like a plausible x10 one below
    8 °C and 10 %RH together, which outdoor air rarely is."""
    w = pr.words(pr.padded(results, len(PROBE_READS))[0], 2)
    if w is None:
        return None
    for variant, div in (("x10", 10), ("x100", 100)):
        if _plausible(w[0], w[1], div):
            return variant
    return None


def recognize(results: Sequence[Any]) -> float:
    measure, cfg = pr.padded(results, len(PROBE_READS))
    w = pr.words(measure, 2)
    if w is None or guess_variant(results) is None:
        return 0.0
    if w == [0, 0]:
        return 0.1
    score = 0.7 if w[1] != 0 else 0.3
    c = pr.words(cfg, 1)
    if c is not None:
        score += 0.15 if c[0] <= 247 or c[0] in (2400, 4800, 9600, 14400, 19200) else -0.2
    return pr.clamp(score)


SPEC = ProfileSpec(
    name="xy-md02",
    description="XY-MD02 / SHT20 temperature and humidity sensor (FC04 int16 ÷10 or ÷100)",
    build=build,
    options=OPTIONS,
    probe=Probe(PROBE_READS, recognize),
    line=LINE,
)
