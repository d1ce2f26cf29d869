"""The [sim] section: the simulated cabinet of development, demos and rigs (its speed,
seed and start time, lighting circuits, plant contacts, and a script of control
commands: faults, vanishing buses, input changes, GPS modes), parsed into a Sim.
References are checked against the configured devices and buses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from agent.config.model import Sim, SimCircuit
from agent.config.schema import NAME_RE, F, Section, or_default

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
}
SCRIPT_OPTIONAL = {"fault": ("delay_ms", "exception_code", "every"), "refuse": ("on",), "circuit": ("failed", "stuck")}


def _parse_script(
    s: Section, devices: frozenset[str] | None, buses: Mapping[str, str] | None
) -> tuple[tuple[float, dict[str, Any]], ...]:
    steps = []
    for i, step in enumerate(s.get("script", F("list", default=[])) or []):
        where = f"script[{i}]"
        if not isinstance(step, Mapping):
            s.error(where, step, "a table {at_s = ..., cmd = ...}", "must be a table")
            continue
        at = step.get("at_s")
        cmd = step.get("cmd")
        if not isinstance(at, (int, float)) or isinstance(at, bool) or at < 0:
            s.error(f"{where}.at_s", at, "seconds >= 0 after the simulator starts", "bad or missing time")
            continue
        if cmd not in SCRIPT_CMDS:
            s.error(f"{where}.cmd", cmd, ", ".join(SCRIPT_CMDS), "unknown command")
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
        if devices is not None and "device" in step and step["device"] not in devices:
            s.error(f"{where}.device", step["device"], ", ".join(sorted(devices)) or "no devices", "no such device")
            continue
        bad = _script_value(step, buses)
        if bad:
            key, what = bad
            s.error(f"{where}.{key}", step[key], what, "not allowed here")
            continue
        steps.append((float(at), {k: v for k, v in step.items() if k != "at_s"}))
    return tuple(sorted(steps, key=lambda x: x[0]))


def _script_value(step: Mapping[str, Any], buses: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(key, allowed) of the first value a script step cannot use, else None."""
    cmd = step["cmd"]
    if cmd == "fault" and step["kind"] not in FAULT_KINDS:
        return "kind", ", ".join(FAULT_KINDS)
    if cmd == "set" and step["input"] not in PLANT_INPUTS:
        return "input", ", ".join(PLANT_INPUTS)
    if cmd == "gps" and step["mode"] not in GPS_MODES:
        return "mode", ", ".join(GPS_MODES)
    if cmd in ("vanish", "restore", "refuse") and buses is not None:
        want = "tcp" if cmd == "refuse" else "rtu"
        names = sorted(n for n, k in buses.items() if k == want)
        if step["bus"] not in names:
            return "bus", f"a {want} bus: {', '.join(names) or 'none'}"
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
            s.error(f"contacts.{k}", v, ", ".join(known_contacts), "unknown plant contact")
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
            )
        )
        cs.finish()
    script = _parse_script(s, devices, buses)
    s.finish()
    return dataclasses.replace(sim, circuits=tuple(circuits), contacts=dict(contacts), script=script)
