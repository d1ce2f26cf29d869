"""The pole node's register map, mirroring TALQ LampMonitorFunction / LampActuatorFunction.

Input registers (FC 04) are the node's measurements and state; holding registers (FC 03
read, FC 06 / FC 16 write) are the level command and the node's settings. Addresses are
0-based (the PDU address). 32-bit values take two registers, high word first. The table
below is the documentation (docs/pole-node.md is checked against it).
"""

# input registers: (address, name, words, unit, TALQ attribute or note)
INPUTS = (
    (0, "supply_voltage", 1, "0.1 V", "LampMonitor.supplyVoltage"),
    (1, "supply_current", 1, "mA", "LampMonitor.supplyCurrent"),
    (2, "active_power", 1, "0.1 W", "LampMonitor.activePower"),
    (3, "power_factor", 1, "0.001", "LampMonitor.powerFactor"),
    (4, "active_energy", 2, "Wh", "LampMonitor.activeEnergy"),
    (6, "operating_hours", 2, "h", "LampMonitor.operatingHours (burning time)"),
    (8, "switch_on_counter", 2, "count", "LampMonitor.switchOnCounter"),
    (10, "actual_level", 1, "%", "LampActuator.actualLightState (0 when the lamp is not burning)"),
    (11, "driven_level", 1, "%", "LampActuator.feedbackLightCommand (the level the node drives)"),
    (12, "luminaire_state", 1, "enum", "0 off, 1 on, 2 failed"),
    (13, "tilt", 1, "0.1 °", "pole tilt from vertical (accelerometer)"),
    (14, "door", 1, "bool", "pole-base door: 1 open"),
    (15, "lux", 1, "lx", "local illuminance (clipped at 65535)"),
    (16, "status", 1, "bits", "status bits (table below)"),
    (17, "silent_for", 1, "s", "seconds since the cabinet last polled this node (clipped)"),
    (18, "firmware_version", 1, "", "major · 256 + minor"),
    (19, "settings_seq", 1, "count", "sequence number of the settings record in use (low 16 bits)"),
)
INPUT_COUNT = 20

# status bits (input register 16)
LAMP_FAILURE = 0x0001  # LampMonitor.lampFailure
DAY_BURNER = 0x0002  # LampMonitor.lampUnexpectedOn
CYCLING = 0x0004  # LampMonitor.cyclingFailure
DRIVER_FAULT = 0x0008  # current drawn, little power: the control gear
TILT = 0x0010  # tilt above the alarm angle (knocked down)
DOOR_OPEN = 0x0020  # pole-base door open
CABINET_SILENT = 0x0040  # fail-safe: the node follows its own dusk/dawn
SETTINGS_DEFAULTED = 0x0080  # no valid settings record in flash at boot: defaults in use
LUX_FAULT = 0x0100  # the lux sensor does not answer

STATUS_BITS = (
    (0, "lamp_failure", "driven on, supply present, power below 30 % of expected"),
    (1, "day_burner", "burning while driven off or while the node's own lux says day"),
    (2, "cycling", "goes out by itself repeatedly (HID cycling) within an hour"),
    (3, "driver_fault", "draws current but delivers under 30 % of expected power"),
    (4, "tilt", "pole tilt above the alarm angle"),
    (5, "door_open", "pole-base door open"),
    (6, "cabinet_silent", "no poll within the fail-safe timeout: the node runs its own dusk/dawn"),
    (7, "settings_defaulted", "no valid settings record at boot: defaults in use (until settings are written)"),
    (8, "lux_fault", "the lux sensor does not answer"),
)

# holding registers: (address, name, minimum, maximum, default, unit, meaning)
HOLDING = (
    (0, "level_command", 0, 100, 0, "%", "LampActuator.targetLightCommand; not persisted"),
    (1, "failsafe_timeout", 10, 65535, 600, "s", "cabinet silent this long: fail-safe"),
    (2, "default_level", 0, 100, 100, "%", "LampActuator.defaultLightState: level at night in fail-safe"),
    (3, "dusk_lux", 1, 1000, 30, "lx", "fail-safe: on below this"),
    (4, "dawn_lux", 2, 2000, 60, "lx", "fail-safe: off above this (must exceed dusk_lux)"),
    (5, "lux_hold", 0, 3600, 120, "s", "lux beyond a threshold this long before switching"),
    (6, "tilt_alarm", 1, 90, 15, "°", "tilt alarm angle"),
    (7, "nominal_power", 1, 2000, 60, "W", "lamp power at 100 %"),
    (8, "cycling_count", 2, 60, 4, "count", "spontaneous outages within an hour for the cycling bit"),
)
HOLDING_COUNT = 9
LEVEL_COMMAND = 0
SETTINGS_FIRST = 1  # holding registers 1.. are persisted settings


def check_value(address: int, value: int) -> str | None:
    """None if `value` may be written to holding register `address`, else the reason."""
    row = HOLDING[address]
    if value < row[2] or value > row[3]:
        return f"{row[1]}={value} out of range {row[2]}..{row[3]}"
    return None


def check_block(values: list[int]) -> str | None:
    """Cross-register rules over a whole holding image: None if valid, else the reason."""
    for address in range(HOLDING_COUNT):
        why = check_value(address, values[address])
        if why:
            return why
    if values[4] <= values[3]:
        return f"dawn_lux={values[4]} must exceed dusk_lux={values[3]}"
    return None


def defaults() -> list[int]:
    return [row[4] for row in HOLDING]
