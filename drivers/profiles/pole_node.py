"""The pole node (boards/pole_node): a light-pole controller on the cabinet's RS-485 line
(Modbus RTU, 9600 Bd 8N1 by default), its register map after TALQ LampMonitor/LampActuator.

The map is docs/pole-node.md's (boards/pole_node/regmap.py is the firmware's copy; this
module imports nothing of ours, and tests/test_pole_agent.py checks the two agree):
input registers 0..19 (FC04) are polled in one request; holding register 0, the level
command (writable, 0..100 %), is a point only with option `level = true` (a second request
per poll: off by default, since the nodes run their own dusk/dawn unless commanded); holding
1..8 are the node's settings, exposed as configuration registers (`DeviceProfile.config`,
never polled). 32-bit values take two registers, high word first. `status` (input 16) is
also split into one bool point per bit. No probe (a node answers only its own unit id and
has no signature register besides firmware_version, which any device may hold).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.profiles._options import resolve
from drivers.profiles.base import (
    ConfigRegister,
    DataType,
    DeviceProfile,
    Limits,
    LineDefaults,
    Option,
    ProfileSpec,
    RegisterPoint,
    Table,
)

LINE = LineDefaults(baudrate=9600, parity="N", stopbits=1)
U16, U32 = DataType.UINT16, DataType.UINT32

# key, address, type, unit, scale, valid, description (input registers)
INPUTS: tuple[tuple[str, int, DataType, str, float, tuple[float, float], str], ...] = (
    ("supply_voltage", 0, U16, "V", 0.1, (0.0, 500.0), "supply voltage at the pole"),
    ("supply_current", 1, U16, "A", 0.001, (0.0, 65.0), "lamp current"),
    ("active_power", 2, U16, "W", 0.1, (0.0, 6500.0), "lamp active power"),
    ("power_factor", 3, U16, "", 0.001, (0.0, 1.0), "lamp power factor"),
    ("active_energy", 4, U32, "Wh", 1.0, (0.0, 4.3e9), "lamp energy counter"),
    ("operating_hours", 6, U32, "h", 1.0, (0.0, 4.3e9), "burning hours"),
    ("switch_on_counter", 8, U32, "", 1.0, (0.0, 4.3e9), "switch-on count"),
    ("actual_level", 10, U16, "%", 1.0, (0.0, 100.0), "light level (0 when not burning)"),
    ("driven_level", 11, U16, "%", 1.0, (0.0, 100.0), "level the node drives"),
    ("tilt", 13, U16, "°", 0.1, (0.0, 180.0), "pole tilt from vertical"),
    ("lux", 15, U16, "lx", 1.0, (0.0, 65535.0), "local illuminance"),
    ("status", 16, U16, "", 1.0, (0.0, 65535.0), "status bits"),
    ("silent_for", 17, U16, "s", 1.0, (0.0, 65535.0), "seconds since the cabinet last polled the node"),
    ("firmware_version", 18, U16, "", 1.0, (0.0, 65535.0), "major * 256 + minor"),
)
STATE = {0: "off", 1: "on", 2: "failed"}
STATUS_BITS = (
    "lamp_failure",
    "day_burner",
    "cycling",
    "driver_fault",
    "tilt_alarm",
    "door_open",
    "cabinet_silent",
    "settings_defaulted",
    "lux_fault",
)
# key, address, minimum, maximum, default, unit (holding 1..8, the node's settings)
SETTINGS = (
    ("failsafe_timeout", 1, 10, 65535, 600, "s"),
    ("default_level", 2, 0, 100, 100, "%"),
    ("dusk_lux", 3, 1, 1000, 30, "lx"),
    ("dawn_lux", 4, 2, 2000, 60, "lx"),
    ("lux_hold", 5, 0, 3600, 120, "s"),
    ("tilt_alarm", 6, 1, 90, 15, "°"),
    ("nominal_power", 7, 1, 2000, 60, "W"),
    ("cycling_count", 8, 2, 60, 4, ""),
)


OPTIONS = {"level": Option("bool", False, "poll and write the level command (holding 0) as point level_command")}


def _setting(key: str, address: int, lo: int, hi: int, default: int, unit: str) -> ConfigRegister:
    point = RegisterPoint(
        f"config.{key}", Table.HOLDING, address, unit=unit, valid=(lo, hi), writable=True, description=key
    )
    return ConfigRegister(point, default)


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    points = [
        RegisterPoint(key, Table.INPUT, addr, dtype, unit=unit, scale=scale, valid=valid, description=text)
        for key, addr, dtype, unit, scale, valid, text in INPUTS
    ]
    points.append(RegisterPoint("luminaire_state", Table.INPUT, 12, enum=STATE, description="off, on or failed"))
    points.append(RegisterPoint("door", Table.INPUT, 14, bit=0, description="pole-base door open"))
    points += [
        RegisterPoint(name, Table.INPUT, 16, bit=i, description=f"status bit {i}") for i, name in enumerate(STATUS_BITS)
    ]
    if opts["level"]:
        points.append(
            RegisterPoint(
                "level_command",
                Table.HOLDING,
                0,
                unit="%",
                valid=(0.0, 100.0),
                writable=True,
                description="level command",
            )
        )
    return DeviceProfile(
        name="pole_node",
        points=tuple(points),
        limits=Limits(max_registers=20, max_gap=4),
        line=LINE,
        description="pole node: lamp monitor and actuator in a light pole (boards/pole_node)",
        config=tuple(_setting(*row) for row in SETTINGS),
    )


SPEC = ProfileSpec(
    name="pole_node",
    description="light-pole node (boards/pole_node): lamp, tilt, door and lux after TALQ",
    build=build,
    options=OPTIONS,
    line=LINE,
)
