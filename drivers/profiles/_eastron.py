"""What the Eastron SDM meters share: float32 input-register points and the probe.

SDM120 and SDM630 answer FC04 with IEEE-754 float32 values in two registers, high
word first, big-endian bytes (domain.md §8.2). Both profiles send the same probe
reads, so `cabinet scan` can reuse the answers; `evidence()` turns them into the few
facts that tell the two apart:

* meter: L1 voltage a finite float in 0..500 V and frequency in 45..65 Hz. Few
  other devices give a plausible float32 mains frequency at input 0x0046.
* total_power (input 0x0034) and line_voltage (input 0x00C8, L1-L2): an SDM630
  implements both; an SDM120 answers exception 2 (illegal data address) there.
  Each is classified "value" (plausible, non-zero), "zero", "exception", "none"
  (no answer) or "bad" (implausible / wrong shape).

Request size: Eastron's protocol documents allow at most 40 parameters (80
registers) per read; a longer request is answered with an exception. MAX_REGISTERS
is that cap (the planner never plans a longer read).

Configuration registers (`config_registers`): holding registers "4xxxx", float32
high word first like the measurements, read with FC03 and written with FC16, one
parameter per request (nmakel/sdm_modbus `sdm.py`, Eastron SDM120/SDM630 protocol):
  0x0000 demand time (min, read only), 0x0002 demand period (min), 0x000A system type (SDM630: 1 = 1P2W, 2 = 3P3W,
  3 = 3P4W), 0x000C pulse width (ms), 0x0012 parity/stop (0 = N-1, 1 = E-1,
  2 = O-1, 3 = N-2), 0x0014 meter id (Modbus address 1..247), 0x001C baud rate
  (SDM120: 0 = 2400, 1 = 4800, 2 = 9600, 5 = 1200; SDM630: 0 = 2400 .. 4 = 38400),
  0xF930 running time (h, SDM630, read only), 0xFC00 serial number (uint32, read
  only). Address, parity and baud take effect on the real meters after a power
  cycle, and the SDM120 accepts writes only in its "-SET-" mode (button held 3 s).

Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.profiles import _probe as pr
from drivers.profiles._options import as_subset, resolve
from drivers.profiles.base import (
    ConfigRegister,
    DataType,
    DeviceProfile,
    Limits,
    LineDefaults,
    Option,
    ProbeRead,
    RegisterPoint,
    Table,
)

MAX_REGISTERS = 80  # 40 parameters of two registers per request (Eastron protocol documents)

PROBE_READS = (
    ProbeRead(Table.INPUT, 0x0000, 2),  # voltage (SDM630: L1)
    ProbeRead(Table.INPUT, 0x0046, 2),  # frequency
    ProbeRead(Table.INPUT, 0x0034, 2),  # total system power: SDM630 only
    ProbeRead(Table.INPUT, 0x00C8, 2),  # L1-L2 voltage: SDM630 only
)

# Plausibility ranges shared by both meters.
V_LN = (0.0, 500.0)
V_LL = (0.0, 900.0)
PF = (-1.0, 1.0)
ANGLE = (-360.0, 360.0)
FREQ = (40.0, 70.0)
ENERGY = (0.0, 1e9)


# Reported resolution by unit: the meters' display resolution (class 1 / 0.5 accuracy);
# float32 digits below it are noise.
DECIMALS = {"V": 1, "A": 3, "W": 1, "VA": 1, "var": 1, "Hz": 2, "°": 1, "": 3, "kWh": 3, "kvarh": 3}


# One measurement of a register group: (key, input address, unit, valid range, description).
Row = tuple[str, int, str, tuple[float, float], str]
Groups = Mapping[str, tuple[Row, ...]]


def point(key: str, address: int, unit: str, valid: tuple[float, float], description: str) -> RegisterPoint:
    """One Eastron measurement: float32 in input registers, high word first."""
    return RegisterPoint(
        key,
        Table.INPUT,
        address,
        DataType.FLOAT32,
        unit=unit,
        valid=valid,
        description=description,
        decimals=DECIMALS.get(unit),
    )


PARITY = {0: "N-1", 1: "E-1", 2: "O-1", 3: "N-2"}


def _setting(key: str, address: int, description: str, **kw: Any) -> RegisterPoint:
    return RegisterPoint(key, Table.HOLDING, address, DataType.FLOAT32, description=description, **kw)


def config_registers(bauds: Mapping[int, str], three_phase: bool) -> tuple[ConfigRegister, ...]:
    """The meter's configuration and identification holding registers (see above)."""

    factory_baud = "9600" if three_phase else "2400"

    def baud(unit: int, line: LineDefaults | None) -> str:
        text = str(line.baudrate) if line else ""
        return text if text in bauds.values() else factory_baud

    def parity(unit: int, line: LineDefaults | None) -> str:
        text = f"{line.parity}-{line.stopbits}" if line else "N-1"
        return text if text in PARITY.values() else "N-1"

    regs = [
        ConfigRegister(_setting("config.demand_time", 0x0000, "demand time", unit="min"), 0.0),
        ConfigRegister(
            _setting("config.demand_period", 0x0002, "demand period", unit="min", valid=(0, 60), writable=True), 60
        ),
        ConfigRegister(
            _setting("config.pulse_width", 0x000C, "pulse output width", unit="ms", valid=(60, 200), writable=True), 100
        ),
        ConfigRegister(
            _setting("config.parity", 0x0012, "parity and stop bits", enum=PARITY, writable=True), "N-1", parity
        ),
        ConfigRegister(
            _setting("config.address", 0x0014, "meter id (Modbus address)", valid=(1, 247), writable=True),
            1,
            lambda unit, line: unit,
        ),
        ConfigRegister(
            _setting("config.baud", 0x001C, "baud rate", enum=dict(bauds), writable=True), factory_baud, baud
        ),
        ConfigRegister(
            RegisterPoint("config.serial_number", Table.HOLDING, 0xFC00, DataType.UINT32, description="serial number"),
            0,
            lambda unit, line: 23_000_000 + unit,
        ),
    ]
    if three_phase:
        regs += [
            ConfigRegister(
                _setting(
                    "config.system_type",
                    0x000A,
                    "wiring",
                    enum={1: "1P2W", 2: "3P3W", 3: "3P4W"},
                    writable=True,
                ),
                "3P4W",
            ),
            ConfigRegister(_setting("config.running_time", 0xF930, "running time", unit="h"), 0.0),
        ]
    return tuple(sorted(regs, key=lambda c: c.point.address))


