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

Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.profiles import _probe as pr
from drivers.profiles._options import as_subset, resolve
from drivers.profiles.base import DataType, DeviceProfile, Limits, LineDefaults, Option, ProbeRead, RegisterPoint, Table

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


def groups_option(groups: Groups) -> dict[str, Option]:
    return {"groups": Option("list", list(groups), "which register groups to poll: " + ", ".join(groups))}


def build_meter(
    name: str, groups: Groups, options: Mapping[str, Any] | None, line: LineDefaults, description: str
) -> DeviceProfile:
    """A meter profile from the chosen register groups (option `groups`)."""
    opts = resolve(groups_option(groups), options)
    chosen = as_subset("groups", opts["groups"], groups)
    rows = sorted((r for g in chosen for r in groups[g]), key=lambda r: r[1])
    return DeviceProfile(
        name=name,
        points=tuple(point(*r) for r in rows),
        # Gaps inside 0x0000..0x004B are answered (sdm_modbus reads through them);
        # 100 words is the cautious per-request cap some meters have (domain.md §7).
        limits=Limits(max_registers=100, max_gap=10),
        line=line,
        description=description,
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
