"""Parsing a cabinet config: TOML text to a validated Config, or every issue found.

The sections are SECTIONS, parsed in that order by the modules of this package; an
unknown section is an error. `agent.config.load/loads/check` call this module, which
imports every section's parser (and through them the controllers' settings types), so
importing `agent.config` alone stays cheap for the commands that never parse a file.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config.climate import parse_alarms, parse_climate
from agent.config.console import ConsoleSettings, parse_console
from agent.config.devices import parse_device
from agent.config.lighting import parse_lighting
from agent.config.model import BoardInfo, Bus, Config, Device, Input, Output, Sim, Site
from agent.config.ota import OtaSettings, parse_ota
from agent.config.schema import MISSING, ConfigError, ConfigIssue, F, Issues, Section, key_name, read_source
from agent.config.sections import (
    parse_agent,
    parse_bus,
    parse_cabinet,
    parse_gps,
    parse_input,
    parse_named_tables,
    parse_outbox,
    parse_output,
    parse_report,
    parse_site,
    parse_uplink,
)
from agent.config.sim import parse_sim
from agent.config.trust import parse_trust
from agent.control.climate.alarms import alarm_definitions
from agent.model import Point
from agent.wire.commands import Trust

SECTIONS = (
    "cabinet",
    "site",
    "board",
    "agent",
    "report",
    "buses",
    "devices",
    "gps",
    "inputs",
    "outputs",
    "sim",
    "uplink",
    "outbox",
    "climate",
    "alarms",
    "lighting",
    "trust",
    "ota",
    "console",
)


def loads(text: str | bytes, source: str = "<config>", boards: Mapping[str, BoardInfo] | None = None) -> Config:
    raw_bytes = text.encode() if isinstance(text, str) else text
    issues = Issues(source)
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue(source, "", "", MISSING, "UTF-8 text", f"not UTF-8: {e}")]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            [ConfigIssue(source, "", "", MISSING, "TOML (https://toml.io)", f"TOML syntax error: {e}")]
        ) from None
    base = Path(source).resolve().parent if source and not source.startswith("<") else None
    config = _parse(raw, issues, hashlib.sha256(raw_bytes).hexdigest(), boards, base)
    if issues.items:
        raise ConfigError(issues.items)
    return config


def load(path: str | Path, boards: Mapping[str, BoardInfo] | None = None) -> Config:
    return loads(read_source(path), str(path), boards)


def check(path: str | Path, boards: Mapping[str, BoardInfo] | None = None) -> list[ConfigIssue]:
    try:
        load(path, boards)
    except ConfigError as e:
        return e.issues
    return []


def _parse(
    raw: Mapping[str, Any], issues: Issues, sha: str, boards: Mapping[str, BoardInfo] | None, base: Path | None = None
) -> Config:
    cid, cname, tags, version, site = _identity(raw, issues)
    board_name, info = _board(raw, issues, boards)
    ports = info.ports if info else None
    pins = info.pins if info else None
    agent = parse_agent(issues.section("agent", raw.get("agent", {})))
    defaults = parse_report(issues.section("report", raw.get("report", {})))
    buses = _buses(raw, issues, ports)
    devices = _devices(raw, issues, defaults, agent.stale_factor)
    gps = parse_gps(issues.section("gps", raw["gps"]), ports) if "gps" in raw else None
    inputs, outputs = _dio(raw, issues, pins, defaults[1])
    sim = (
        parse_sim(issues.section("sim", raw["sim"]), frozenset(devices), {n: b.kind for n, b in buses.items()})
        if "sim" in raw
        else Sim()
    )
    _check_sim_refs(issues, sim, devices, inputs, outputs)
    uplink = parse_uplink(issues.section("uplink", raw["uplink"]), base) if "uplink" in raw else None
    outbox = parse_outbox(issues.section("outbox", raw.get("outbox", {})))
    points = _points(devices, inputs, outputs)
    climate = parse_climate(issues.section("climate", raw["climate"]), points) if "climate" in raw else None
    known = {d.id: d.description for d in alarm_definitions(climate)} if climate is not None else {}
    alarms = parse_alarms(issues, raw.get("alarms", MISSING), known)
    lighting = parse_lighting(issues.section("lighting", raw["lighting"]), points) if "lighting" in raw else None
    # [trust]: operator keys for signed commands (no section: no operator may command)
    trust = parse_trust(issues.section("trust", raw["trust"]), base) if "trust" in raw else Trust()
    # [ota]: over-the-air updates (no section: the defaults; the repository comes with each offer)
    ota = parse_ota(issues.section("ota", raw["ota"]), base) if "ota" in raw else OtaSettings()
    # [console]: the technician's web console (no section: on, loopback only)
    console = parse_console(issues.section("console", raw["console"]), base) if "console" in raw else ConsoleSettings()
    top = Section(issues, "", raw)
    for key in raw:
        if key not in SECTIONS:
            top.error(key_name(key), MISSING, ", ".join(SECTIONS), f"unknown section [{key_name(key)}]")
    return Config(
        source=issues.file,
        sha256=sha,
        cabinet_id=cid,
        cabinet_name=cname,
        tags=tags,
        site=site,
        board=board_name,
        agent=agent,
        buses=buses,
        devices=devices,
        gps=gps,
        inputs=inputs,
        outputs=outputs,
        sim=sim,
        raw=raw,
        uplink=uplink,
        outbox=outbox,
        climate=climate,
        alarms=alarms,
        lighting=lighting,
        trust=trust,
        config_version=version,
        ota=ota,
        console=console,
    )


def _identity(raw: Mapping[str, Any], issues: Issues) -> tuple[str, str, tuple[str, ...], int, Site]:
    """[cabinet] (id, name, tags, config version) and [site], both required."""
    tags: tuple[str, ...]
    if "cabinet" not in raw:
        issues.add("cabinet", "", MISSING, "a [cabinet] table with id", "required section is missing")
        cid, cname, tags, version = "", "", (), 0
    else:
        cid, cname, tags, version = parse_cabinet(issues.section("cabinet", raw["cabinet"]))
    site_raw = raw.get("site")
    if site_raw is None:
        issues.add(
            "site", "", MISSING, "latitude, longitude, timezone (elevation optional)", "required section is missing"
        )
        site = Site(0.0, 0.0, 0.0, "UTC")
    else:
        site = parse_site(issues.section("site", site_raw))
    return cid, cname, tags, version, site


def _board(
    raw: Mapping[str, Any], issues: Issues, boards: Mapping[str, BoardInfo] | None
) -> tuple[str, BoardInfo | None]:
    """[board] profile: its name and, when the boards are known, its ports and pins."""
    bsec = issues.section("board", raw.get("board", {}))
    board_name = bsec.get("profile", _board_field(boards)) or "sim"
    bsec.finish()
    return board_name, boards.get(board_name) if boards else None


def _buses(raw: Mapping[str, Any], issues: Issues, ports: frozenset[str] | None) -> dict[str, Bus]:
    buses: dict[str, Bus] = {}
    for name, table in parse_named_tables(issues, "buses", raw.get("buses", MISSING)).items():
        bus = parse_bus(name, Section(issues, f"buses.{name}", table), ports)
        if bus is not None:
            buses[name] = bus
    return buses


def _devices(
    raw: Mapping[str, Any], issues: Issues, defaults: tuple[float, float], stale_factor: float
) -> dict[str, Device]:
    """[devices.NAME]; a device may name any [buses.NAME] (a bad bus is reported there), one unit id per bus."""
    all_bus_names = dict.fromkeys(parse_named_tables(Issues(""), "buses", raw.get("buses", MISSING)))
    devices: dict[str, Device] = {}
    units: dict[tuple[str, int], str] = {}
    for name, table in parse_named_tables(issues, "devices", raw.get("devices", MISSING)).items():
        dev = parse_device(name, Section(issues, f"devices.{name}", table), all_bus_names, defaults, stale_factor)
        if dev is None:
            continue
        other = units.get((dev.bus, dev.unit))
        if other is not None:
            issues.add(
                f"devices.{name}",
                "unit",
                dev.unit,
                f"a unit id not used by [devices.{other}] on bus {dev.bus}",
                "two devices with one unit id on one bus",
            )
        units[(dev.bus, dev.unit)] = name
        devices[name] = dev
    return devices


def _dio(
    raw: Mapping[str, Any], issues: Issues, pins: frozenset[str] | None, heartbeat: float
) -> tuple[dict[str, Input], dict[str, Output]]:
    """[inputs.NAME] and [outputs.NAME]: names and pins used once."""
    inputs: dict[str, Input] = {}
    for name, table in parse_named_tables(issues, "inputs", raw.get("inputs", MISSING)).items():
        inputs[name] = parse_input(name, Section(issues, f"inputs.{name}", table), pins, heartbeat)
    outputs: dict[str, Output] = {}
    for name, table in parse_named_tables(issues, "outputs", raw.get("outputs", MISSING)).items():
        out = parse_output(name, Section(issues, f"outputs.{name}", table), pins, heartbeat)
        if name in inputs:
            issues.add(f"outputs.{name}", "", MISSING, "a name not used by [inputs]", "an input has this name too")
        outputs[name] = out
    used: dict[str, str] = {}
    items: tuple[tuple[str, Mapping[str, Input | Output]], ...] = (("inputs", inputs), ("outputs", outputs))
    for kind, dio in items:
        for name, item in dio.items():
            if item.pin and item.pin in used:
                issues.add(
                    f"{kind}.{name}",
                    "pin",
                    item.pin,
                    "a pin not used elsewhere",
                    f"pin already used by {used[item.pin]}",
                )
            used.setdefault(item.pin, f"[{kind}.{name}]")
    return inputs, outputs


def _points(
    devices: Mapping[str, Device], inputs: Mapping[str, Input], outputs: Mapping[str, Output]
) -> dict[str, Point]:
    """Every configured point by name: what [climate] and [lighting] may refer to."""
    return {
        p.name: p
        for p in [p for d in devices.values() for p in d.points.values()]
        + [i.point for i in inputs.values()]
        + [o.point for o in outputs.values()]
    }


def _board_field(boards: Mapping[str, BoardInfo] | None) -> F:
    return F(
        "str",
        default="sim",
        choices=tuple(sorted(boards)) if boards else None,
        pattern=r"[a-z0-9-]{1,40}",
        help="a board profile",
    )


def _check_sim_refs(
    issues: Issues, sim: Sim, devices: Mapping[str, Device], inputs: Mapping[str, Input], outputs: Mapping[str, Output]
) -> None:
    """References in [sim] must name existing devices/points or pins of [inputs]/[outputs]."""

    def point_ref(key: str, ref: str | None, pins: Mapping[str, Any] = inputs, kind: str = "inputs") -> None:
        if ref is None:
            return
        if ref.startswith("pin:"):
            if ref[4:] not in {i.pin for i in pins.values()}:
                issues.add("sim", key, ref, f"pin:<a pin of [{kind}]>", f"no [{kind}] entry uses this pin")
            return
        dev, _, pt = ref.partition(".")
        if dev not in devices:
            issues.add("sim", key, ref, "<device>.<point> of an enabled device", f"no such device {dev!r}")
        elif pt not in devices[dev].points:
            issues.add("sim", key, ref, ", ".join(devices[dev].points), f"device {dev!r} has no point {pt!r}")

    point_ref("fan", sim.fan, outputs, "outputs")
    point_ref("heater", sim.heater, outputs, "outputs")
    for k, v in sim.contacts.items():
        if isinstance(v, str):
            point_ref(f"contacts.{k}", v)
    for i, c in enumerate(sim.circuits):
        point_ref(f"circuits[{i}].relay", c.relay, outputs, "outputs")
        for attr in ("meter", "dali"):
            ref = getattr(c, attr)
            if ref is not None and ref not in devices:
                issues.add("sim", f"circuits[{i}].{attr}", ref, ", ".join(devices) or "no devices", "no such device")
        nodes = sorted(n for n, d in devices.items() if d.profile_name == "pole_node")
        for j, pole in enumerate(c.poles):
            if pole not in nodes or c.poles.index(pole) != j:
                why = "not a pole_node device" if pole not in nodes else "listed twice"
                issues.add("sim", f"circuits[{i}].poles[{j}]", pole, ", ".join(nodes) or "no pole_node devices", why)
