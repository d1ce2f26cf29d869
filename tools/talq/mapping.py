"""A cabinet's catalogue as a TALQ device (docs/talq.md §2). Pure: no I/O, no clock.

One device per cabinet, with a BasicFunction, a TimeFunction, a CabinetMonitorFunction
(door, flood as leakage), an ElectricalMeterFunction per meter device, and per lighting
segment a LampActuatorFunction, a LampMonitorFunction and a SegmentMonitorFunction.
Each attribute names the point it is read from (by point name or by the point's role) and
the conversion from the catalogue's unit to the unit the TALQ data model gives it
(`x-talq-unit`, e.g. W -> KiloWatt for an ElectricalMeter's power); an attribute whose
point has a unit we cannot convert is left out, never reported in the wrong unit.
tests/test_talq_mapping.py checks every name, type and unit here against the data model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.wire.catalogue import Catalogue, PointInfo

NAMESPACE = uuid.UUID("5b0f6a8e-3c1d-5e59-9a3e-7a1c2d4b6f00")  # device and gateway addresses: uuid5 in this space
BOOLEAN, FLOAT, INTEGER, STRING, BINARY, LEVEL = (
    "AttributeBoolean",
    "AttributeFloat",
    "AttributeInteger",
    "AttributeString",
    "AttributeBinary",
    "AttributeLevelState",
)

# (catalogue unit, TALQ unit) -> factor
FACTORS: dict[tuple[str, str], float] = {
    ("W", "KiloWatt"): 0.001,
    ("kW", "KiloWatt"): 1.0,
    ("W", "Watts"): 1.0,
    ("kW", "Watts"): 1000.0,
    ("VA", "KiloVoltAmpere"): 0.001,
    ("kVA", "KiloVoltAmpere"): 1.0,
    ("var", "KiloVoltAmpereReactive"): 0.001,
    ("kvar", "KiloVoltAmpereReactive"): 1.0,
    ("kWh", "KiloWattHours"): 1.0,
    ("Wh", "KiloWattHours"): 0.001,
    ("kvarh", "KiloVoltAmpereReactiveHours"): 1.0,
    ("varh", "KiloVoltAmpereReactiveHours"): 0.001,
    ("V", "Volts"): 1.0,
    ("A", "Amperes"): 1.0,
    ("mA", "Amperes"): 0.001,
    ("Hz", "Hertz"): 1.0,
    ("h", "Hours"): 1.0,
    ("s", "Hours"): 1 / 3600,
    ("%", "Percent"): 1.0,
    ("", ""): 1.0,  # dimensionless (power factor, counters, states)
}

# the meter's point suffix -> (TALQ attribute, TALQ unit); three-phase and single-phase meters
METER: dict[str, tuple[str, str]] = {
    "power_total": ("totalPower", "KiloWatt"),
    "active_power": ("totalPower", "KiloWatt"),
    "apparent_power": ("totalVA", "KiloVoltAmpere"),
    "reactive_power": ("totalVAR", "KiloVoltAmpereReactive"),
    "import_energy": ("totalActiveEnergy", "KiloWattHours"),
    "total_reactive_energy": ("totalReactiveEnergy", "KiloVoltAmpereReactiveHours"),
    "frequency": ("frequency", "Hertz"),
    "power_factor_total": ("totalPowerFactor", ""),
    "power_factor": ("totalPowerFactor", ""),
    "voltage": ("supplyVoltage", "Volts"),
    "voltage_avg": ("supplyVoltage", "Volts"),
    "current": ("totalCurrent", "Amperes"),
    "current_sum": ("totalCurrent", "Amperes"),
    "current_avg": ("averageCurrent", "Amperes"),
    "current_neutral": ("neutralCurrent", "Amperes"),
    "voltage_l1_l2": ("voltagePhase1Phase2", "Volts"),
    "voltage_l2_l3": ("voltagePhase2Phase3", "Volts"),
    "voltage_l3_l1": ("voltagePhase3Phase1", "Volts"),
    **{f"voltage_l{n}": (f"phase{n}Voltage", "Volts") for n in (1, 2, 3)},
    **{f"current_l{n}": (f"phase{n}Current", "Amperes") for n in (1, 2, 3)},
    **{f"power_l{n}": (f"phase{n}ActivePower", "KiloWatt") for n in (1, 2, 3)},
    **{f"apparent_power_l{n}": (f"phase{n}ApparentPower", "KiloVoltAmpere") for n in (1, 2, 3)},
    **{f"reactive_power_l{n}": (f"phase{n}ReactivePower", "KiloVoltAmpereReactive") for n in (1, 2, 3)},
    **{f"power_factor_l{n}": (f"phase{n}PowerFactor", "") for n in (1, 2, 3)},
}
METER_UNITS = {"V", "A", "W", "kW", "kWh", "Wh"}


@dataclass(frozen=True)
class Attr:
    """One TALQ attribute: read from `point` (converted by `factor`), or a fixed `value`."""

    name: str
    type: str  # AttributeFloat, AttributeBoolean, ...
    unit: str = ""  # the TALQ unit ("" none)
    point: str = ""
    factor: float = 1.0
    value: Any = None  # a fixed value from the catalogue (configuration scope)


@dataclass(frozen=True)
class Func:
    id: str
    type: str
    attrs: tuple[Attr, ...]


@dataclass(frozen=True)
class DeviceMap:
    cabinet: str
    address: str
    class_name: str
    functions: tuple[Func, ...]
    skipped: tuple[str, ...] = field(default=())  # points left out: a unit we cannot convert

    def function(self, fid: str) -> Func | None:
        return next((f for f in self.functions if f.id == fid), None)


def device_address(cabinet: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"cabinet:{cabinet}"))


def _by_role(points: tuple[PointInfo, ...]) -> dict[str, PointInfo]:
    roles: dict[str, PointInfo] = {}
    for p in points:
        if p.role:
            roles.setdefault(p.role, p)
    return roles


def _measured(name: str, typ: str, unit: str, p: PointInfo | None, skipped: list[str]) -> Attr | None:
    if p is None:
        return None
    factor = FACTORS.get((p.unit, unit))
    if factor is None:
        skipped.append(f"{p.name} ({p.unit!r} is not convertible to {unit or 'a plain number'})")
        return None
    return Attr(name, typ, unit, p.name, factor)


def _segments(cat: Catalogue) -> list[str]:
    segs = {p.role.split(".")[1] for p in cat.points if re.fullmatch(r"lighting\.[^.]+(\..+)?", p.role)}
    return sorted(segs)


def _meters(cat: Catalogue) -> dict[str, list[PointInfo]]:
    meters: dict[str, list[PointInfo]] = {}
    for p in cat.points:
        if p.device and p.device not in ("lighting", "agent") and p.name.startswith(p.device + "."):
            meters.setdefault(p.device, []).append(p)
    return {d: ps for d, ps in meters.items() if {p.unit for p in ps} >= {"V", "A"}}


def map_cabinet(cat: Catalogue) -> DeviceMap:
    """The TALQ device of a cabinet, from its newest catalogue."""
    skipped: list[str] = []
    names = {p.name: p for p in cat.points}
    roles = _by_role(cat.points)
    funcs = [
        Func(
            "basic",
            "BasicFunction",
            (
                Attr("displayName", STRING, value=cat.cabinet),
                Attr("hwType", STRING, value=cat.board),
                Attr("timeZone", STRING, value=cat.site.timezone),
                *(
                    a
                    for a in [_measured("cabinetDoorOpen", BOOLEAN, "", roles.get("climate.door.input"), skipped)]
                    if a
                ),
            ),
        ),
        Func("time", "TimeFunction", (Attr("timeZone", STRING, value=cat.site.timezone),)),
    ]
    cab = [
        _measured("cabinetDoorOpen", BOOLEAN, "", roles.get("climate.door.input"), skipped),
        _measured("leakageDetected", BOOLEAN, "", roles.get("climate.flood.input"), skipped),
    ]
    funcs.append(Func("cabinetMonitor", "CabinetMonitorFunction", tuple(a for a in cab if a)))
    for dev, pts in sorted(_meters(cat).items()):
        attrs: dict[str, Attr] = {}
        for p in pts:
            talq = METER.get(p.name[len(dev) + 1 :])
            if talq and talq[0] not in attrs:
                a = _measured(talq[0], FLOAT, talq[1], p, skipped)
                if a:
                    attrs[a.name] = a
        funcs.append(Func(f"meter-{dev}", "ElectricalMeterFunction", tuple(attrs.values())))
    for seg in _segments(cat):
        own = f"lighting.{seg}."
        level, on = names.get(own + "level"), names.get(own + "on")
        state = Attr("actualLightState", LEVEL, "Percent", level.name) if level else None
        if state is None and on is not None:
            state = Attr("actualLightState", LEVEL, "Percent", on.name)
        funcs.append(Func(f"lampActuator-{seg}", "LampActuatorFunction", (state,) if state else ()))
        monitor = [
            _measured("switchOnCounter", INTEGER, "", names.get(own + "switches"), skipped),
            _measured("operatingHours", FLOAT, "Hours", names.get(own + "burning_h"), skipped),
            _measured("activeEnergy", FLOAT, "KiloWattHours", names.get(own + "energy_kwh"), skipped),
            _measured("supplyVoltage", FLOAT, "Volts", roles.get(own + "voltage"), skipped),
            _measured("activePower", FLOAT, "Watts", roles.get(own + "power"), skipped),
        ]
        funcs.append(Func(f"lampMonitor-{seg}", "LampMonitorFunction", tuple(a for a in monitor if a)))
        switch = roles.get(own + "contactor") or on
        segment = [
            Attr("segmentReference", STRING, value=seg),
            Attr("actuatorReference", STRING, value=f"lampActuator-{seg}"),
            *([Attr("actualState", BINARY, "", switch.name)] if switch else []),
        ]
        funcs.append(Func(f"segmentMonitor-{seg}", "SegmentMonitorFunction", tuple(segment)))
    desc = json.dumps(device_class_functions(funcs), sort_keys=True).encode()
    cls = "cabinet-" + hashlib.sha256(desc).hexdigest()[:12]
    return DeviceMap(cat.cabinet, device_address(cat.cabinet), cls, tuple(funcs), tuple(skipped))


def device_class_functions(funcs: list[Func] | tuple[Func, ...]) -> list[dict[str, Any]]:
    """The FunctionDesc list of a device class: each function's attributes, read-only, with units."""
    out = []
    for f in funcs:
        attrs = []
        for a in f.attrs:
            d: dict[str, Any] = {"name": a.name, "readOnly": True}
            if a.unit:
                d["unit"] = a.unit
            attrs.append(d)
        out.append({"functionId": f.id, "type": f.type, "attributes": attrs})
    return out


