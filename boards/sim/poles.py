"""Simulated pole nodes: the firmware's own pure logic (boards/pole_node/node.py PoleNode,
run by CPython) on a segment's RS-485 line, each with a plant of its own.

A segment ([[sim.circuits]] `poles = [...]`, device names in cable order from the cabinet)
is a PoleSegment. Each pole (SimPole) has:
  * a node (PoleNode) with its own flash (MemoryFlash): settings survive a power cut, and a
    node that loses its supply is a new PoleNode on the same flash when the supply returns;
  * a plant: lamp healthy or failed, driver fault, tilt (°), pole-base door, lux (the site's
    outdoor lux unless set).
Wiring (a decision of the simulator, docs/simulator.md): the node is fed by the unswitched
conductor of the segment's cable (powered while the mains are present and the cable is whole
up to its pole); the lamp by the switched one (the segment's contactor), through the node's
own relay/driver at the level the node decides. A cable cut after pole k leaves poles
k+1.. without supply: they go silent on the line and their lamps go out.

The segment's meter sees the poles: the circuit's failed share (plant.fail_lamps) is set to
the share of the poles' nominal power that is not drawn while the contactor is on, so a
failed lamp or a cut shows as a current drop on the meter. On a circuit with poles the
`circuit failed` control message is therefore overridden by the poles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from boards.pole_node import regmap
from boards.pole_node.node import PoleNode
from boards.pole_node.settings import Flash
from boards.sim.plant import NOMINAL_V, Plant

LAMPS = ("ok", "failed")


class MemoryFlash(Flash):
    """The node's flash as a dict of blobs (kept across the node's reboots)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def read(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    def write(self, name: str, data: bytes) -> None:
        self.blobs[name] = bytes(data)


@dataclass
class PolePlant:
    lamp: str = "ok"  # ok | failed (burnt out: no current)
    driver_fault: bool = False  # current drawn, little light
    tilt_deg: float = 0.0
    door: bool = False
    lux: float | None = None  # None: the site's outdoor lux


class SimPole:
    def __init__(self, name: str, unit: int, now_ms: int) -> None:
        self.name = name
        self.unit = unit
        self.flash = MemoryFlash()
        self.plant = PolePlant()
        self.node: PoleNode | None = PoleNode(unit, self.flash, now_ms)
        self.watts = 0.0
        self.boots = 1

    @property
    def powered(self) -> bool:
        return self.node is not None

    def nominal_w(self) -> float:
        return float(self.node.holding[7]) if self.node is not None else float(regmap.HOLDING[7][4])

    def step(self, now_ms: int, supplied: bool, lamp_supply: bool, outdoor_lux: float) -> float:
        """Advance the pole; the active power its lamp draws now."""
        if not supplied:
            self.node, self.watts = None, 0.0
            return 0.0
        if self.node is None:  # the supply is back: the node boots from its flash
            self.node = PoleNode(self.unit, self.flash, now_ms)
            self.boots += 1
        node, p = self.node, self.plant
        volts = NOMINAL_V if lamp_supply else 0.0
        expected = self.nominal_w() * node.level / 100.0
        if not lamp_supply or expected <= 0 or p.lamp == "failed":
            watts, amps, pf = 0.0, 0.0, 0.0
        elif p.driver_fault:
            watts, amps, pf = 0.1 * expected, expected / NOMINAL_V, 0.1
        else:
            watts, amps, pf = expected, expected / (NOMINAL_V * 0.95), 0.95
        lux = outdoor_lux if p.lux is None else p.lux
        node.update(now_ms, volts, amps, watts, pf, int(min(lux, 65535.0)), int(p.tilt_deg * 10), p.door)
        self.watts = watts
        return watts

    def request(self, frame: bytes, now_ms: int) -> bytes | None:
        """A request frame on the line; the node's reply, or None (silent, or no supply)."""
        return None if self.node is None else self.node.request(frame, now_ms)


class PoleSegment:
    """The poles of one circuit, in cable order from the cabinet."""

    def __init__(self, circuit: str, poles: list[tuple[str, int]], now_ms: int) -> None:
        self.circuit = circuit
        self.poles = [SimPole(name, unit, now_ms) for name, unit in poles]
        self.cut_after: int | None = None  # cable cut after this many poles (0: at the cabinet)

    def by_name(self) -> dict[str, SimPole]:
        return {p.name: p for p in self.poles}

    def step(self, plant: Plant, now_ms: int) -> None:
        lamp_supply = plant.circuit_on(self.circuit)
        drawn = nominal = 0.0
        for i, pole in enumerate(self.poles):
            supplied = plant.mains_ok and (self.cut_after is None or i < self.cut_after)
            drawn += pole.step(now_ms, supplied, lamp_supply and supplied, plant.lux)
            nominal += pole.nominal_w()
        if lamp_supply and nominal > 0:
            lit = [p for p in self.poles if p.node is not None and p.node.level > 0]
            want = sum(p.nominal_w() * p.node.level / 100.0 for p in lit if p.node is not None)
            missing = max(0.0, want - drawn) + sum(p.nominal_w() for p in self.poles if p.node is None)
            plant.fail_lamps(self.circuit, min(1.0, missing / nominal))

    def handler(self, pole: SimPole, now_ms: Callable[[], int]) -> Callable[[bytes], bytes | None]:
        return lambda frame: pole.request(frame, now_ms())

    def state(self) -> dict[str, object]:
        return {
            "circuit": self.circuit,
            "cut_after": self.cut_after,
            "poles": {
                p.name: {
                    "unit": p.unit,
                    "powered": p.powered,
                    "lamp": p.plant.lamp,
                    "driver_fault": p.plant.driver_fault,
                    "tilt_deg": p.plant.tilt_deg,
                    "door": p.plant.door,
                    "level": p.node.level if p.node is not None else 0,
                    "power_w": round(p.watts, 1),
                    "status": p.node.inputs[16] if p.node is not None else None,
                    "boots": p.boots,
                }
                for p in self.poles
            },
        }


POLE_KEYS = ("lamp", "driver_fault", "cut_after", "tilt", "door", "lux")


def find(segments: dict[str, PoleSegment], name: object) -> tuple[PoleSegment, int]:
    """The segment of pole device `name` and the pole's index; KeyError naming the known poles."""
    for seg in segments.values():
        for i, pole in enumerate(seg.poles):
            if pole.name == name:
                return seg, i
    known = ", ".join(p.name for s in segments.values() for p in s.poles) or "none"
    raise KeyError(f"'pole': no pole node {name!r}; pole nodes: {known}")


def apply(seg: PoleSegment, index: int, values: dict[str, object]) -> str:
    """Carry out checked `pole` message values on pole `index` of `seg`; what happened."""
    pole = seg.poles[index]
    done = []
    if "lamp" in values:
        pole.plant.lamp = str(values["lamp"])
        done.append(f"lamp {pole.plant.lamp}")
    if "driver_fault" in values:
        pole.plant.driver_fault = bool(values["driver_fault"])
        done.append("driver fault" if pole.plant.driver_fault else "driver repaired")
    if "tilt" in values:
        pole.plant.tilt_deg = float(values["tilt"])  # type: ignore[arg-type]
        done.append(f"tilted {pole.plant.tilt_deg:g}°")
    if "door" in values:
        pole.plant.door = bool(values["door"])
        done.append("door open" if pole.plant.door else "door closed")
    if "lux" in values:
        lux = values["lux"]
        pole.plant.lux = None if lux == "site" else float(lux)  # type: ignore[arg-type]
        done.append("lux as the site's" if pole.plant.lux is None else f"lux {pole.plant.lux:g}")
    if "cut_after" in values:
        if values["cut_after"]:
            seg.cut_after = index + 1
            after = [p.name for p in seg.poles[index + 1 :]]
            done.append(f"cable cut after it ({', '.join(after) or 'no pole'} without supply)")
        elif seg.cut_after == index + 1:
            seg.cut_after = None
            done.append("cable after it mended")
    return f"pole {pole.name} ({seg.circuit}, unit {pole.unit}): " + (", ".join(done) or "unchanged")


def segments(config: object, now_ms: int) -> dict[str, PoleSegment]:
    """circuit name -> its PoleSegment, from [[sim.circuits]] `poles` (a validated config)."""
    devices = config.devices  # type: ignore[attr-defined]
    return {
        c.name: PoleSegment(c.name, [(p, devices[p].unit) for p in c.poles], now_ms)
        for c in config.sim.circuits  # type: ignore[attr-defined]
        if getattr(c, "poles", ())
    }


def nodes_on(
    segs: dict[str, PoleSegment], config: object, bus: str, now_ms: Callable[[], int]
) -> dict[int, Callable[[bytes], bytes | None]]:
    """unit -> frame handler of every simulated pole node on `bus` (RtuLine's `nodes`)."""
    devices = config.devices  # type: ignore[attr-defined]
    return {
        pole.unit: seg.handler(pole, now_ms)
        for seg in segs.values()
        for pole in seg.poles
        if devices[pole.name].bus == bus
    }


def values(segs: dict[str, PoleSegment], name: str) -> dict[str, int]:
    """Register values of pole node `name` by the map's names (32-bit ones joined); {}
    while it has no supply."""
    seg, index = find(segs, name)
    node = seg.poles[index].node
    if node is None:
        return {}
    out = {}
    for address, key, words, _unit, _note in regmap.INPUTS:
        r = node.inputs
        out[key] = (r[address] << 16) | r[address + 1] if words == 2 else r[address]
    out.update({row[1]: node.holding[row[0]] for row in regmap.HOLDING})
    return out
