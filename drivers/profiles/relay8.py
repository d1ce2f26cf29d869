"""Waveshare-style Modbus RTU relay board (V2 protocol; 9600 Bd 8N1 default).

Owns the board's map (domain.md §8.4): coils 0..N-1 are relay_1..relay_N (read
FC01, write FC05/FC15), discrete inputs 0..M-1 are input_1..input_M (FC02).
Options: `channels` (1..32, default 8) and `inputs` (0..32; not set = same as
channels, 0 for boards without inputs). The vendor extras (toggle value 0x5500,
all-relays coil 0x00FF, flash coils 0x0200+/0x0400+) and the configuration holding
registers (0x4000 address, 0x2000 baud, 0x8000 firmware) are not points: the
poller must not touch them. Relay state after power loss is board-specific, so the
runtime re-asserts outputs on reconnect (not this module's job).

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
    "inputs": Option("int", None, "number of digital inputs; not set = channels, 0 = none", min=0, max=MAX_CHANNELS),
}


def build(options: Mapping[str, Any]) -> DeviceProfile:
    opts = resolve(OPTIONS, options)
    channels = opts["channels"]
    inputs = channels if opts["inputs"] is None else opts["inputs"]
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
    description="Waveshare-style Modbus RTU relay board (coils = relays, discrete inputs)",
    build=build,
    options=OPTIONS,
    probe=Probe(PROBE_READS, recognize),
    line=LINE,
)
