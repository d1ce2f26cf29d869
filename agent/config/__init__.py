"""Loading and validating the cabinet config (one TOML file per cabinet).

`load(path)` returns a Config or raises ConfigError carrying every issue found;
`check(path)` returns the issues. Each issue names the file, the section and key,
the value given and what is allowed. Later issues add sections (uplink, lighting,
climate, ota); until then an unknown section is an error.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.devices import parse_device
from agent.config.model import Config, Device, Gps, Input, Output, RtuBus, Sim, Site, TcpBus  # noqa: F401
from agent.config.schema import MISSING, ConfigError, ConfigIssue, Issues, Section
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
    parse_sim,
    parse_site,
    parse_uplink,
)

__all__ = ["BoardInfo", "Config", "ConfigError", "ConfigIssue", "check", "load", "loads"]

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
)
EXAMPLE = Path(__file__).resolve().parent.parent.parent / "boards" / "sim" / "cabinet.toml"


@dataclass(frozen=True)
class BoardInfo:
    """What the validator needs to know of a board profile: its port and pin names."""

    name: str
    ports: frozenset[str]
    pins: frozenset[str]


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
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(
            [ConfigIssue(str(p), "", "", MISSING, "a readable file", f"cannot read: {e.strerror}")]
        ) from None
    return loads(data, str(p), boards)


def check(path: str | Path, boards: Mapping[str, BoardInfo] | None = None) -> list[ConfigIssue]:
    try:
        load(path, boards)
    except ConfigError as e:
        return e.issues
    return []


def _parse(
    raw: Mapping[str, Any], issues: Issues, sha: str, boards: Mapping[str, BoardInfo] | None, base: Path | None = None
) -> Config:
    top = Section(issues, "", raw)
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

    bsec = issues.section("board", raw.get("board", {}))
    board_name = bsec.get("profile", _board_field(boards)) or "sim"
    bsec.finish()
    info = boards.get(board_name) if boards else None
    ports = info.ports if info else None
    pins = info.pins if info else None

    agent = parse_agent(issues.section("agent", raw.get("agent", {})))
    defaults = parse_report(issues.section("report", raw.get("report", {})))

    buses = {}
    for name, table in parse_named_tables(issues, "buses", raw.get("buses", MISSING)).items():
        bus = parse_bus(name, Section(issues, f"buses.{name}", table), ports)
        if bus is not None:
            buses[name] = bus
    all_bus_names = dict.fromkeys(parse_named_tables(Issues(""), "buses", raw.get("buses", MISSING)))

    devices: dict[str, Device] = {}
    units: dict[tuple[str, int], str] = {}
    for name, table in parse_named_tables(issues, "devices", raw.get("devices", MISSING)).items():
        dev = parse_device(name, Section(issues, f"devices.{name}", table), all_bus_names, defaults, agent.stale_factor)
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

    gps = parse_gps(issues.section("gps", raw["gps"]), ports) if "gps" in raw else None
    inputs: dict[str, Input] = {}
    for name, table in parse_named_tables(issues, "inputs", raw.get("inputs", MISSING)).items():
        inputs[name] = parse_input(name, Section(issues, f"inputs.{name}", table), pins, defaults[1])
    outputs: dict[str, Output] = {}
    for name, table in parse_named_tables(issues, "outputs", raw.get("outputs", MISSING)).items():
        out = parse_output(name, Section(issues, f"outputs.{name}", table), pins, defaults[1])
        if name in inputs:
            issues.add(f"outputs.{name}", "", MISSING, "a name not used by [inputs]", "an input has this name too")
        outputs[name] = out
    used: dict[str, str] = {}
    for kind, items in (("inputs", inputs), ("outputs", outputs)):
        for name, item in items.items():
            if item.pin and item.pin in used:
                issues.add(
                    f"{kind}.{name}",
                    "pin",
                    item.pin,
                    "a pin not used elsewhere",
                    f"pin already used by {used[item.pin]}",
                )
            used.setdefault(item.pin, f"[{kind}.{name}]")
    sim = (
        parse_sim(issues.section("sim", raw["sim"]), frozenset(devices), {n: b.kind for n, b in buses.items()})
        if "sim" in raw
        else Sim()
    )
    _check_sim_refs(issues, sim, devices, inputs, outputs)

    uplink = parse_uplink(issues.section("uplink", raw["uplink"]), base) if "uplink" in raw else None
    outbox = parse_outbox(issues.section("outbox", raw.get("outbox", {})))
    climate, alarms = _parse_climate_alarms(issues, raw, devices, inputs, outputs)
    lighting = _parse_lighting(issues, raw, devices, inputs, outputs) if "lighting" in raw else None
    trust = _parse_trust(issues, raw, base)
    ota = _parse_ota(issues, raw, base)
    for key in raw:
        if key not in SECTIONS:
            top.error(key, MISSING, ", ".join(SECTIONS), f"unknown section [{key}]")
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
    )


def _parse_climate_alarms(
    issues: Issues,
    raw: Mapping[str, Any],
    devices: Mapping[str, Device],
    inputs: Mapping[str, Input],
    outputs: Mapping[str, Output],
):
    """[climate] (references checked against every configured point) and [alarms]."""
    from agent.config.climate import parse_alarms, parse_climate
    from agent.control.climate_alarms import alarm_definitions

    points = {
        p.name: p
        for p in [p for d in devices.values() for p in d.points.values()]
        + [i.point for i in inputs.values()]
        + [o.point for o in outputs.values()]
    }
    climate = parse_climate(issues.section("climate", raw["climate"]), points) if "climate" in raw else None
    known = {d.id: d.description for d in alarm_definitions(climate)} if climate is not None else {}
    alarms = parse_alarms(issues, raw.get("alarms", MISSING), known)
    return climate, alarms


def _board_field(boards: Mapping[str, BoardInfo] | None):
    from agent.config.schema import F

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


def _parse_lighting(
    issues: Issues,
    raw: Mapping[str, Any],
    devices: Mapping[str, Device],
    inputs: Mapping[str, Input],
    outputs: Mapping[str, Output],
):
    """[lighting], its point references checked against every configured point."""
    from agent.config.lighting import parse_lighting

    points = {
        p.name: p
        for p in [p for d in devices.values() for p in d.points.values()]
        + [i.point for i in inputs.values()]
        + [o.point for o in outputs.values()]
    }
    return parse_lighting(issues.section("lighting", raw["lighting"]), points)


def _parse_trust(issues: Issues, raw: Mapping[str, Any], base: Path | None):
    """[trust]: operator keys for signed commands (no section: no operator may command)."""
    from agent.config.trust import parse_trust
    from agent.wire.commands import Trust

    return parse_trust(issues.section("trust", raw["trust"]), base) if "trust" in raw else Trust()


def _parse_ota(issues: Issues, raw: Mapping[str, Any], base: Path | None):
    """[ota]: over-the-air updates (no section: the defaults; the repository comes with each offer)."""
    from agent.config.ota import OtaSettings, parse_ota

    return parse_ota(issues.section("ota", raw["ota"]), base) if "ota" in raw else OtaSettings()
