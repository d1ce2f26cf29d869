"""Eastron SDM630 three-phase energy meter (Modbus RTU, 9600 Bd 8N1 by default).

Owns the SDM630 register map (domain.md §8.2): FC04 input registers, float32 in two
registers, high word first. Per-phase keys end in _l1/_l2/_l3; line-to-line
voltages are voltage_l1_l2, voltage_l2_l3, voltage_l3_l1.

Option `groups` picks what is polled, so a config can keep the request plan small:
  basic          per-phase voltage, current, active power; power_total; frequency
  power          per-phase apparent/reactive power, power factor, phase angle;
                 power_factor_total
  averages       voltage_avg, current_avg, current_sum
  energy         import/export/total active energy, total reactive energy
  line_voltages  L-L voltages and their average (0x00C8..0x00CE)
  neutral        current_neutral (0x00E0)
Default: all groups.

Requests: at most 40 parameters (80 registers) each, as the Eastron protocol
documents allow (_eastron.MAX_REGISTERS). Configuration registers (meter id, baud
rate, parity ..., `DeviceProfile.config`, not polled): see _eastron.

Probe (shared with sdm120, see _eastron): plausible voltage at 0x0000 and mains
frequency at 0x0046 are required. Exception at total system power 0x0034 or L1-L2
voltage 0x00C8 means single phase (0.1). A plausible non-zero L-L voltage gives 0.9
(only a three-phase meter measures one), a non-zero total power 0.7; zeros or
silence there leave it open (0.5; e.g. an SDM630 wired single phase, unloaded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.profiles import _eastron as ea
from drivers.profiles.base import DeviceProfile, LineDefaults, Probe, ProfileSpec

LINE = LineDefaults(baudrate=9600, parity="N", stopbits=1)

_I = (0.0, 10000.0)  # CT-connected variants report primary current
_P = (-1e7, 1e7)


def _phases(key: str, base: int, unit: str, valid: tuple[float, float], what: str) -> tuple[ea.Row, ...]:
    return tuple((f"{key}_l{n}", base + 2 * (n - 1), unit, valid, f"{what} L{n}") for n in (1, 2, 3))


GROUPS: dict[str, tuple[ea.Row, ...]] = {
    "basic": (
        *_phases("voltage", 0x0000, "V", ea.V_LN, "voltage L-N"),
        *_phases("current", 0x0006, "A", _I, "current"),
        *_phases("power", 0x000C, "W", _P, "active power"),
        ("power_total", 0x0034, "W", _P, "total system active power"),
        ("frequency", 0x0046, "Hz", ea.FREQ, "frequency"),
    ),
    "power": (
        *_phases("apparent_power", 0x0012, "VA", (0.0, 1e7), "apparent power"),
        *_phases("reactive_power", 0x0018, "var", _P, "reactive power"),
        *_phases("power_factor", 0x001E, "", ea.PF, "power factor"),
        *_phases("phase_angle", 0x0024, "°", ea.ANGLE, "phase angle"),
        ("power_factor_total", 0x003E, "", ea.PF, "total system power factor"),
    ),
    "averages": (
        ("voltage_avg", 0x002A, "V", ea.V_LN, "average L-N voltage"),
        ("current_avg", 0x002E, "A", _I, "average line current"),
        ("current_sum", 0x0030, "A", (0.0, 30000.0), "sum of line currents"),
    ),
    "energy": (
        ("import_energy", 0x0048, "kWh", ea.ENERGY, "import active energy"),
        ("export_energy", 0x004A, "kWh", ea.ENERGY, "export active energy"),
        ("total_energy", 0x0156, "kWh", ea.ENERGY, "total active energy"),
        ("total_reactive_energy", 0x0158, "kvarh", ea.ENERGY, "total reactive energy"),
    ),
    "line_voltages": (
        ("voltage_l1_l2", 0x00C8, "V", ea.V_LL, "voltage L1-L2"),
        ("voltage_l2_l3", 0x00CA, "V", ea.V_LL, "voltage L2-L3"),
        ("voltage_l3_l1", 0x00CC, "V", ea.V_LL, "voltage L3-L1"),
        ("voltage_ll_avg", 0x00CE, "V", ea.V_LL, "average L-L voltage"),
    ),
    "neutral": (("current_neutral", 0x00E0, "A", _I, "neutral current"),),
}

OPTIONS = ea.groups_option(GROUPS)
BAUDS = {0: "2400", 1: "4800", 2: "9600", 3: "19200", 4: "38400"}  # config.baud codes
CONFIG = ea.config_registers(BAUDS, three_phase=True)


def build(options: Mapping[str, Any]) -> DeviceProfile:
    return ea.build_meter("sdm630", GROUPS, options, LINE, "Eastron SDM630 three-phase energy meter", CONFIG)


def recognize(results: Sequence[Any]) -> float:
    e = ea.evidence(results)
    if not e.meter:
        return 0.0
    if "exception" in (e.total_power, e.line_voltage):
        return 0.1
    if e.line_voltage == "value":
        return 0.9
    if e.total_power == "value":
        return 0.7
    return 0.5


SPEC = ProfileSpec(
    name="sdm630",
    description="Eastron SDM630 three-phase energy meter (FC04 float32)",
    build=build,
    options=OPTIONS,
    probe=Probe(ea.PROBE_READS, recognize),
    line=LINE,
)