def device_class(dm: DeviceMap) -> dict[str, Any]:
    return {"name": dm.class_name, "functions": device_class_functions(dm.functions)}


# ------------------------------------------------------------------------------------- values

Latest = Mapping[str, tuple[float, Any, str]]  # point -> (unix time, value, quality)


def iso(t: float) -> str:
    """RFC 3339 UTC of unix seconds (pure arithmetic, no clock)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def attribute(a: Attr, latest: Latest) -> dict[str, Any]:
    """The TALQ Attribute object of `a`: its value converted, `timestamp` the time it was measured
    (how stale it is); a point with no good value gives the attribute with no `value`."""
    out: dict[str, Any] = {"type": a.type}
    if not a.point:
        if a.value is not None:
            out["value"] = a.value
        return out
    got = latest.get(a.point)
    if got is None:
        return out
    t, v, quality = got
    out["timestamp"] = iso(t)
    if quality != "good" or v is None:
        return out
    value = _convert(a, v)
    if value is not None:
        out["value"] = value
    return out


def _convert(a: Attr, v: Any) -> Any:
    if a.type == BOOLEAN:
        return bool(v) if isinstance(v, bool | int | float) else None
    if a.type == BINARY:
        return ("ON" if v else "OFF") if isinstance(v, bool | int | float) else None
    if not isinstance(v, bool | int | float):
        return None
    if a.type == LEVEL:
        level = 100.0 if v is True else 0.0 if v is False else float(v)
        return {"name": "LevelState", "value": max(0, min(100, round(level)))}
    if a.type == INTEGER:
        return round(float(v))
    return round(float(v) * a.factor, 9)  # W -> kW without 0.9500000000000001


def function(f: Func, latest: Latest) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f.id, "type": f.type}
    for a in f.attrs:
        out[a.name] = attribute(a, latest)
    return out


def device(dm: DeviceMap, latest: Latest) -> dict[str, Any]:
    return {
        "address": dm.address,
        "name": dm.cabinet,
        "class": dm.class_name,
        "functions": [function(f, latest) for f in dm.functions],
    }
