"""The [lighting] config section: segments, calendars, programs, photocell, overrides,
actuation and failure detection, parsed into agent.control's LightingSettings.

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
from typing import Any

from agent.config.schema import MISSING, NAME_RE, F, Issues, Section
from agent.control.calendar import LAST, WEEKDAYS, Calendar, DateSpec, Rule
from agent.control.lighting_model import Actuation, FailureDetection, LightingSettings, Segment
from agent.control.photocell import PhotocellSettings
from agent.control.programs import BOOST_OPERATIONS, PERIODS, AstroStep, Boost, Program, Step
from agent.model import Point

TIME_HELP = 'local wall time "HH:MM" or "HH:MM:SS"'
OFFSET = dict(min=-180, max=180, help="minutes, + after the event")
LEVEL = F("float", min=0, max=100, help="percent; 0 = off")


def _time(v: Any) -> dt.time | None:
    if not isinstance(v, str) or not re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", v):
        return None
    try:
        return dt.time.fromisoformat(v)
    except ValueError:
        return None


def _time_check(v: str) -> str | None:
    return None if _time(v) is not None else f"not a time ({TIME_HELP})"


def _date_check(v: str) -> str | None:
    try:
        DateSpec.parse(v)
    except ValueError:
        return 'not a date ("YYYY-MM-DD", or "--MM-DD" for every year)'
    return None


def parse_lighting(s: Section, points: Mapping[str, Point]) -> LightingSettings | None:
    enabled = s.get("enabled", F("bool", default=True))
    expiry_h = s.get(
        "override_expiry_h",
        F("float", default=8.0, min=0.01, max=24 * 366, help="hours an override lasts unless told otherwise"),
    )
    day_start = s.get(
        "day_start",
        F("str", default="12:00", check=_time_check, help="the calendar day starts here (a night is one day)"),
    )
    photocell = _photocell(s.sub("photocell"), points) if "photocell" in s.data else None
    s.used.add("photocell")
    actuation = _actuation(s.sub("actuation"))
    failure = _failure(s.sub("failure"))
    programs = {
        name: _program(name, Section(s.issues, f"lighting.programs.{name}", t), points, photocell)
        for name, t in _named(s, "programs").items()
    }
    calendars = {
        name: _calendar(name, Section(s.issues, f"lighting.calendars.{name}", t), programs)
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
        day_start=_time(day_start) or dt.time(12),
        actuation=actuation,
        failure=failure,
    )


def _named(s: Section, key: str, required: bool = False) -> dict[str, Mapping[str, Any]]:
    table = s.table(key, required)
    out = {}
    for name, t in table.items():
        if not re.fullmatch(NAME_RE, name):
            s.error(f"{key}.{name}", MISSING, "a letter, then letters, digits, '_' or '-' (max 64)", "bad name")
        elif not isinstance(t, Mapping):
            s.error(f"{key}.{name}", t, "a table", f"[{s.name}.{key}.{name}] must be a table")
        else:
            out[name] = t
    if required and not out and key in s.data:
        s.error(key, MISSING, f"at least one [{s.name}.{key}.NAME] table", "none defined")
    return out


def _point(
    s: Section,
    key: str,
    points: Mapping[str, Point],
    required: bool = False,
    writable: bool = False,
    what: str = "a point",
) -> str | None:
    def check(v: str) -> str | None:
        p = points.get(v)
        if p is None:
            dev = v.partition(".")[0]
            near = sorted(n for n in points if n.startswith(dev + "."))[:8]
            return (
                f"no such point; points of {dev!r}: {', '.join(near)}"
                if near
                else "no such point (use <device>.<point> of an enabled device, or dio.<name>)"
            )
        if writable and not p.writable:
            return "this point cannot be written"
        return None

    return s.get(key, F("str", default=MISSING if required else None, check=check, help=what))


def _photocell(s: Section, points: Mapping[str, Point]) -> PhotocellSettings | None:
    point = _point(s, "point", points, required=True, what="the lux sensor's point, e.g. lux.lux")
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


def _floats(s: Section, cls: type, spec: tuple) -> Any:
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
    contactor = _point(
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
        feedback=_point(s, "feedback", points, what="the contactor's auxiliary contact (true = closed)"),
        dim=_point(s, "dim", points, writable=True, what="a writable dimming point, e.g. dali.broadcast.level"),
        power=_point(s, "power", points, what="the segment meter's active power (W)"),
        energy=_point(s, "energy", points, what="the segment meter's energy counter (kWh)"),
        voltage=_point(s, "voltage", points, what="the segment meter's voltage (V)"),
        expected_w=s.get(
            "expected_w",
            F("float", default=0.0, min=0, max=1_000_000, help="W at 100 %; 0 = no power-based failure detection"),
        )
        or 0.0,
        luminaires=s.get("luminaires", F("int", default=0, min=0, max=10_000, help="0 = unknown")) or 0,
    )
    dr = s.get("dim_range", F("list", default=[0, 100], items="number", help="[value at 0 %, value at 100 %]"))
    if dr is not None and (len(dr) != 2 or dr[0] == dr[1]):
        s.error("dim_range", dr, "[value at 0 %, value at 100 %], two different numbers", "badly formed")
        dr = None
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
    kw: dict[str, Any] = {}
    if dr is not None:
        kw["dim_range"] = (float(dr[0]), float(dr[1]))
    if pc is not None:
        kw["power_curve"] = pc
    return dataclasses.replace(seg, **kw)


def _curve(s: Section, curve: list) -> tuple[tuple[float, float], ...] | None:
    pts = []
    for i, item in enumerate(curve):
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in item)
            and 0 <= item[0] <= 100
            and 0 <= item[1] <= 10
        )
        if not ok:
            s.error(f"power_curve[{i}]", item, "[level 0..100, share 0..10]", "badly formed")
            return None
        pts.append((float(item[0]), float(item[1])))
    if len(pts) < 2 or any(b[0] <= a[0] for a, b in zip(pts, pts[1:])):
        s.error("power_curve", curve, "at least two points with rising levels", "badly formed")
        return None
    return tuple(pts)


def _calendar(name: str, s: Section, programs: Mapping[str, Program | None]) -> Calendar | None:
    prog_field = F("str", choices=tuple(programs) or ("(define [lighting.programs.NAME])",))
    default = s.get("default", prog_field)
    rules = []
    for i, r in enumerate(s.get("rules", F("list", default=[])) or []):
        if not isinstance(r, Mapping):
            s.error(f"rules[{i}]", r, "a table", "must be a table")
            continue
        rule = _rule(Section(s.issues, f"{s.name}.rules[{i}]", r), prog_field)
        if rule is not None:
            rules.append(rule)
    s.finish()
    return Calendar(name, default, tuple(rules)) if default is not None else None


def _rule(s: Section, prog_field: F) -> Rule | None:
    program = s.get("program", prog_field)
    name = s.get("name", F("str", default=""))
    dates = s.get(
        "dates",
        F(
            "list",
            default=[],
            items="str",
            check=lambda v: next((f"{x!r}: {m}" for x in v if (m := _date_check(x))), None),
        ),
    )
    weekdays = s.get(
        "weekdays",
        F(
            "list",
            default=[],
            items="str",
            help="weekday names mon..sun",
            check=lambda v: next(
                (f"{x!r} is not a weekday ({', '.join(WEEKDAYS)})" for x in v if x not in WEEKDAYS), None
            ),
        ),
    )
    occ = s.get(
        "occurrences",
        F(
            "list",
            default=[],
            help='1..5 or "last"',
            check=lambda v: next(
                (
                    f'{x!r} is not 1..5 or "last"'
                    for x in v
                    if not (x == "last" or (isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 5))
                ),
                None,
            ),
        ),
    )
    start = s.get("start", F("str", default=None, check=_date_check, help='"--MM-DD" or "YYYY-MM-DD"'))
    end = s.get("end", F("str", default=None, check=_date_check, help='"--MM-DD" or "YYYY-MM-DD"'))
    if dates and weekdays:
        s.error("weekdays", weekdays, "either dates or weekdays in one rule", "both given")
    if occ and weekdays == []:
        s.error("occurrences", occ, "only with weekdays", "no weekdays to count")
    s.finish()
    if program is None or dates is None or weekdays is None or occ is None:
        return None
    return Rule(
        program=program,
        name=name or "",
        dates=tuple(DateSpec.parse(x) for x in dates),
        weekdays=tuple(WEEKDAYS.index(w) for w in weekdays),
        occurrences=tuple(LAST if x == "last" else x for x in occ),
        start=DateSpec.parse(start) if start else None,
        end=DateSpec.parse(end) if end else None,
    )


def _program(name: str, s: Section, points: Mapping[str, Point], photocell: PhotocellSettings | None) -> Program | None:
    period = s.get("period", F("str", default="astro", choices=PERIODS))
    if period in ("sensor", "astro+sensor") and photocell is None:
        s.error("period", period, "a [lighting.photocell] section for sensor periods", "no photocell configured")
    on = s.get("on", F("str", default=MISSING if period == "absolute" else None, check=_time_check, help=TIME_HELP))
    off = s.get("off", F("str", default=MISSING if period == "absolute" else None, check=_time_check, help=TIME_HELP))
    if on and off and on == off:
        s.error("off", off, "a time other than `on`", "empty period")
    d = Program(name)
    offs = {
        k: s.get(k, F("float", default=getattr(d, k), **OFFSET))
        for k in (
            "sunset_offset_min",
            "sunrise_offset_min",
            "sensor_from_sunset_min",
            "latest_on_sunset_min",
            "sensor_from_sunrise_min",
            "latest_off_sunrise_min",
        )
    }
    level = s.get("level", F("float", default=100.0, min=0, max=100, help="percent while active"))
    steps = _steps(s)
    astro_steps = _astro_steps(s)
    ramp_up = s.get("ramp_up_s", F("float", default=0.0, min=0, max=3600))
    ramp_down = s.get("ramp_down_s", F("float", default=0.0, min=0, max=3600))
    boost = _boost(s.sub("boost"), points) if "boost" in s.data else None
    s.used.add("boost")
    s.finish()
    if period is None:
        return None
    return Program(
        name=name,
        period=period,
        on=_time(on),
        off=_time(off),
        **{k: (getattr(d, k) if v is None else v) for k, v in offs.items()},
        level=100.0 if level is None else level,
        steps=steps,
        astro_steps=astro_steps,
        boost=boost,
        ramp_up_s=ramp_up or 0.0,
        ramp_down_s=ramp_down or 0.0,
    )


def _steps(s: Section) -> tuple[Step, ...]:
    out: list[Step] = []
    for i, st in enumerate(s.get("steps", F("list", default=[], help='[{at = "22:00", level = 50}, ...]')) or []):
        ss = Section(s.issues, f"{s.name}.steps[{i}]", st if isinstance(st, Mapping) else {})
        if not isinstance(st, Mapping):
            s.error(f"steps[{i}]", st, '{at = "HH:MM", level = 0..100}', "must be a table")
            continue
        at, level = ss.get("at", F("str", check=_time_check, help=TIME_HELP)), ss.get("level", LEVEL)
        ss.finish()
        if at is not None and any(x.at == _time(at) for x in out):
            ss.error("at", at, "one step per time", "duplicate time")
        elif at is not None and level is not None:
            out.append(Step(_time(at), level))  # type: ignore[arg-type]
    return tuple(sorted(out, key=lambda x: x.at))


def _astro_steps(s: Section) -> tuple[AstroStep, ...]:
    out = []
    for i, st in enumerate(
        s.get("astro_steps", F("list", default=[], help='[{event = "sunrise", offset_min = -30, level = 100}]')) or []
    ):
        if not isinstance(st, Mapping):
            s.error(f"astro_steps[{i}]", st, "a table", "must be a table")
            continue
        ss = Section(s.issues, f"{s.name}.astro_steps[{i}]", st)
        ev = ss.get("event", F("str", choices=("sunset", "sunrise")))
        off = ss.get("offset_min", F("float", default=0.0, **OFFSET))
        level = ss.get("level", LEVEL)
        ss.finish()
        if ev is not None and off is not None and level is not None:
            out.append(AstroStep(ev, off, level))
    return tuple(out)


def _boost(s: Section, points: Mapping[str, Point]) -> Boost | None:
    point = _point(s, "point", points, required=True, what="a motion input, e.g. dio.motion")
    d = Boost("")
    b = Boost(
        point or "",
        level=_or(s.get("level", F("float", default=100.0, min=0, max=100)), d.level),
        hold_s=_or(s.get("hold_s", F("float", default=d.hold_s, min=1, max=7200)), d.hold_s),
        operation=_or(s.get("operation", F("str", default="max", choices=BOOST_OPERATIONS)), "max"),
        max_s=_or(
            s.get("max_s", F("float", default=d.max_s, min=10, max=86400, help="a longer detection is ignored")),
            d.max_s,
        ),
    )
    s.finish()
    return b if point else None


def _or(v: Any, default: Any) -> Any:
    return default if v is None else v


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
