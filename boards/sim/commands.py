"""The simulated cabinet's control vocabulary: one request (a JSON object) -> what it did.

Shared by the control socket (`boards.sim.control`, `cabinet sim-control`) and the
config's `[[sim.script]]`. Every message is checked before anything changes; a bad one
raises `CommandError` naming the key, the value and what is allowed (the socket answers
`{"ok": false, "error": ...}`). Messages and their keys (docs/simulator.md has the
reference with units and effects):

    fault    device, kind [, delay_ms, exception_code, every]   a device misbehaves
    clear    device                                             the device is healthy again
    vanish   bus (RTU)          restore  bus (RTU)              the serial port disappears / returns
    refuse   bus (TCP) [, on]                                   the endpoint refuses connections
    set      input, value (bool)                                 a plant input (door, flood, mains ...)
    gps      mode                                               the GPS receiver's behaviour
    circuit  circuit [, failed, stuck, cut]                     dead lamps, a stuck contactor, a cut cable
    pole     pole [, lamp, driver_fault, cut_after, tilt, door, lux]  a pole node's plant (boards/sim/poles.py)
    state    -                                                  nothing; the reply has the plant state
    read     device                                             nothing; the reply has its registers' values
    endpoints -                                                 nothing; the reply has where every bus is

`run(cabinet, request)` returns what the reply adds to `{"ok": true, "state": ...}`:
`done` (one sentence saying what happened) and, for `read` and `endpoints`, the data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from boards.sim.faults import FaultKind
from boards.sim.line import RtuLine
from boards.sim.plant import Plant
from boards.sim.poles import LAMPS, POLE_KEYS, PoleSegment, apply, find, values
from boards.sim.store import RegisterStore
from boards.sim.tcp import TcpEndpoint


class GpsSettings(Protocol):
    mode: str


class SimCabinet(Protocol):
    """What the control messages act on: the simulated cabinet (boards/sim/cabinet.py),
    named here as a protocol so that this module does not import the cabinet it serves."""

    @property
    def config(self) -> Any: ...
    @property
    def plant(self) -> Plant: ...
    @property
    def stores(self) -> dict[str, RegisterStore]: ...
    @property
    def gps_faults(self) -> GpsSettings: ...
    @property
    def lines(self) -> dict[str, RtuLine]: ...
    @property
    def endpoints(self) -> dict[str, TcpEndpoint]: ...
    @property
    def poles(self) -> dict[str, PoleSegment]: ...
    def refresh(self) -> None: ...
    def device_fault(self, device: str, kind: str | FaultKind | None, **kw: Any) -> None: ...
    def vanish(self, bus: str) -> None: ...
    async def restore(self, bus: str) -> None: ...
    def refuse(self, bus: str, on: bool) -> None: ...
    def set_input(self, name: str, value: Any) -> None: ...
    def endpoints_info(self) -> dict[str, Any]: ...


PLANT_INPUTS = {
    "door_open": "the cabinet door is open (door contact)",
    "flood": "water on the cabinet floor (flood sensor)",
    "mains_ok": "mains present; false: the UPS runs on battery, battery-low after a while",
    "ups_replace_battery": "the UPS asks for a new battery",
    "fan_on": "the cabinet fan runs (normally the agent's output drives it)",
    "heater_on": "the heater heats (normally the agent's output drives it)",
    "fan_failed": "the fan is switched but moves no air",
}
GPS_MODES = {
    "normal": "valid RMC/GGA sentences once a second",
    "no_fix": "sentences without a fix (status V, quality 0)",
    "bad_checksum": "sentences with a wrong checksum",
    "garbage": "random bytes",
    "silent": "nothing at all",
}
FAULT_KINDS = tuple(k.value for k in FaultKind)
STUCK = ("closed", "open", "none", None)  # "none" or null: repaired (TOML has no null: [[sim.script]])
KEYS = {  # message -> (required keys, optional keys)
    "fault": (("device", "kind"), ("delay_ms", "exception_code", "every")),
    "clear": (("device",), ()),
    "vanish": (("bus",), ()),
    "restore": (("bus",), ()),
    "refuse": (("bus",), ("on",)),
    "set": (("input", "value"), ()),
    "gps": (("mode",), ()),
    "circuit": (("circuit",), ("failed", "stuck", "cut")),
    "pole": (("pole",), POLE_KEYS),
    "state": ((), ()),
    "read": (("device",), ()),
    "endpoints": ((), ()),
}


class CommandError(ValueError):
    """A control message the simulator refuses (unknown message, key or name; bad value)."""


def _names(known: Any) -> str:
    return ", ".join(sorted(known)) or "none"


def _str(req: Mapping[str, Any], key: str, known: Any = None, what: str = "") -> str:
    v = req.get(key)
    if not isinstance(v, str):
        raise CommandError(f"{key!r} must be a string, got {v!r}")
    if known is not None and v not in known:
        raise CommandError(f"{key!r}: no {what or key} {v!r}; known: {_names(known)}")
    return v


def _number(req: Mapping[str, Any], key: str, lo: float, hi: float, integer: bool = False) -> float:
    v = req[key]
    ok = isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v)
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise CommandError(f"{key!r} must be {kind} {lo:g}..{hi:g}, got {v!r}")
    return v


def _bool(req: Mapping[str, Any], key: str) -> bool:
    v = req[key]
    if not isinstance(v, bool):
        raise CommandError(f"{key!r} must be true or false, got {v!r}")
    return v


def check(req: Any) -> str:
    """The message name of a well-formed request (known message, its keys only)."""
    if not isinstance(req, Mapping):
        raise CommandError('a request is a JSON object such as {"cmd": "state"}')
    cmd = req.get("cmd")
    if cmd not in KEYS:
        raise CommandError(f"unknown cmd {cmd!r}; known: {', '.join(KEYS)}")
    required, optional = KEYS[cmd]
    missing = [k for k in required if k not in req]
    extra = [k for k in req if k != "cmd" and k not in required and k not in optional]
    if missing:
        raise CommandError(f"{cmd}: missing {', '.join(map(repr, missing))}")
    if extra:
        allowed = ", ".join(map(repr, required + optional)) or "no other keys"
        raise CommandError(f"{cmd}: unknown key {', '.join(map(repr, extra))}; allowed: {allowed}")
    return str(cmd)


def _device(cab: SimCabinet, req: Mapping[str, Any]) -> tuple[str, str]:
    name = _str(req, "device", cab.config.devices, "device")
    dev = cab.config.devices[name]
    return name, f"{name} ({dev.bus} unit {dev.unit})"


def _bus(cab: SimCabinet, req: Mapping[str, Any], kind: str) -> str:
    names = cab.lines if kind == "rtu" else cab.endpoints
    bus = _str(req, "bus")
    if bus not in names:
        raise CommandError(f"'bus': no {kind.upper()} bus {bus!r}; {kind.upper()} buses: {_names(names)}")
    return bus


async def run(cab: SimCabinet, req: Any) -> dict[str, Any]:
    """Carry out one control message on `cab`; what the reply adds (see the module doc)."""
    cmd = check(req)
    if cmd == "fault":
        name, where = _device(cab, req)
        kind = _str(req, "kind", FAULT_KINDS, "fault kind")
        kw: dict[str, Any] = {}
        if "delay_ms" in req:
            kw["delay_ms"] = _number(req, "delay_ms", 0, 600_000)
        if "exception_code" in req:
            kw["exception_code"] = int(_number(req, "exception_code", 1, 255, integer=True))
        if "every" in req:
            kw["every"] = int(_number(req, "every", 1, 1_000_000, integer=True))
        cab.device_fault(name, kind, **kw)
        extra = "".join(f", {k} {v}" for k, v in kw.items())
        return {"done": f"{where}: fault {kind}{extra}"}
    if cmd == "clear":
        name, where = _device(cab, req)
        cab.device_fault(name, None)
        return {"done": f"{where}: healthy again"}
    if cmd == "vanish":
        bus = _bus(cab, req, "rtu")
        cab.vanish(bus)
        return {"done": f"bus {bus}: serial port gone"}
    if cmd == "restore":
        bus = _bus(cab, req, "rtu")
        await cab.restore(bus)
        return {"done": f"bus {bus}: serial port back"}
    if cmd == "refuse":
        bus = _bus(cab, req, "tcp")
        on = _bool(req, "on") if "on" in req else True
        cab.refuse(bus, on)
        return {"done": f"bus {bus}: {'refusing' if on else 'accepting'} connections"}
    if cmd == "set":
        name = _str(req, "input", PLANT_INPUTS, "plant input")
        value = _bool(req, "value")
        cab.set_input(name, value)
        return {"done": f"{name} = {str(value).lower()}"}
    if cmd == "gps":
        mode = _str(req, "mode", GPS_MODES, "GPS mode")
        cab.gps_faults.mode = mode
        return {"done": f"GPS: {mode}"}
    if cmd == "circuit":
        return {"done": _circuit(cab, req)}
    if cmd == "pole":
        return {"done": _pole(cab, req)}
    if cmd == "read":
        name, where = _device(cab, req)
        dev = cab.config.devices[name]
        return {
            "done": f"{where}: {dev.profile_name}",
            "device": {"name": name, "bus": dev.bus, "unit": dev.unit, "profile": dev.profile_name},
            "values": cab.stores[name].values() if name in cab.stores else values(cab.poles, name),
        }
    if cmd == "endpoints":
        return {"done": "endpoints", "endpoints": cab.endpoints_info()}
    return {"done": "state"}


def _circuit(cab: SimCabinet, req: Mapping[str, Any]) -> str:
    name = _str(req, "circuit", cab.plant.circuits, "circuit")
    failed = _number(req, "failed", 0.0, 1.0) if "failed" in req else None
    stuck = req.get("stuck", "unchanged")
    if "stuck" in req and stuck not in STUCK:
        raise CommandError(f'\'stuck\' must be "closed", "open", "none" or null, got {stuck!r}')
    cut = _bool(req, "cut") if "cut" in req else None
    done = []
    if failed is not None:
        cab.plant.fail_lamps(name, float(failed))
        done.append(f"{failed:.0%} of the lamps failed")
    if "stuck" in req:
        repaired = stuck in (None, "none")
        cab.plant.stick_contactor(name, None if repaired else stuck == "closed")
        done.append("contactor repaired" if repaired else f"contactor stuck {stuck}")
    if cut is not None:
        cab.plant.cut_cable(name, cut)
        done.append("cable cut (supply present, no current)" if cut else "cable mended")
    cab.refresh()
    return f"circuit {name}: " + (", ".join(done) or "unchanged")


def _pole(cab: SimCabinet, req: Mapping[str, Any]) -> str:
    try:
        seg, index = find(cab.poles, req["pole"])
    except KeyError as e:
        raise CommandError(str(e.args[0])) from None
    values: dict[str, object] = {}
    if "lamp" in req:
        values["lamp"] = _str(req, "lamp", LAMPS, "lamp state")
    for key in ("driver_fault", "cut_after", "door"):
        if key in req:
            values[key] = _bool(req, key)
    if "tilt" in req:
        values["tilt"] = _number(req, "tilt", 0.0, 90.0)
    if "lux" in req:
        values["lux"] = "site" if req["lux"] == "site" else _number(req, "lux", 0.0, 200_000.0)
    done = apply(seg, index, values)
    cab.refresh()
    return done