def groups_option(groups: Groups) -> dict[str, Option]:
    return {"groups": Option("list", list(groups), "which register groups to poll: " + ", ".join(groups))}


def build_meter(
    name: str,
    groups: Groups,
    options: Mapping[str, Any] | None,
    line: LineDefaults,
    description: str,
    config: tuple[ConfigRegister, ...] = (),
) -> DeviceProfile:
    """A meter profile from the chosen register groups (option `groups`)."""
    opts = resolve(groups_option(groups), options)
    chosen = as_subset("groups", opts["groups"], groups)
    rows = sorted((r for g in chosen for r in groups[g]), key=lambda r: r[1])
    return DeviceProfile(
        name=name,
        points=tuple(point(*r) for r in rows),
        # Gaps inside 0x0000..0x004B are answered (sdm_modbus reads through them).
        limits=Limits(max_registers=MAX_REGISTERS, max_gap=10),
        line=line,
        description=description,
        config=config,
    )


@dataclass(frozen=True)
class Evidence:
    meter: bool
    total_power: str
    line_voltage: str


def _classify(result: Any, lo: float, hi: float, zero_below: float) -> str:
    w = pr.words(result, 2)
    if w is None:
        if pr.exception(result) is not None:
            return "exception"
        return "none" if result is None else "bad"
    v = pr.f32(w[0], w[1])
    if not pr.finite_in(v, lo, hi):
        return "bad"
    return "zero" if abs(v) < zero_below else "value"


def evidence(results: Sequence[Any]) -> Evidence:
    volt, freq, power, v_ll = pr.padded(results, len(PROBE_READS))
    vw, fw = pr.words(volt, 2), pr.words(freq, 2)
    meter = (
        vw is not None and fw is not None and pr.finite_in(pr.f32(*vw), *V_LN) and pr.finite_in(pr.f32(*fw), 45.0, 65.0)
    )
    return Evidence(
        meter=meter,
        total_power=_classify(power, -1e7, 1e7, 0.5),
        line_voltage=_classify(v_ll, 0.0, 1000.0, 10.0),
    )
