"""The [lighting] config section: segments, calendars, programs, photocell, overrides,
actuation and failure detection, parsed into agent.control's LightingSettings (the
calendars and programs by agent.config.programs).

Every problem names the section and key, the value given and what is allowed; all
are collected in one pass. Cross-checks: referenced points exist (contactor and
dimming points must be writable), calendars and programs referenced exist, sensor
programs need a [lighting.photocell], on_lux <= off_lux, steps are well formed.
See docs/lighting.md for the model and an example.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from itertools import pairwise
from typing import Any, TypeVar

from agent.config.programs import parse_calendar, parse_program, parse_time, point_ref, time_check
from agent.config.schema import MISSING, NAME_RE, F, Issues, Section, is_number, key_name, number_pair
from agent.control.lighting.calendar import Calendar
from agent.control.lighting.model import Actuation, FailureDetection, LightingSettings, Segment
from agent.control.lighting.photocell import PhotocellSettings
from agent.model import Point

S = TypeVar("S", Actuation, FailureDetection)
DIM_MAX = 1e9  # bound of a dim_range value: the arithmetic between the two stays finite


def parse_lighting(s: Section, points: Mapping[str, Point]) -> LightingSettings | None:
    enabled = s.get("enabled", F("bool", default=True))
    expiry_h = s.get(
        "override_expiry_h",
        F("float", default=8.0, min=0.01, max=24 * 366, help="hours an override lasts unless told otherwise"),
    )
    day_start = s.get(
        "day_start",
        F("str", default="12:00", check=time_check, help="the calendar day starts here (a night is one day)"),
    )
    photocell = _photocell(s.sub("photocell"), points) if "photocell" in s.data else None
    s.used.add("photocell")
    actuation = _actuation(s.sub("actuation"))
    failure = _failure(s.sub("failure"))
    programs = {
        name: parse_program(name, Section(s.issues, f"lighting.programs.{name}", t), points, photocell)
        for name, t in _named(s, "programs").items()
    }
    calendars = {
        name: parse_calendar(name, Section(s.issues, f"lighting.calendars.{name}", t), programs)
        for name, t in _named(s, "calendars").items()
    }
    segments = []
    for name, t in _named(s, "segments", required=True).items():
        seg = _segment(name, Section(s.issues, f"lighting.segments.{name}", t), points, calendars)
        if seg is not None:
            segments.append(seg)
    _unique_outputs(s.issues, segments)
    s.finish()
    if not enabled:
        return None
    return LightingSettings(
        segments=tuple(segments),
        calendars={k: v for k, v in calendars.items() if v is not None},
        programs={k: v for k, v in programs.items() if v is not None},
        photocell=photocell,
        override_expiry_s=(expiry_h or 8.0) * 3600.0,
        day_start=parse_time(day_start) or dt.time(12),
        actuation=actuation,
        failure=failure,
    )


def _named(s: Section, key: str, required: bool = False) -> dict[str, Mapping[str, Any]]:
    table = s.table(key, required)
    out = {}
    for name, t in table.items():
        if not re.fullmatch(NAME_RE, name):
            s.error(
                f"{key}.{key_name(name)}", MISSING, "a letter, then letters, digits, '_' or '-' (max 64)", "bad name"
            )
        elif not isinstance(t, Mapping):
            s.error(f"{key}.{name}", t, "a table", f"[{s.name}.{key}.{name}] must be a table")
        else:
            out[name] = t
    if required and not out and key in s.data:
        s.error(key, MISSING, f"at least one [{s.name}.{key}.NAME] table", "none defined")
    return out


def _photocell(s: Section, points: Mapping[str, Point]) -> PhotocellSettings | None:
    point = point_ref(s, "point", points, required=True, what="the lux sensor's point, e.g. lux.lux")
    d = PhotocellSettings("")
    v = {
        k: s.get(k, F("float", default=getattr(d, k), min=lo, max=hi, help=h))
        for k, lo, hi, h in (
            ("on_lux", 0, 100_000, "lx: dark at or below this"),
            ("off_lux", 0, 100_000, "lx: light at or above this"),
            ("on_delay_s", 0, 3600, ""),
            ("off_delay_s", 0, 3600, ""),
            ("max_age_s", 1, 86400, "older values are stale"),
            ("min_lux", -1000, 100_000, "below: out of range"),
            ("max_lux", 0, 1e7, "above: out of range"),
            ("stuck_tolerance_lux", 0, 1000, "changes up to this do not count"),
            ("stuck_after_s", 3600, 30 * 86400, "unchanged this long with no clock: stuck"),
            ("fault_delay_s", 0, 3600, ""),
            ("recover_s", 0, 86400, ""),
        )
    }
    if v["on_lux"] is not None and v["off_lux"] is not None and v["on_lux"] > v["off_lux"]:
        s.error("on_lux", v["on_lux"], f"<= off_lux ({v['off_lux']:g})", "the hysteresis is reversed")
    if v["min_lux"] is not None and v["max_lux"] is not None and v["min_lux"] >= v["max_lux"]:
        s.error("max_lux", v["max_lux"], f"> min_lux ({v['min_lux']:g})", "empty range")
    s.finish()
    if point is None:
        return None
    return PhotocellSettings(point, **{k: (getattr(d, k) if x is None else x) for k, x in v.items()})


def _floats(s: Section, cls: type[S], spec: tuple[tuple[str, float, float, str], ...]) -> S:
    """A settings dataclass of floats: (key, min, max, help) per field; its defaults where bad."""
    d = cls()
    vals = {k: s.get(k, F("float", default=getattr(d, k), min=lo, max=hi, help=h)) for k, lo, hi, h in spec}
    s.finish()
    return cls(**{k: (getattr(d, k) if x is None else x) for k, x in vals.items()})


def _actuation(s: Section) -> Actuation:
    return _floats(
        s,
        Actuation,
        (
            ("min_switch_interval_s", 0, 3600, "no switching sooner than this after a switch"),
            ("warm_up_s", 0, 3600, "after switch-on: 100 %, no power alarms"),
            ("settle_s", 0, 3600, "after a level change: power not judged"),
            ("readback_delay_s", 1, 600, "read-back may lag a write this long"),
            ("reassert_s", 1, 3600, "a mismatching output is written again this often"),
        ),
    )


def _failure(s: Section) -> FailureDetection:
    return _floats(
        s,
        FailureDetection,
        (
            ("tolerance", 0.01, 1, "share of expected power"),
            ("lamp_share", 0.1, 5, "share of one luminaire's power"),
            ("no_power_share", 0, 0.9, "share of expected power"),
            ("off_power_w", 0, 100_000, "W while commanded off"),
            ("supply_min_v", 0, 1000, "V"),
            ("confirm_s", 0, 86400, "a failure must hold this long"),
            ("max_age_s", 1, 86400, "older meter values are not judged"),
        ),
    )


def _segment(
    name: str, s: Section, points: Mapping[str, Point], calendars: Mapping[str, Calendar | None]
) -> Segment | None:
    contactor = point_ref(
        s,
        "contactor",
        points,
        required=True,
        writable=True,
        what="the writable relay point that drives the contactor, e.g. relays.relay_1",
    )
    calendar = s.get("calendar", F("str", choices=tuple(calendars) or ("(define [lighting.calendars.NAME])",)))
    seg = Segment(
        name=name,
        contactor=contactor or "",
        calendar=calendar or "",
        invert=s.get("invert", F("bool", default=False, help="true: coil energised = lights off (NC wiring)")) or False,
        feedback=point_ref(s, "feedback", points, what="the contactor's auxiliary contact (true = closed)"),
        dim=point_ref(s, "dim", points, writable=True, what="a writable dimming point, e.g. dali.broadcast.level"),
        power=point_ref(s, "power", points, what="the segment meter's active power (W)"),
        energy=point_ref(s, "energy", points, what="the segment meter's energy counter (kWh)"),
        voltage=point_ref(s, "voltage", points, what="the segment meter's voltage (V)"),
        expected_w=s.get(
            "expected_w",
            F("float", default=0.0, min=0, max=1_000_000, help="W at 100 %; 0 = no power-based failure detection"),
        )
        or 0.0,
        luminaires=s.get("luminaires", F("int", default=0, min=0, max=10_000, help="0 = unknown")) or 0,
        poles=_poles(s, points),
    )
    dr = number_pair(s, "dim_range", seg.dim_range, (-DIM_MAX, DIM_MAX), "value at 0 %, value at 100 %", "a != b")
    curve = s.get(
        "power_curve",
        F(
            "list",
            default=None,
            items="list",
            help="[[level %, share of expected_w], ...] from 0 to 100, levels rising",
        ),
    )
    pc = _curve(s, curve) if curve is not None else None
    if seg.power and seg.expected_w == 0 and "expected_w" not in s.data:
        s.error(
            "expected_w",
            MISSING,
            "W at 100 % (0 to switch failure detection off)",
            "needed with a power point for failure detection",
        )
    s.finish()
    if contactor is None or calendar is None or calendars.get(calendar) is None:
        return None
    kw: dict[str, Any] = {"dim_range": dr or seg.dim_range}
    if pc is not None:
        kw["power_curve"] = pc
    return dataclasses.replace(seg, **kw)


def _poles(s: Section, points: Mapping[str, Point]) -> tuple[str, ...]:
    """`poles`: pole_node devices in cable order from the cabinet (each with a status point)."""
    raw = s.get("poles", F("list", default=[], help="pole_node devices in cable order")) or []
    out = []
    for i, pole in enumerate(raw):
        if not isinstance(pole, str) or f"{pole}.status" not in points or pole in out:
            why = "listed twice" if pole in out else "not an enabled pole_node device"
            s.error(f"poles[{i}]", pole, "a pole_node device name", why)
        else:
            out.append(pole)
    return tuple(out)


def _curve(s: Section, curve: list) -> tuple[tuple[float, float], ...] | None:
    pts = []
    for i, item in enumerate(curve):
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and all(is_number(x) for x in item)
            and 0 <= item[0] <= 100
            and 0 <= item[1] <= 10
        )
        if not ok:
            s.error(f"power_curve[{i}]", item, "[level 0..100, share 0..10]", "badly formed")
            return None
        pts.append((float(item[0]), float(item[1])))
    if len(pts) < 2 or any(b[0] <= a[0] for a, b in pairwise(pts)):
        s.error("power_curve", curve, "at least two points with rising levels", "badly formed")
        return None
    return tuple(pts)


def _unique_outputs(issues: Issues, segments: list[Segment]) -> None:
    seen: dict[str, str] = {}
    for seg in segments:
        for role in ("contactor", "dim"):
            p = getattr(seg, role)
            if p and p in seen:
                issues.add(
                    f"lighting.segments.{seg.name}",
                    role,
                    p,
                    "a point no other segment drives",
                    f"already driven by {seen[p]}",
                )
            elif p:
                seen[p] = f"[lighting.segments.{seg.name}] {role}"
