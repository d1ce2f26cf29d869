"""What a device profile is: register points, request limits, line defaults, probe.

A profile module (one per device type, in this package) exposes `SPEC`, a
ProfileSpec: its name, the options a config may set (`[devices.X.options]`), a
`build(options)` that returns the concrete DeviceProfile, and optionally a probe
that `cabinet scan` uses to recognize the device. A DeviceProfile also lists the
device's configuration and identification registers (`ConfigRegister`: address,
baud rate, firmware version ...), which the poller never reads; `cabinet scan`
probes some of them and the simulated cabinet serves them as the real device does.
Pure data; no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Table(str, enum.Enum):
    """The four Modbus data tables."""

    COIL = "coil"  # read FC01, write FC05/FC15
    DISCRETE = "discrete"  # read FC02
    HOLDING = "holding"  # read FC03, write FC06/FC16
    INPUT = "input"  # read FC04

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)


class DataType(str, enum.Enum):
    BOOL = "bool"  # one coil or discrete input
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT64 = "float64"

    @property
    def width(self) -> int:
        """Number of 16-bit registers (or bits, for BOOL)."""
        return _WIDTH[self]

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT32, DataType.FLOAT64)


_WIDTH = {
    DataType.BOOL: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}

BYTE_ORDERS = ("big", "little")  # byte order inside each 16-bit register
WORD_ORDERS = ("big", "little")  # "big" = most significant register first


class ProfileError(ValueError):
    """A profile cannot be built from the given options. `key` names the option."""

    def __init__(self, key: str, message: str, value: Any = None, allowed: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.allowed = allowed


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    """One value a device offers, and how to turn its registers into that value.

    `address` is the 0-based wire address in `table`. A point with `bit` set reads
    one bit (0 = least significant) of a 16-bit register and yields a bool. `enum`
    maps raw integers to labels. `valid` is the plausible (min, max) of the final
    value; anything outside gets quality bad. Final value = raw * scale + offset.
    """

    key: str
    table: Table
    address: int
    dtype: DataType = DataType.UINT16
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    byte_order: str = "big"
    word_order: str = "big"
    bit: int | None = None
    # Left out of the hash so a point with an enum (a dict) stays hashable.
    enum: Mapping[int, str] | None = field(default=None, hash=False)
    valid: tuple[float, float] | None = None
    writable: bool = False
    description: str = ""
    # The resolution worth reporting: a float value is rounded to this many decimals
    # (None: as decoded). Digits below a meter's resolution are noise that costs bytes.
    decimals: int | None = None

    @property
    def width(self) -> int:
        return self.dtype.width

    @property
    def end(self) -> int:
        return self.address + self.width

    def __post_init__(self) -> None:
        if self.table.is_bits != (self.dtype is DataType.BOOL):
            raise ProfileError(
                self.key,
                f"point {self.key!r}: type {self.dtype.value} does not fit table {self.table.value}",
                self.dtype.value,
                "bool for coil/discrete, a register type for holding/input",
            )
        if not 0 <= self.address <= 0xFFFF or self.end > 0x10000:
            raise ProfileError(
                self.key, f"point {self.key!r}: address {self.address} out of 0..65535", self.address, "0..65535"
            )
        if self.byte_order not in BYTE_ORDERS or self.word_order not in WORD_ORDERS:
            raise ProfileError(self.key, f"point {self.key!r}: byte/word order must be 'big' or 'little'")
        if self.bit is not None and (self.dtype.width != 1 or not 0 <= self.bit <= 15 or self.table.is_bits):
            raise ProfileError(
                self.key,
                f"point {self.key!r}: bit {self.bit} needs a 16-bit register type and 0..15",
                self.bit,
                "0..15",
            )
        if self.writable and not self.table.writable:
            raise ProfileError(self.key, f"point {self.key!r}: table {self.table.value} is read-only")
        if self.scale == 0:
            raise ProfileError(self.key, f"point {self.key!r}: scale must not be 0", 0, "a non-zero number")
        if not (math.isfinite(self.scale) and math.isfinite(self.offset)):
            raise ProfileError(
                self.key,
                f"point {self.key!r}: scale and offset must be finite numbers",
                (self.scale, self.offset),
                "finite numbers",
            )


@dataclass(frozen=True, slots=True)
class Limits:
    """What a device tolerates per read request.

    `max_registers` / `max_bits` cap one request (Modbus allows 125 / 2000);
    `max_gap` is how many unused registers (or bits) may be read through to join two
    points into one block; `forbidden` lists (table, start, end) ranges, end
    exclusive, that must never be read (devices that fault on them).
    """

    max_registers: int = 125
    max_bits: int = 2000
    max_gap: int = 10
    forbidden: tuple[tuple[Table, int, int], ...] = ()

    def max_count(self, table: Table) -> int:
        return self.max_bits if table.is_bits else self.max_registers


@dataclass(frozen=True, slots=True)
class LineDefaults:
    """Factory serial settings of a device (for documentation and `cabinet scan`)."""

    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1


@dataclass(frozen=True, slots=True)
class ProbeRead:
    table: Table
    address: int
    count: int


# A probe result per read: a list of register/bit values, an int exception code, or
# None when the device did not answer.
ProbeResult = "list[int] | list[bool] | int | None"


@dataclass(frozen=True, slots=True)
class Probe:
    """Reads `cabinet scan` sends to a unit id, and a judge of the answers that
    returns a confidence 0..1 that the device is this profile."""

    reads: tuple[ProbeRead, ...]
    recognize: Callable[[Sequence[Any]], float]


@dataclass(frozen=True, slots=True)
class ConfigRegister:
    """A register the device has besides its points: configuration (address, baud
    rate, offsets) or identification (firmware version, serial number). Never polled.

    `point` says where and how the value is encoded, and `point.writable` whether
    the device accepts writes (FC06/FC16); `point.valid` and `point.enum` are what a
    write must respect. `default` is the factory value (a final value; an enum label
    is fine). `follows(unit, line)`, if set, gives the value on a device at that unit
    id on that line (`line` None: reached over Modbus TCP), e.g. the address register
    holds the unit id.
    """

    point: RegisterPoint
    default: Any = 0
    follows: Callable[[int, LineDefaults | None], Any] | None = None

    @property
    def key(self) -> str:
        return self.point.key

    def value(self, unit: int, line: LineDefaults | None) -> Any:
        """The register's value on a device at `unit` on `line`."""
        return self.default if self.follows is None else self.follows(unit, line)


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A concrete device: all its points and limits, ready for the planner, and its
    configuration/identification registers (`config`, not polled)."""

    name: str
    points: tuple[RegisterPoint, ...]
    limits: Limits = Limits()
    line: LineDefaults = LineDefaults()
    description: str = ""
    config: tuple[ConfigRegister, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for p in self.points:
            if p.key in seen:
                raise ProfileError(p.key, f"profile {self.name}: duplicate point key {p.key!r}")
            seen.add(p.key)
        keys: set[str] = set()
        for c in self.config:
            if c.key in keys:
                raise ProfileError(c.key, f"profile {self.name}: duplicate config register {c.key!r}")
            keys.add(c.key)

    def point(self, key: str) -> RegisterPoint:
        for p in self.points:
            if p.key == key:
                return p
        raise KeyError(key)


@dataclass(frozen=True, slots=True)
class Option:
    """An option a config may set for a profile. `kind` is one of
    bool, int, float, str, list, table; `choices` limits str/int values."""

    kind: str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ProfileSpec:
    name: str
    description: str
    build: Callable[[Mapping[str, Any]], DeviceProfile]
    options: Mapping[str, Option] = field(default_factory=dict)
    probe: Probe | None = None
    line: LineDefaults = LineDefaults()
