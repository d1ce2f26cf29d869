"""The timeline of a scenario: `[[action]]` kinds, their arguments, and how each is carried out.

Plant actions become one message of the simulator's control vocabulary
(boards/sim/commands.py, docs/simulator.md): `Action.message()`. The others the rig
carries out itself (`message()` is None): the agent's clock, the broker and the
ingest, local overrides and acknowledgements on the agent's socket, signed commands.
Every argument is checked against the cabinet config (devices, buses, circuits,
segments, alarm ids) with errors naming the file, `[action[i]]` and the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config import Config
from agent.config.schema import MISSING, F, Section
from agent.remote.builtins import LIGHT_OVERRIDE_ARGS
from agent.remote.ota_service import SCHEMA as OTA_OFFER_ARGS
from agent.wire.commands import Arg, CommandError, check_args
from boards.sim.commands import FAULT_KINDS, GPS_MODES
from ota.status import DEPLOYMENT_RE, DEPLOYMENT_RULE
from tools.rig.timespec import TIME_HELP, TimeContext, TimeError, parse_duration

NAME_RE = r"[a-z][a-z0-9_-]{0,39}"
COMMAND_ARGS: dict[str, Mapping[str, Arg]] = {  # signed command kinds a scenario may send (docs/commands.md)
    "ping": {},
    "status": {},
    "light.override": LIGHT_OVERRIDE_ARGS,
    "light.cancel": {"segments": Arg("list[str]", max_len=64)},
    "alarm.ack": {"id": Arg("str", required=True, max_len=128)},
    "log.level": {"level": Arg("str", required=True, choices=("debug", "info", "warning", "error"))},
    "reboot": {"delay_s": Arg("number", min=0, max=60)},
    "ota.offer": OTA_OFFER_ARGS,
}


@dataclass(frozen=True)
class Action:
    index: int
    t: float
    at: str  # as written in the file
    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def message(self) -> dict[str, Any] | None:
        """The simulator control message that carries this action out; None: the rig does it itself."""
        build = _MESSAGES.get(self.kind)
        return build(self.args) if build else None

    @property
    def label(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name or self.kind}: {self.kind}({inner})"


@dataclass(frozen=True)
class Kind:
    help: str
    uplink: bool = False  # needs the scenario's broker and ingest
    plant: bool = True  # a simulator message (False: the rig carries it out)


KINDS: dict[str, Kind] = {
    "device_fault": Kind("a device misbehaves: device, fault (silent, garbage, exception, slow ...), delay_ms ..."),
    "device_clear": Kind("the device is healthy again: device"),
    "line_vanish": Kind("an RTU line's serial port disappears: bus"),
    "line_restore": Kind("the serial port is back: bus"),
    "endpoint_refuse": Kind("a TCP endpoint refuses connections (refuse = false: accepts again): bus"),
    "door": Kind("the cabinet door opens (open = false: closes)"),
    "flood": Kind("water on the cabinet floor (on = false: dry)"),
    "mains": Kind("mains lost (on = false) or back (on = true): the UPS runs on battery"),
    "ups_replace_battery": Kind("the UPS asks for a new battery (on = false: no more)"),
    "fan_failed": Kind("the fan runs but moves no air (failed = false: repaired)"),
    "lamps_failed": Kind("a share of a circuit's lamps dead: circuit, share (0 = repaired)"),
    "contactor_stuck": Kind('a contactor welded or jammed: circuit, stuck = "closed" | "open" | "none" (repaired)'),
    "cable_cut": Kind("the cable of a circuit cut: no current although the supply is there (cut = false: mended)"),
    "gps": Kind("the GPS receiver: mode (normal, no_fix, bad_checksum, garbage, silent)"),
    "clock_unset": Kind("the agent boots with its clock unset (only at the start)", plant=False),
    "clock_sync": Kind("the agent's clock is set (NTP/GPS) after clock_unset", plant=False),
    "broker": Kind("the MQTT broker goes down (up = false) or comes back", uplink=True, plant=False),
    "ingest": Kind("the cloud ingest goes down (up = false) or comes back", uplink=True, plant=False),
    "override": Kind("a local operator override: on, level, segments, for | until | forever", plant=False),
    "override_cancel": Kind("local overrides end: segments (default all)", plant=False),
    "alarm_ack": Kind("a technician acknowledges an alarm: alarm", plant=False),
    "command": Kind("a signed command over MQTT: command (kind), args (table)", uplink=True, plant=False),
    "ota_offer": Kind("an OTA offer (signed ota.offer): deployment, target, repository, trial_s", True, False),
}


def parse_action(
    s: Section, index: int, ctx: TimeContext, config: Config, uplink: bool, alarm_ids: frozenset[str]
) -> Action | None:
    """One [[action]] table; None after recording its issues."""
    before = len(s.issues.items)
    kind = s.get("kind", F("str", choices=tuple(KINDS)))
    at_raw = s.get("at", F("any", help=TIME_HELP))
    name = s.get("name", F("str", default=None, pattern=NAME_RE, help="a name for @name in later times"))
    if name is not None and name in ctx.actions:
        s.error("name", name, "a name not used by another [[action]]", "two actions with one name")
    t = None
    if at_raw is not None:
        try:
            t = ctx.resolve(at_raw)
        except TimeError as e:
            s.error("at", at_raw, TIME_HELP, str(e))
    if kind is None:
        s.finish(_all_arg_keys())  # no "unknown key" noise about another kind's arguments
        return None
    if KINDS[kind].uplink and not uplink:
        s.error("kind", kind, "set [scenario] uplink = true", f"{kind} needs the scenario's broker and ingest")
    args = _ARGS[kind](s, config, alarm_ids, ctx)
    if kind == "clock_unset" and t is not None and t != ctx.start:
        s.error("at", at_raw, '"0s" (the start)', "the clock can only be unset at boot")
    s.finish()
    if t is None or args is None or len(s.issues.items) != before:
        if name:
            ctx.broken.add(name)
        return None
    if name:
        ctx.named(name, t)
    return Action(index, t, str(at_raw), kind, args, name)


# ---------------------------------------------------------------- arguments per kind

ArgParser = Callable[[Section, Config, frozenset[str], TimeContext], dict[str, Any] | None]


def _named(s: Section, key: str, known: Any, what: str) -> str | None:
    names = tuple(sorted(known))
    return s.get(key, F("str", choices=names or ("<none in the config>",), help=what))


def _device(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
    dev = _named(s, "device", config.devices, "a device of the config")
    return None if dev is None else {"device": dev}


def _fault(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
    out = _device(s, config)
    fault = s.get("fault", F("str", choices=FAULT_KINDS))
    extra = {
        "delay_ms": s.get("delay_ms", F("number", default=None, min=0, max=600_000, help="ms, every reply that late")),
        "exception_code": s.get("exception_code", F("int", default=None, min=1, max=255, help="for exception")),
        "every": s.get("every", F("int", default=None, min=1, max=1_000_000, help="only every n-th request")),
    }
    if fault == "slow" and extra["delay_ms"] is None:
        s.error("delay_ms", MISSING, "a number 0..600000 (ms)", "a slow device needs delay_ms")
    if out is None or fault is None:
        return None
    return out | {"fault": fault} | {k: v for k, v in extra.items() if v is not None}


def _bus(kind: str) -> ArgParser:
    def parse(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
        buses = [n for n, b in config.buses.items() if b.kind == kind]
        bus = _named(s, "bus", buses, f"an {kind.upper()} bus of the config")
        if bus is None:
            return None
        if kind == "tcp":
            return {"bus": bus, "refuse": s.get("refuse", F("bool", default=True))}
        return {"bus": bus}

    return parse


def _flag(key: str, default: Any = MISSING) -> ArgParser:
    def parse(s: Section, *_: Any) -> dict[str, Any] | None:
        v = s.get(key, F("bool", default=default))
        return None if v is None else {key: v}

    return parse


def _circuit(s: Section, config: Config) -> str | None:
    return _named(s, "circuit", [c.name for c in config.sim.circuits], "a [[sim.circuits]] name")


def _lamps(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
    c = _circuit(s, config)
    share = s.get("share", F("number", min=0, max=1, help="share of the lamps dead, 0 = repaired"))
    return None if c is None or share is None else {"circuit": c, "share": float(share)}


def _stuck(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
    c = _circuit(s, config)
    stuck = s.get("stuck", F("str", choices=("closed", "open", "none")))
    return None if c is None or stuck is None else {"circuit": c, "stuck": stuck}


def _cut(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
    c = _circuit(s, config)
    cut = s.get("cut", F("bool", default=True))
    return None if c is None or cut is None else {"circuit": c, "cut": cut}


def _gps(s: Section, *_: Any) -> dict[str, Any] | None:
    mode = s.get("mode", F("str", choices=tuple(GPS_MODES)))
    return None if mode is None else {"mode": mode}


def _none(s: Section, *_: Any) -> dict[str, Any] | None:
    return {}


def _segments(s: Section, config: Config) -> list[str] | None:
    known = [seg.name for seg in config.lighting.segments] if config.lighting else []
    segs = s.get("segments", F("list", default=list(known), items="str", help="segments of [lighting]"))
    if segs is None:
        return None
    bad = [x for x in segs if x not in known]
    if bad:
        s.error("segments", segs, ", ".join(known) or "no segments", f"no segment {bad[0]!r} in [lighting]")
        return None
    return list(segs)


def _override(s: Section, config: Config, _ids: frozenset[str], ctx: TimeContext) -> dict[str, Any] | None:
    segs = _segments(s, config)
    out: dict[str, Any] = {"on": s.get("on", F("bool", default=True)), "segments": segs}
    level = s.get("level", F("number", default=None, min=0, max=100, help="percent"))
    if level is not None:
        out["level"] = float(level)
    ends = [k for k in ("for", "until", "forever") if k in s.data]
    if len(ends) > 1:
        s.error(ends[1], s.data[ends[1]], "one of for, until, forever", f"{ends[0]} is given too")
    dur = s.get("for", F("any", default=None, help="a duration"))
    if dur is not None:
        try:
            out["for_s"] = parse_duration(dur)
        except TimeError as e:
            s.error("for", dur, "a duration", str(e))
    until = s.get("until", F("any", default=None, help=TIME_HELP))
    if until is not None:
        try:
            out["until"] = ctx.resolve(until, inside=False)
        except TimeError as e:
            s.error("until", until, TIME_HELP, str(e))
    if s.get("forever", F("bool", default=False)):
        out["forever"] = True
    return None if segs is None or out["on"] is None else out


def _cancel(s: Section, config: Config, *_: Any) -> dict[str, Any] | None:
    segs = _segments(s, config)
    return None if segs is None else {"segments": segs}


def _ack(s: Section, _c: Config, ids: frozenset[str], _x: TimeContext) -> dict[str, Any] | None:
    aid = s.get("alarm", F("str", help="an alarm id the config's agent can raise"))
    if aid is not None and aid not in ids:
        s.error("alarm", aid, "an alarm id of the config (docs/climate.md, docs/lighting.md)", "no such alarm")
        return None
    return None if aid is None else {"alarm": aid}


def _command(s: Section, config: Config, ids: frozenset[str], _x: TimeContext) -> dict[str, Any] | None:
    kind = s.get("command", F("str", choices=tuple(COMMAND_ARGS)))
    args = dict(s.get("args", F("table", default={})) or {})
    if kind is None:
        return None
    try:
        check_args(args, COMMAND_ARGS[kind])
    except CommandError as e:
        s.error("args", args, f"the arguments of {kind} (docs/commands.md)", e.detail or str(e))
        return None
    known = {seg.name for seg in config.lighting.segments} if config.lighting else set()
    bad = [x for x in args.get("segments", []) if x not in known]
    if bad:
        s.error("args", args, ", ".join(sorted(known)), f"no segment {bad[0]!r} in [lighting]")
        return None
    if kind == "alarm.ack" and args["id"] not in ids:
        s.error("args", args, "an alarm id of the config", f"no alarm {args['id']!r}")
        return None
    return {"command": kind, "args": args}


def _ota(s: Section, *_: Any) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    dep = s.get("deployment", F("str", pattern=DEPLOYMENT_RE.pattern, help=DEPLOYMENT_RULE))
    target = s.get("target", F("str", pattern=r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}", help="a bundle file name"))
    repo = s.get("repository", F("str", default=None, help="the repository URL (default: the config's [ota])"))
    trial = s.get("trial_s", F("number", default=None, min=10, max=3600))
    if dep is None or target is None:
        return None
    out = {"deployment": dep, "target": target}
    if repo is not None:
        out["repository"] = repo
    if trial is not None:
        out["trial_s"] = trial
    return out


_ARGS: dict[str, ArgParser] = {
    "device_fault": _fault,
    "device_clear": _device,
    "line_vanish": _bus("rtu"),
    "line_restore": _bus("rtu"),
    "endpoint_refuse": _bus("tcp"),
    "door": _flag("open", True),
    "flood": _flag("on", True),
    "mains": _flag("on"),
    "ups_replace_battery": _flag("on", True),
    "fan_failed": _flag("failed", True),
    "lamps_failed": _lamps,
    "contactor_stuck": _stuck,
    "cable_cut": _cut,
    "gps": _gps,
    "clock_unset": _none,
    "clock_sync": _none,
    "broker": _flag("up"),
    "ingest": _flag("up"),
    "override": _override,
    "override_cancel": _cancel,
    "alarm_ack": _ack,
    "command": _command,
    "ota_offer": _ota,
}


def _all_arg_keys() -> tuple[str, ...]:
    return (
        "device", "fault", "delay_ms", "exception_code", "every", "bus", "refuse", "open", "on", "up", "failed",
        "circuit", "share", "stuck", "cut", "mode", "level", "segments", "for", "until", "forever", "alarm",
        "command", "args", "deployment", "target", "repository", "trial_s",
    )  # fmt: skip


def _set(name: str, key: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return lambda a: {"cmd": "set", "input": name, "value": a[key]}


_MESSAGES: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "device_fault": lambda a: (
        {"cmd": "fault", "device": a["device"], "kind": a["fault"]}
        | {k: a[k] for k in ("delay_ms", "exception_code", "every") if k in a}
    ),
    "device_clear": lambda a: {"cmd": "clear", "device": a["device"]},
    "line_vanish": lambda a: {"cmd": "vanish", "bus": a["bus"]},
    "line_restore": lambda a: {"cmd": "restore", "bus": a["bus"]},
    "endpoint_refuse": lambda a: {"cmd": "refuse", "bus": a["bus"], "on": a["refuse"]},
    "door": _set("door_open", "open"),
    "flood": _set("flood", "on"),
    "mains": _set("mains_ok", "on"),
    "ups_replace_battery": _set("ups_replace_battery", "on"),
    "fan_failed": _set("fan_failed", "failed"),
    "lamps_failed": lambda a: {"cmd": "circuit", "circuit": a["circuit"], "failed": a["share"]},
    "contactor_stuck": lambda a: {
        "cmd": "circuit",
        "circuit": a["circuit"],
        "stuck": a["stuck"],  # "none": repaired
    },
    # a cut cable downstream of the meter: the supply stays, no current (the plant's own cut, not its lamps)
    "cable_cut": lambda a: {"cmd": "circuit", "circuit": a["circuit"], "cut": a["cut"]},
    "gps": lambda a: {"cmd": "gps", "mode": a["mode"]},
}
