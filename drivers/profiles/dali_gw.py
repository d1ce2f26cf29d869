"""Intesis-style DALI-to-Modbus gateway (HMS Intesis INMBSDAL0640000 and kin).

Owns the gateway's per-ballast holding-register map (domain.md §8.6). For DALI
line L and short address A the block starts at 7000·L + 100·A:
  +5   status bits: ballast_fail (b0), lamp_fail (b1), lamp_power_on (b2)
  +6   actual level, % (read only)
  +15  arc power level, % 0..100 (read/write): the setpoint
and the line's broadcast level is 7000·L + 6800 (write to dim every ballast).
Values are percent, not DALI arc levels. Keys: `a<A>.ballast_fail`,
`a<A>.lamp_fail`, `a<A>.lamp_power_on`, `a<A>.level`, `a<A>.setpoint`,
`broadcast.level`.

Options: `line` (0..8: 7000·8 + 6800 is the last line that fits the 16-bit
address space; real gateways have one or two), `addresses` (short addresses 0..63
that exist on the line; default [0]), `broadcast` (default true: include
broadcast.level; set false if a gateway refuses to read it back).

Configuration registers (`config`, never polled; values in % like the levels):
line-wide 7000·L + 0..3 ballast/lamp failure bit fields (ECG 0-15, 16-31, 32-47,
48-63; bit i = ballast 16·k + i), +4 "update all ECG status" (R/W); per ballast
+7 device type (6 = LED), +8 physical minimum, +9 min, +10 max, +11 power-on,
+12 system-failure level, +13 fade time (0..15), +14 fade rate (1..15), and for LED
gear (DALI part 207) +80 failure status bits, +81 gear type, +82 dimming curve
(0 = logarithmic, 1 = linear). Keys `failures.ecg_0_15` ... `failures.ecg_48_63`,
`update_status`, `a<A>.device_type`, `a<A>.physical_min`, `a<A>.min_level`,
`a<A>.max_level`, `a<A>.power_on_level`, `a<A>.system_failure_level`,
`a<A>.fade_time`, `a<A>.fade_rate`, `a<A>.led_failure`, `a<A>.gear_type`,
`a<A>.dimming_curve` (HMS Intesis INMBSDAL0640000 user manual r1.3, §2.4).

Limits: every ballast owns a block of 100 registers, most of them unused by this
profile; max_gap is 2 so the planner reads +5..+6 and +15 as two small requests
per ballast rather than reading through the registers in between.

Probe (line 0, short address 0): holding 5..15 read as ballast 0's block must be
plausible (status fits 8 bits; levels 0..100 %, power-on and system-failure level
may be 255 = MASK; min <= max; fade time and rate 0..15): 0.6 if a max level is set
(a ballast is there), 0.15 if everything is zero (many devices read unused
registers as 0, so zeros prove little). The line's failure bit fields (holding
0..3) readable: +0.1; broadcast level (6800) reading back 0..100 or 255: +0.15.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.profiles import _probe as pr
from drivers.profiles._options import as_int, fail, resolve
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

# The gateway's Modbus RTU side is set up by its configuration tool; 9600 8N1 is
# what this profile documents as a starting point for `cabinet scan`.
LINE = LineDefaults(baudrate=9600, parity="N", stopbits=1)
MAX_LINE = 8
PERCENT = (0.0, 100.0)
STATUS, LEVEL, SETPOINT, BROADCAST = 5, 6, 15, 6800

OPTIONS = {
    "line": Option("int", 0, "DALI line of the gateway (register base 7000·line)", min=0, max=MAX_LINE),
    "addresses": Option("list", [0], "DALI short addresses 0..63 present on the line"),
    "broadcast": Option("bool", True, "include the writable broadcast level"),
}


def _ballast(line: int, a: int) -> tuple[RegisterPoint, ...]:
    base = 7000 * line + 100 * a
    H, k = Table.HOLDING, f"a{a}."
    return (
        RegisterPoint(k + "ballast_fail", H, base + STATUS, bit=0, description=f"ballast {a} failure"),
        RegisterPoint(k + "lamp_fail", H, base + STATUS, bit=1, description=f"ballast {a} lamp failure"),
        RegisterPoint(k + "lamp_power_on", H, base + STATUS, bit=2, description=f"ballast {a} lamp on"),
        RegisterPoint(
            k + "level",
            H,
            base + LEVEL,
            DataType.UINT16,
            unit="%",
            valid=PERCENT,
            description=f"ballast {a} actual level",
        ),
        RegisterPoint(
            k + "setpoint",
            H,
            base + SETPOINT,
            DataType.UINT16,
            unit="%",
            valid=PERCENT,
            writable=True,
            description=f"ballast {a} arc power level (dim command)",
        ),
    )


# Per ballast: (offset, key, factory value, valid range); read only on the gateway.
BALLAST_CONFIG = (
    (7, "device_type", 6, (0, 255)),
    (8, "physical_min", 1, PERCENT),
    (9, "min_level", 1, PERCENT),
    (10, "max_level", 100, PERCENT),
    (11, "power_on_level", 100, PERCENT),
    (12, "system_failure_level", 100, PERCENT),
    (13, "fade_time", 0, (0, 15)),
    (14, "fade_rate", 7, (1, 15)),
    (80, "led_failure", 0, (0, 255)),
    (81, "gear_type", 3, (0, 15)),
    (82, "dimming_curve", 0, (0, 1)),
)


def config_registers(line: int, addresses: Sequence[int]) -> tuple[ConfigRegister, ...]:
    H, base = Table.HOLDING, 7000 * line
    regs = [
        ConfigRegister(
            RegisterPoint(f"failures.ecg_{16 * k}_{16 * k + 15}", H, base + k, description="ballast/lamp failure bits")
        )
        for k in range(4)
    ]
    regs.append(
        ConfigRegister(
            RegisterPoint("update_status", H, base + 4, valid=(0, 1), writable=True, description="update ECG status")
        )
    )
    for a in sorted(addresses):
        regs += [
            ConfigRegister(
                RegisterPoint(f"a{a}.{key}", H, base + 100 * a + off, valid=valid, description=f"ballast {a} {key}"),
                value,
            )
            for off, key, value, valid in BALLAST_CONFIG
        ]
    return tuple(regs)


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    line = opts["line"]
    addresses: list[int] = []
    for i, a in enumerate(opts["addresses"]):
        a = as_int(f"addresses[{i}]", a, 0, 63)
        if a in addresses:
            fail(f"addresses[{i}]", a, "listed twice", "each short address once")
        addresses.append(a)
    if not addresses and not opts["broadcast"]:
        fail(
            "addresses",
            opts["addresses"],
            "empty and broadcast = false: nothing to poll",
            "at least one short address 0..63, or broadcast = true",
        )
    points = tuple(p for a in sorted(addresses) for p in _ballast(line, a))
    if opts["broadcast"]:
        points += (
            RegisterPoint(
                "broadcast.level",
                Table.HOLDING,
                7000 * line + BROADCAST,
                DataType.UINT16,
                unit="%",
                valid=PERCENT,
                writable=True,
                description="broadcast arc power level",
            ),
        )
    return DeviceProfile(
        name="dali-gateway",
        points=points,
        limits=Limits(max_registers=100, max_gap=2),
        line=LINE,
        description=f"DALI gateway line {line}, {len(addresses)} ballasts",
        config=config_registers(line, addresses),
    )


PROBE_READS = (
    ProbeRead(Table.HOLDING, 0, 4),  # line 0 failure bit fields, ECG 0..63
    ProbeRead(Table.HOLDING, STATUS, 11),  # ballast 0: +5 .. +15
    ProbeRead(Table.HOLDING, BROADCAST, 1),  # line 0 broadcast level
)


def _level_or_mask(v: int) -> bool:
    return v <= 100 or v == 255


def recognize(results: Sequence[Any]) -> float:
    fail_bits, block, bcast = pr.padded(results, len(PROBE_READS))
    b = pr.words(block, 11)
    if b is None:
        return 0.0
    status, level, dtype, phys_min, min_l, max_l, power_on, sys_fail, fade_t, fade_r, arc = b
    plausible = (
        status <= 0xFF
        and level <= 100
        and dtype <= 255
        and max(phys_min, min_l, max_l) <= 100
        and min_l <= max_l
        and _level_or_mask(power_on)
        and _level_or_mask(sys_fail)
        and fade_t <= 15
        and fade_r <= 15
        and _level_or_mask(arc)
    )
    if not plausible:
        return 0.0
    score = 0.6 if max_l > 0 else 0.15
    if pr.words(fail_bits, 4) is not None:
        score += 0.1
    bw = pr.words(bcast, 1)
    if bw is not None and _level_or_mask(bw[0]):
        score += 0.15
    return pr.clamp(score)


SPEC = ProfileSpec(
    name="dali-gateway",
    description="Intesis-style DALI-to-Modbus gateway: per-ballast status, level, setpoint; broadcast level",
    build=build,
    options=OPTIONS,
    probe=Probe(PROBE_READS, recognize),
    line=LINE,
)
