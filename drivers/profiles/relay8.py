"""Waveshare-style Modbus RTU relay board (V2 protocol; 9600 Bd 8N1 default).

Owns the board's map (domain.md §8.4; Waveshare "Development Protocol" V2): coils
0..N-1 are relay_1..relay_N (read FC01, write FC05/FC15), discrete inputs 0..M-1
are input_1..input_M (FC02). Options: `channels` (1..32, default 8) and `inputs`
(0..32, default 0). The plain relay boards (Waveshare "Modbus RTU Relay", 16CH,
32CH) have no inputs and refuse FC02, so the default polls none; boards with
inputs (e.g. "Modbus RTU Relay (D)": 8 relays, 8 inputs) set `inputs = 8`.

The vendor extras (toggle value 0x5500, all-relays coil 0x00FF, flash coils
0x0200+/0x0400+) are not points. The configuration holding registers are
`config` registers (FC03 read, FC06 write), never polled:
  0x1000+ch  control mode of relay ch (boards with inputs only; 0 = normal)
  0x2000     serial parameters: high byte parity (0 = none, 1 = even, 2 = odd),
             low byte baud code (0 = 4800, 1 = 9600, 2 = 19200, 3 = 38400,
             4 = 57600, 5 = 115200, 6 = 128000, 7 = 256000)
  0x4000     device address 1..255 (the board also answers a read of it sent to
             the broadcast address 0)
  0x8000     software version, read only: decimal / 100 (0x00C8 = V2.00)
Relay state after power loss is board-specific, so the runtime re-asserts outputs
on reconnect (not this module's job).

Probe: coils 0..7 (FC01) and holding 0x8000 (firmware version). Both readable:
0.8. Coils readable but no firmware register: 0.45 (a generic relay module).
Coils 0..7 refused with exception 2 but firmware readable: 0.4 (a board with fewer
than 8 channels). Meters and sensors refuse FC01 (exception 1): 0. Holding 0x4000
(= the unit id) is not used: recognize() does not know the unit id.
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
MAX_CHANNELS = 32

OPTIONS = {
    "channels": Option("int", 8, "number of relays (coils 0..channels-1)", min=1, max=MAX_CHANNELS),
    "inputs": Option(
        "int", 0, "number of digital inputs (FC02); 0 = a plain relay board without inputs", min=0, max=MAX_CHANNELS
    ),
}
BAUDS = {0: "4800", 1: "9600", 2: "19200", 3: "38400", 4: "57600", 5: "115200", 6: "128000", 7: "256000"}
PARITIES = {"N": 0, "E": 1, "O": 2}
FIRMWARE = 200  # V2.00: the V2 protocol (fully Modbus compliant) since September 2021


def _serial(unit: int, line: LineDefaults | None) -> int:
    """Register 0x2000 for a board on `line`: parity code << 8 | baud code."""
    codes = {int(v): k for k, v in BAUDS.items()}
    line = line or LINE
    return PARITIES.get(line.parity, 0) << 8 | codes.get(line.baudrate, 1)


def config_registers(channels: int, inputs: int) -> tuple[ConfigRegister, ...]:
    H = Table.HOLDING
    modes = [
        ConfigRegister(
            RegisterPoint(f"config.mode_{n}", H, 0x1000 + n - 1, valid=(0, 3), writable=True, description="mode")
        )
        for n in range(1, channels + 1)
        if inputs
    ]
    return (
        *modes,
        ConfigRegister(
            RegisterPoint("config.serial", H, 0x2000, writable=True, description="parity << 8 | baud code"),
            _serial(1, LINE),
            _serial,
        ),
        ConfigRegister(
            RegisterPoint("config.address", H, 0x4000, valid=(1, 255), writable=True, description="device address"),
            1,
            lambda unit, line: unit,
        ),
        ConfigRegister(RegisterPoint("config.firmware", H, 0x8000, description="software version × 100"), FIRMWARE),
    )


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    channels, inputs = opts["channels"], opts["inputs"]
    points = tuple(
        RegisterPoint(f"relay_{n}", Table.COIL, n - 1, DataType.BOOL, writable=True, description=f"relay {n}")
        for n in range(1, channels + 1)
    ) + tuple(
        RegisterPoint(f"input_{n}", Table.DISCRETE, n - 1, DataType.BOOL, description=f"digital input {n}")
        for n in range(1, inputs + 1)
    )
    return DeviceProfile(
        name="relay-board",
        points=points,
        limits=Limits(max_bits=MAX_CHANNELS, max_gap=0),
        line=LINE,
        description=f"Modbus RTU relay board, {channels} relays, {inputs} inputs",
        config=config_registers(channels, inputs),
    )


PROBE_READS = (
    ProbeRead(Table.COIL, 0x0000, 8),  # relays 1..8
    ProbeRead(Table.HOLDING, 0x8000, 1),  # firmware version
)


def recognize(results: Sequence[Any]) -> float:
    coils, firmware = pr.padded(results, len(PROBE_READS))
    has_fw = pr.words(firmware, 1) is not None
    if pr.bits(coils, 8) is not None:
        return 0.8 if has_fw else 0.45
    if pr.exception(coils) == 2 and has_fw:
        return 0.4
    return 0.0


SPEC = ProfileSpec(
    name="relay-board",
    description="Waveshare-style Modbus RTU relay board (coils = relays; discrete inputs on boards that have them)",
    build=build,
    options=OPTIONS,
    probe=Probe(PROBE_READS, recognize),
    line=LINE,
)
