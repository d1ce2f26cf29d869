"""Bindings between the plant model and the simulated devices' registers.

A binding knows, for one device of the cabinet config, which plant quantity each of
its points shows (`values(plant)`) and what a master's write to one of its points
does to the plant (`on_write`). Meters show the circuit they meter, the T/RH sensor
the cabinet air, the lux sensor the daylight, the relay board drives circuits, fan
and heater and shows wired contacts, the DALI gateway dims its circuit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from boards.sim.plant import MeterValues, Plant

Writer = Callable[[str, Any], None]


class Binding:
    """A device that shows nothing of the plant (generic profiles)."""

    def values(self, plant: Plant) -> dict[str, Any]:
        return {}

    def on_write(self, plant: Plant, key: str, value: Any) -> None:
        pass


def _sdm120(m: MeterValues) -> dict[str, Any]:
    pf = m.power_factor
    return {
        "voltage": m.voltage[0],
        "current": m.current[0],
        "active_power": m.power[0],
        "apparent_power": m.apparent_power,
        "reactive_power": m.reactive_power,
        "power_factor": pf,
        "phase_angle": 0.0 if m.power[0] == 0 else _angle(pf),
        "frequency": m.frequency,
        "import_energy": m.import_energy_kwh,
        "export_energy": m.export_energy_kwh,
        "total_energy": m.total_energy_kwh,
        "total_reactive_energy": 0.0,
    }


def _angle(pf: float) -> float:
    import math

    return round(math.degrees(math.acos(max(-1.0, min(1.0, pf)))), 2)


def _sdm630(m: MeterValues) -> dict[str, Any]:
    v = (list(m.voltage) + [m.voltage[0]] * 3)[:3]
    i = (list(m.current) + [0.0] * 3)[:3]
    p = (list(m.power) + [0.0] * 3)[:3]
    n = max(1, len(m.power))
    out: dict[str, Any] = {}
    for k in range(3):
        ph = f"l{k + 1}"
        on = p[k] != 0
        out.update(
            {
                f"voltage_{ph}": v[k],
                f"current_{ph}": i[k],
                f"power_{ph}": p[k],
                f"apparent_power_{ph}": m.apparent_power / n if on else 0.0,
                f"reactive_power_{ph}": m.reactive_power / n if on else 0.0,
                f"power_factor_{ph}": m.power_factor if on else 1.0,
                f"phase_angle_{ph}": _angle(m.power_factor) if on else 0.0,
            }
        )
    ll = [round(x * 3**0.5, 2) for x in v]
    out.update(
        {
            "voltage_avg": sum(v) / 3,
            "current_avg": sum(i) / 3,
            "current_sum": sum(i),
            "power_total": sum(p),
            "power_factor_total": m.power_factor,
            "frequency": m.frequency,
            "import_energy": m.import_energy_kwh,
            "export_energy": m.export_energy_kwh,
            "voltage_l1_l2": ll[0],
            "voltage_l2_l3": ll[1],
            "voltage_l3_l1": ll[2],
            "voltage_ll_avg": sum(ll) / 3,
            "current_neutral": abs(i[0] - i[1]) if len(m.current) == 1 else 0.0,
            "total_energy": m.total_energy_kwh,
            "total_reactive_energy": 0.0,
        }
    )
    return out


class MeterBinding(Binding):
    def __init__(self, circuit: str | None, three_phase: bool) -> None:
        self.circuit = circuit
        self.shape = _sdm630 if three_phase else _sdm120

    def values(self, plant: Plant) -> dict[str, Any]:
        if self.circuit is None:
            idle = MeterValues(
                voltage=[230.0],
                current=[0.0],
                power=[0.0],
                apparent_power=0.0,
                reactive_power=0.0,
                power_factor=1.0,
                frequency=50.0,
                import_energy_kwh=0.0,
                export_energy_kwh=0.0,
                total_energy_kwh=0.0,
            )
            return self.shape(idle)
        return self.shape(plant.meter(self.circuit))


class ClimateBinding(Binding):
    def values(self, plant: Plant) -> dict[str, Any]:
        return {"temperature": round(plant.cabinet_c, 2), "humidity": round(min(100.0, plant.cabinet_rh), 2)}


class LuxBinding(Binding):
    def values(self, plant: Plant) -> dict[str, Any]:
        return {"lux": min(200_000.0, plant.lux)}


class RelayBinding(Binding):
    """Coils drive what they are wired to; discrete inputs show wired contacts."""

    def __init__(
        self, outputs: Mapping[str, Callable[[Plant, bool], None]], inputs: Mapping[str, Callable[[Plant], bool]]
    ) -> None:
        self.outputs = dict(outputs)
        self.inputs = dict(inputs)

    def values(self, plant: Plant) -> dict[str, Any]:
        return {key: bool(get(plant)) for key, get in self.inputs.items()}

    def on_write(self, plant: Plant, key: str, value: Any) -> None:
        act = self.outputs.get(key)
        if act is not None:
            act(plant, bool(value))


class DaliBinding(Binding):
    """Ballast levels follow their setpoints while the circuit has mains."""

    _KEY = re.compile(r"a(\d+)\.(setpoint|level)")

    def __init__(self, circuit: str | None, addresses: list[int]) -> None:
        self.circuit = circuit
        self.setpoints = dict.fromkeys(addresses, 100.0)

    def _powered(self, plant: Plant) -> bool:
        return self.circuit is None or plant.circuit_on(self.circuit)

    def values(self, plant: Plant) -> dict[str, Any]:
        powered = self._powered(plant)
        out: dict[str, Any] = {}
        for a, sp in self.setpoints.items():
            out[f"a{a}.setpoint"] = sp
            out[f"a{a}.level"] = sp if powered else 0.0
            out[f"a{a}.lamp_power_on"] = powered and sp > 0
            out[f"a{a}.lamp_fail"] = False
            out[f"a{a}.ballast_fail"] = False
        return out

    def on_write(self, plant: Plant, key: str, value: Any) -> None:
        if key == "broadcast.level":
            for a in self.setpoints:
                self.setpoints[a] = float(value)
        else:
            m = self._KEY.fullmatch(key)
            if m is None or m.group(2) != "setpoint":
                return
            self.setpoints[int(m.group(1))] = float(value)
        if self.circuit is not None and self.setpoints:
            plant.set_dim(self.circuit, sum(self.setpoints.values()) / len(self.setpoints))
