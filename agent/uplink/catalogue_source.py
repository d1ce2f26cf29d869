"""The cabinet's point catalogue (agent/wire/catalogue.py) built from its loaded config and
the points the running agent keeps (agent.runtime.app.agent_points).

Kind and decimals come from the device profiles' register points (bool for coils and
discrete inputs and the digital inputs and outputs, float when scaled or a float type,
int otherwise); the role of a point is where the lighting or climate configuration uses
it ("lighting.<segment>.<field>", "climate.<field>"), the segments' own points get
"lighting.<segment>". Points the config does not describe get kind "" (any).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from agent.config import Config
from agent.model import Point
from agent.wire.catalogue import Catalogue, PointInfo, Site, build


def _roles(config: Config) -> dict[str, str]:
    roles: dict[str, str] = {}
    if config.lighting is not None:
        for seg in config.lighting.segments:
            for f in dataclasses.fields(seg):
                v = getattr(seg, f.name)
                if f.name != "name" and isinstance(v, str):
                    roles.setdefault(v, f"lighting.{seg.name}.{f.name}")
    if config.climate is not None:
        _walk(config.climate, "climate", roles)
    return roles


def _walk(obj: Any, path: str, roles: dict[str, str]) -> None:
    """Point names in a (nested) settings dataclass -> "climate.<field>[.<field>]"."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, str) and "." in v:
            roles.setdefault(v, f"{path}.{f.name}")
        elif isinstance(v, tuple):
            for i, item in enumerate(v):
                if dataclasses.is_dataclass(item) and not isinstance(item, type):
                    _walk(item, f"{path}.{f.name}[{getattr(item, 'name', i)}]", roles)
                elif isinstance(item, str) and "." in item:
                    roles.setdefault(item, f"{path}.{f.name}")
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            _walk(v, f"{path}.{f.name}", roles)


def _device_kinds(config: Config) -> dict[str, tuple[str, int | None, str]]:
    """point name -> (kind, decimals, bus) for device points."""
    out: dict[str, tuple[str, int | None, str]] = {}
    for dev in config.devices.values():
        regs = {rp.key: rp for rp in dev.profile.points}
        for key, p in dev.points.items():
            rp = regs.get(key)
            if rp is None:
                out[p.name] = ("", None, dev.bus)
                continue
            dtype = rp.dtype.value
            if dtype == "bool" or rp.bit is not None:
                kind = "bool"
            elif rp.enum:
                kind = "str"
            elif rp.dtype.is_float or rp.scale != 1 or rp.offset != 0:
                kind = "float"
            else:
                kind = "int"
            out[p.name] = (kind, rp.decimals, dev.bus)
    for i in config.inputs.values():
        out[i.point.name] = ("bool", None, "")
    for o in config.outputs.values():
        out[o.point.name] = ("bool", None, "")
    return out


def from_config(config: Config, points: Iterable[Point]) -> Catalogue:
    """The catalogue of `config` with `points` (every point the agent reports)."""
    roles = _roles(config)
    kinds = _device_kinds(config)
    infos = []
    for p in points:
        kind, decimals, bus = kinds.get(p.name, ("", None, ""))
        role = roles.get(p.name, "")
        if not role and p.source == "lighting":
            role = "lighting." + p.name.split(".")[1]
        infos.append(PointInfo(p.name, p.unit, kind, decimals, p.source, bus, role, p.description))
    site = Site(config.site.latitude, config.site.longitude, config.site.timezone)
    return build(config.cabinet_id, config.board, config.config_version, site, infos)
