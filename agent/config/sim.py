"""The [sim] section: the simulated cabinet of development, demos and rigs (its speed,
seed and start time, lighting circuits, plant contacts, and a script of control
commands: faults, vanishing buses, input changes, GPS modes), parsed into a Sim.
References are checked against the configured devices and buses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from agent.config.model import Sim, SimCircuit, SimWeather
from agent.config.schema import NAME_RE, F, Section, key_name, or_default

FAULT_KINDS = ("silent", "garbage", "crc", "wrong_unit", "short", "slow", "exception")
PLANT_INPUTS = ("door_open", "flood", "mains_ok", "ups_replace_battery", "fan_on", "heater_on", "fan_failed")
GPS_MODES = ("normal", "no_fix", "bad_checksum", "garbage", "silent")

SCRIPT_CMDS = {  # control command -> required keys (besides at_s and cmd)
    "fault": ("device", "kind"),
    "clear": ("device",),
    "vanish": ("bus",),
    "restore": ("bus",),
    "refuse": ("bus",),
    "set": ("input", "value"),
    "gps": ("mode",),
    "circuit": ("circuit",),
    "pole": ("pole",),
}
SCRIPT_OPTIONAL = {
    "fault": ("delay_ms", "exception_code", "every"),
    "refuse": ("on",),
    "circuit": ("failed", "stuck", "cut"),
    "pole": ("lamp", "driver_fault", "cut_after", "tilt", "door", "lux"),
}
SCRIPT_FIELDS = {  # every key a step may have: its type and range (what the simulator's command takes)
    "at_s": F("number", min=0, help="simulated seconds after the simulator starts"),
    "cmd": F("str", choices=tuple(SCRIPT_CMDS)),
    "device": F("str", help="a device name"),
    "kind": F("str", choices=FAULT_KINDS),
    "delay_ms": F("number", min=0, max=600_000),
    "exception_code": F("int", min=1, max=255),
    "every": F("int", min=1, max=1_000_000, help="every n-th request"),
    "bus": F("str", help="a bus name"),
    "on": F("bool"),
    "input": F("str", choices=PLANT_INPUTS),
    "value": F("bool"),
    "mode": F("str", choices=GPS_MODES),
    "circuit": F("str", help="a [[sim.circuits]] name"),
    "failed": F("number", min=0, max=1, help="share of the circuit's lamps that fail"),
    "stuck": F(
        "str", choices=("closed", "open", "none"), help="a welded (closed) or jammed (open) contactor; none: repaired"
    ),
    "cut": F("bool", help="the circuit's cable cut (no current, supply present); false: mended"),
    "pole": F("str", help="a pole_node device of a [[sim.circuits]] poles list"),
    "lamp": F("str", choices=("ok", "failed"), help="the pole's lamp"),
    "driver_fault": F("bool", help="the pole's driver draws current but gives little light"),
    "cut_after": F("bool", help="the cable cut right after this pole; false: mended"),
    "tilt": F("number", min=0, max=90, help="the pole's tilt from vertical (°)"),
    "door": F("bool", help="the pole-base door open"),
    "lux": F("number", min=0, max=200_000, help="the pole's own lux (lx)"),
}
WEATHER_CURVES = {"temperature": (-50.0, 70.0, "°C"), "humidity": (0.0, 100.0, "%RH"), "cloud": (0.0, 1.0, "cover")}


def _parse_weather(s: Section) -> SimWeather | None:
    """[sim.weather]: each of temperature, humidity, cloud a list of [seconds after the start, value]
    in increasing time (cloud also one number)."""
    raw = s.get("weather", F("table", default=None))
    if raw is None:
        return None
    curves: dict[str, tuple[tuple[float, float], ...]] = {}
    for key, v in raw.items():
        where = f"weather.{key_name(key)}"
        if key not in WEATHER_CURVES:
            s.error(where, v, ", ".join(WEATHER_CURVES), "unknown key")
            continue
        lo, hi, unit = WEATHER_CURVES[key]
        allowed = f"[[seconds after the start, value {lo:g}..{hi:g} {unit}], ...] in increasing time"
        if key == "cloud" and _number(v):
            v = [[0, v]]
        if not isinstance(v, list) or not v or not all(isinstance(p, list) and len(p) == 2 for p in v):
            s.error(where, v, allowed, "expected a list of [seconds, value] pairs")
            continue
        bad = next(
            (
                i
                for i, (t, x) in enumerate(v)
                if not (_number(t) and _number(x) and t >= 0 and lo <= x <= hi) or (i and t <= v[i - 1][0])
            ),
            None,
        )
        if bad is not None:
            s.error(f"{where}[{bad}]", v[bad], allowed, "out of range or not after the previous point")
            continue
        curves[key] = tuple((float(t), float(x)) for t, x in v)
    return SimWeather(**curves)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_script(
    s: Section, devices: frozenset[str] | None, buses: Mapping[str, str] | None, circuits: frozenset[str]
) -> tuple[tuple[float, dict[str, Any]], ...]:
    steps = []
    for i, step in enumerate(s.get("script", F("list", default=[])) or []):
        where = f"script[{i}]"
        if not isinstance(step, Mapping):
            s.error(where, step, "a table {at_s = ..., cmd = ...}", "must be a table")
            continue
        # each value checked by its field, reported as [sim] script[i].key
        ss = Section(s.issues, s.name, {f"{where}.{k}": v for k, v in step.items()})
        at = ss.get(f"{where}.at_s", SCRIPT_FIELDS["at_s"])
        cmd = ss.get(f"{where}.cmd", SCRIPT_FIELDS["cmd"])
        if at is None or cmd is None:
            continue
        allowed = {"at_s", "cmd", *SCRIPT_CMDS[cmd], *SCRIPT_OPTIONAL.get(cmd, ())}
        missing = [k for k in SCRIPT_CMDS[cmd] if k not in step]
        extra = [k for k in step if k not in allowed]
        if missing or extra:
            s.error(
                where,
                dict(step),
                f"keys for {cmd}: {', '.join(sorted(allowed))}",
                f"missing {missing}" if missing else f"unknown keys {extra}",
            )
            continue
        values = {k: ss.get(f"{where}.{k}", SCRIPT_FIELDS[k]) for k in step if k != "at_s"}
        if any(v is None for v in values.values()):
            continue
        bad = _script_ref(values, devices, buses, circuits)
        if bad:
            key, what, message = bad
            s.error(f"{where}.{key}", values[key], what, message)
            continue
        steps.append((float(at), values))
    return tuple(sorted(steps, key=lambda x: x[0]))


def _script_ref(
    step: Mapping[str, Any], devices: frozenset[str] | None, buses: Mapping[str, str] | None, circuits: frozenset[str]
) -> tuple[str, str, str] | None:
    """(key, allowed, message) of the first reference in a script step to nothing configured, else None."""
    cmd = step["cmd"]
    if devices is not None and cmd == "pole" and step["pole"] not in devices:
        return "pole", ", ".join(sorted(devices)) or "no devices", "no such device"
    if devices is not None and "device" in step and step["device"] not in devices:
        return "device", ", ".join(sorted(devices)) or "no devices", "no such device"
    if cmd in ("vanish", "restore", "refuse") and buses is not None:
        want = "tcp" if cmd == "refuse" else "rtu"
        names = sorted(n for n, k in buses.items() if k == want)
        if step["bus"] not in names:
            return "bus", f"a {want} bus: {', '.join(names) or 'none'}", "not allowed here"
    if cmd == "circuit" and step["circuit"] not in circuits:
        return "circuit", ", ".join(sorted(circuits)) or "no [[sim.circuits]]", "no such circuit"
    return None


def parse_sim(s: Section, devices: frozenset[str] | None = None, buses: Mapping[str, str] | None = None) -> Sim:
    def start_check(v: str) -> str | None:
        if v == "now":
            return None
        try:
            t = dt.datetime.fromisoformat(v)
        except ValueError:
            return "not an ISO 8601 date-time"
        return None if t.tzinfo is not None else "needs a UTC offset, e.g. 2026-06-21T12:00:00+02:00"

    sim = Sim(
        speed=s.get("speed", F("float", default=1.0, min=0.01, max=10000)) or 1.0,
        seed=s.get("seed", F("int", default=0)) or 0,
        start=s.get("start", F("str", default="now", check=start_check)) or "now",
        fan=s.get("fan", F("str", default=None)),
        heater=s.get("heater", F("str", default=None)),
        electronics_w=or_default(s.get("electronics_w", F("float", default=20.0, min=0, max=2000)), 20.0),
    )
    contacts = s.get("contacts", F("table", default={})) or {}
    known_contacts = ("door", "flood", "ups_on_battery", "ups_battery_low", "ups_replace_battery")
    for k, v in contacts.items():
        if k not in known_contacts:
            s.error(f"contacts.{key_name(k)}", v, ", ".join(known_contacts), "unknown plant contact")
        elif not isinstance(v, str):
            s.error(f"contacts.{k}", v, '"pin:<name>" or "<device>.<point>"', "must be a string")
    circuits = []
    raw = s.get("circuits", F("list", default=[])) or []
    names: set[str] = set()
    for i, c in enumerate(raw):
        cs = Section(s.issues, f"{s.name}.circuits[{i}]", c if isinstance(c, Mapping) else {})
        if not isinstance(c, Mapping):
            s.error(f"circuits[{i}]", c, "a table", "must be a table")
            continue
        name = cs.get("name", F("str", pattern=NAME_RE))
        if name in names:
            cs.error("name", name, "a unique name", "duplicate circuit")
        names.add(name)
        circuits.append(
            SimCircuit(
                name=name or f"circuit{i}",
                load_w=cs.get("load_w", F("float", min=0, max=100000)) or 0.0,
                relay=cs.get("relay", F("str", default=None)),
                meter=cs.get("meter", F("str", default=None)),
                dali=cs.get("dali", F("str", default=None)),
                phases=cs.get("phases", F("int", default=1, choices=(1, 3))) or 1,
                poles=tuple(cs.get("poles", F("list", default=[], help="pole_node devices in cable order")) or ()),
            )
        )
        cs.finish()
    script = _parse_script(s, devices, buses, frozenset(n for n in names if n))
    weather = _parse_weather(s)
    s.finish()
    return dataclasses.replace(sim, circuits=tuple(circuits), contacts=dict(contacts), script=script, weather=weather)
