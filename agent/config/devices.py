"""The [devices.NAME] sections: bus, unit id, profile and its options, limits and
per-point settings, turned into a Device with a ready DeviceProfile and its Points."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from agent.config.model import Device
from agent.config.schema import MISSING, F, Section, key_name
from agent.model import Point
from drivers import profiles
from drivers.modbus.planner import PlanError, plan
from drivers.profiles.base import DeviceProfile, Limits, Option, ProfileError, ProfileSpec, RegisterPoint, Table


def _option_value(s: Section, key: str, opt: Option) -> Any:
    kind = {"float": "number"}.get(opt.kind, opt.kind)
    return s.get(key, F(kind, default=opt.default, min=opt.min, max=opt.max, choices=opt.choices, help=opt.help))


def _limits(s: Section, base: Limits) -> Limits:
    max_registers = s.get("max_registers", F("int", default=base.max_registers, min=1, max=125))
    max_bits = s.get("max_bits", F("int", default=base.max_bits, min=1, max=2000))
    max_gap = s.get("max_gap", F("int", default=base.max_gap, min=0, max=2000))
    forbidden = list(base.forbidden)
    raw = s.get("forbidden", F("list", default=[], help='[["holding", 256, 512], ...] start inclusive, end exclusive'))
    tables = [t.value for t in Table]
    for i, item in enumerate(raw or []):
        ok = (
            isinstance(item, list)
            and len(item) == 3
            and item[0] in tables
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item[1:])
            and 0 <= item[1] < item[2] <= 0x10000
        )
        if not ok:
            s.error(
                f"forbidden[{i}]",
                item,
                f"[table, start, end] with table one of {', '.join(tables)} and 0 <= start < end <= 65536",
                "bad forbidden range",
            )
            continue
        forbidden.append((Table(item[0]), item[1], item[2]))
    s.finish()
    return Limits(
        max_registers or base.max_registers,
        max_bits or base.max_bits,
        base.max_gap if max_gap is None else max_gap,
        tuple(forbidden),
    )


def parse_device(
    name: str, s: Section, buses: Mapping[str, Any], defaults: tuple[float, float], stale_factor: float
) -> Device | None:
    """A [devices.NAME] section -> Device, or None (disabled, or its problems recorded)."""
    bus = s.get("bus", F("str", help="the name of a [buses.NAME] section"))
    if bus is not None and bus not in buses:
        s.error("bus", bus, ", ".join(sorted(buses)) or "no buses defined", "no such bus")
    unit = s.get("unit", F("int", min=1, max=247, help="Modbus unit id (slave address)"))
    poll_s = s.get("poll_s", F("float", default=5.0, min=0.05, max=86400)) or 5.0
    enabled = s.get("enabled", F("bool", default=True))
    pname = s.get("profile", F("str", choices=tuple(profiles.names())))
    opt_section = s.sub("options")
    lim_section = s.sub("limits")
    pt_tables = s.table("points")
    s.finish()
    if pname is None:
        return None
    built = _profile(profiles.get(pname), opt_section, lim_section)
    if built is None:
        return None
    profile, opts = built
    tables = _point_tables(s, pt_tables, profile, pname)
    stale_after_s = max(stale_factor * poll_s, poll_s + 2.0)
    regs: list[RegisterPoint] = []
    points: dict[str, Point] = {}
    for rp in profile.points:
        ps = Section(s.issues, f"{s.name}.points.{rp.key}", tables.get(rp.key, {}))
        got = _point(name, ps, rp, defaults, stale_after_s)
        if got is not None:
            regs.append(got[0])
            points[got[0].key] = got[1]
    profile = dataclasses.replace(profile, points=tuple(regs))
    if not regs:
        s.error(
            "points",
            MISSING,
            "at least one enabled point",
            "every point is disabled; set enabled = false on the device",
        )
        return None
    try:
        plan(profile.points, profile.limits)
    except PlanError as e:
        lim_section.error(e.key or "", MISSING, "limits every point of the device fits", str(e))
        return None
    if not enabled or bus is None or bus not in buses or unit is None:
        return None  # disabled, or already reported
    return Device(name, bus, unit, pname, profile, poll_s, points, opts)


def _profile(
    spec: ProfileSpec, opt_section: Section, lim_section: Section
) -> tuple[DeviceProfile, dict[str, Any]] | None:
    """The profile built from [devices.NAME.options], with [devices.NAME.limits]; and the options."""
    opts = {k: _option_value(opt_section, k, o) for k, o in spec.options.items()}
    opt_section.finish()
    if any(v is None and spec.options[k].default is not None for k, v in opts.items()):
        return None
    try:
        profile = spec.build(opts)
    except ProfileError as e:
        key = e.key or ""
        message = str(e)
        allowed = "" if "allowed" in message else e.allowed  # the profile's message already says it
        opt_section.error(
            key, e.value if e.value is not None else opts.get(key.split("[")[0].split(".")[0]), allowed, message
        )
        return None
    return dataclasses.replace(profile, limits=_limits(lim_section, profile.limits)), opts


def _point_tables(
    s: Section, tables: Mapping[str, Any], profile: DeviceProfile, pname: str
) -> dict[str, Mapping[str, Any]]:
    """[devices.NAME.points.KEY] tables by key; a key the profile does not have is reported."""
    keys = [p.key for p in profile.points]
    out: dict[str, Mapping[str, Any]] = {}
    for key, table in tables.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            s.error(f"points.{key_name(key)}", table, f"points of {pname}: {', '.join(keys)}", f"no such point{hint}")
        elif not isinstance(table, Mapping):
            s.error(f"points.{key}", table, "a table", "must be a table")
        else:
            out[key] = table
    return out


def _point(
    device: str, ps: Section, rp: RegisterPoint, defaults: tuple[float, float], stale_after_s: float
) -> tuple[RegisterPoint, Point] | None:
    """One profile point with its [devices.NAME.points.KEY] settings, or None when disabled."""
    deadband, heartbeat = defaults
    on = ps.get("enabled", F("bool", default=True))
    scale = ps.get("scale", F("float", default=rp.scale, help="replaces the profile's scale, e.g. a CT ratio"))
    offset = ps.get("offset", F("float", default=rp.offset))
    unit_s = ps.get("unit", F("str", default=rp.unit))
    dec = ps.get(
        "decimals",
        F("int", default=rp.decimals, min=0, max=9, help="decimals worth reporting (rounds float values)"),
    )
    if scale == 0:
        ps.error("scale", 0, "a non-zero number", "scale must not be 0")
    if not scale:
        scale = rp.scale
    db = ps.get("deadband", F("float", default=deadband, min=0))
    hb = ps.get("heartbeat_s", F("float", default=heartbeat, min=1, max=86400))
    ps.finish()
    if not on:
        return None
    if dec != rp.decimals:
        rp = dataclasses.replace(rp, decimals=dec)
    if scale != rp.scale or (offset is not None and offset != rp.offset) or (unit_s is not None and unit_s != rp.unit):
        valid = rp.valid
        if valid is not None and scale != rp.scale:  # a CT ratio scales the plausible range too
            lo, hi = sorted((valid[0] * scale / rp.scale, valid[1] * scale / rp.scale))
            valid = (lo, hi)
        rp = dataclasses.replace(
            rp,
            scale=scale,
            offset=rp.offset if offset is None else offset,
            unit=rp.unit if unit_s is None else unit_s,
            valid=valid,
        )
    point = Point(
        name=f"{device}.{rp.key}",
        unit=rp.unit,
        source=device,
        deadband=deadband if db is None else db,
        heartbeat_s=heartbeat if hb is None else hb,
        stale_after_s=stale_after_s,
        description=rp.description,
        writable=rp.writable,
    )
    return rp, point
