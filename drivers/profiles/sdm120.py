"""Eastron SDM120 single-phase energy meter (Modbus RTU, 2400 Bd 8N1 by default).

Owns the SDM120 register map (domain.md §8.2): FC04 input registers, every value an
IEEE-754 float32 in two registers, high word first. Eastron documents register
numbers "3xxxx"; the addresses here are wire addresses (number - 30001).

Option `groups` picks what is polled, to keep the request plan small on a slow
(2400 Bd) line: "basic" (V, I, P, PF, f), "power" (VA, var, phase angle),
"energy" (kWh / kvarh counters). Default: all.

Requests: at most 40 parameters (80 registers) each, as the Eastron protocol
documents allow (_eastron.MAX_REGISTERS). Configuration registers (meter id, baud
rate, parity ..., `DeviceProfile.config`, not polled): see _eastron.

Probe (shared with sdm630, see _eastron): a plausible float32 voltage at 0x0000 and
mains frequency (45..65 Hz) at 0x0046 say "an Eastron meter"; exception 2 at total
system power 0x0034 or at L1-L2 voltage 0x00C8 (registers only an SDM630 has) says
"single phase": 0.9. A plausible non-zero L-L voltage there means an SDM630 (0.15),
non-zero total power alone 0.3; zeros or silence there leave it open (0.6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.profiles import _eastron as ea
from drivers.profiles.base import DeviceProfile, LineDefaults, Probe, ProfileSpec

LINE = LineDefaults(baudrate=2400, parity="N", stopbits=1)

GROUPS: dict[str, tuple[ea.Row, ...]] = {
    "basic": (
        ("voltage", 0x0000, "V", ea.V_LN, "voltage L-N"),
        ("current", 0x0006, "A", (0.0, 100.0), "current"),
        ("active_power", 0x000C, "W", (-30000.0, 30000.0), "active power (+ import, - export)"),
        ("power_factor", 0x001E, "", ea.PF, "power factor"),
        ("frequency", 0x0046, "Hz", ea.FREQ, "frequency"),
    ),
    "power": (
        ("apparent_power", 0x0012, "VA", (0.0, 30000.0), "apparent power"),
        ("reactive_power", 0x0018, "var", (-30000.0, 30000.0), "reactive power"),
        ("phase_angle", 0x0024, "°", ea.ANGLE, "phase angle"),
    ),
    "energy": (
        ("import_energy", 0x0048, "kWh", ea.ENERGY, "import active energy"),
        ("export_energy", 0x004A, "kWh", ea.ENERGY, "export active energy"),
        ("total_energy", 0x0156, "kWh", ea.ENERGY, "total active energy"),
        ("total_reactive_energy", 0x0158, "kvarh", ea.ENERGY, "total reactive energy"),
    ),
}

OPTIONS = ea.groups_option(GROUPS)
BAUDS = {0: "2400", 1: "4800", 2: "9600", 5: "1200"}  # config.baud codes
CONFIG = ea.config_registers(BAUDS, three_phase=False)


def build(options: Mapping[str, Any]) -> DeviceProfile:
    return ea.build_meter("sdm120", GROUPS, options, LINE, "Eastron SDM120 single-phase energy meter", CONFIG)


def recognize(results: Sequence[Any]) -> float:
    e = ea.evidence(results)
    if not e.meter:
        return 0.0
    if "exception" in (e.total_power, e.line_voltage):
        return 0.9
    if e.line_voltage == "value":
        return 0.15
    if e.total_power == "value":
        return 0.3
    return 0.6


SPEC = ProfileSpec(
    name="sdm120",
    description="Eastron SDM120 single-phase energy meter (FC04 float32)",
    build=build,
    options=OPTIONS,
    probe=Probe(ea.PROBE_READS, recognize),
    line=LINE,
)
