"""The programs and calendars of [lighting] ([lighting.programs.NAME],
[lighting.calendars.NAME]: rules, fixed-time and astro steps, boost), parsed into
agent.control's Program and Calendar, and the helpers the rest of [lighting] shares:
`parse_time` / `time_check` (local wall time "HH:MM[:SS]") and `point_ref` (a point
reference checked against the config's points). Every problem is recorded in the
shared Issues; docs/lighting.md has the model.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from agent.config.schema import MISSING, F, Section, or_default
from agent.control.lighting.calendar import LAST, WEEKDAYS, Calendar, DateSpec, Rule
from agent.control.lighting.photocell import PhotocellSettings
from agent.control.lighting.programs import BOOST_OPERATIONS, PERIODS, AstroStep, Boost, Program, Step
from agent.model import Point

TIME_HELP = 'local wall time "HH:MM" or "HH:MM:SS"'
LEVEL = F("float", min=0, max=100, help="percent; 0 = off")


def _offset(default: float) -> F:
    """An offset from sunset or sunrise."""
    return F("float", default=default, min=-180, max=180, help="minutes, + after the event")


def parse_time(v: Any) -> dt.time | None:
    if not isinstance(v, str) or not re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", v):
        return None
    try:
        return dt.time.fromisoformat(v)
    except ValueError:
        return None


def time_check(v: str) -> str | None:
    return None if parse_time(v) is not None else f"not a time ({TIME_HELP})"


def date_check(v: str) -> str | None:
    try:
        DateSpec.parse(v)
    except ValueError:
        return 'not a date ("YYYY-MM-DD", or "--MM-DD" for every year)'
    return None


def point_ref(
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


def parse_calendar(name: str, s: Section, programs: Mapping[str, Program | None]) -> Calendar | None:
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
            check=lambda v: next((f"{x!r}: {m}" for x in v if (m := date_check(x))), None),
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
    start = s.get("start", F("str", default=None, check=date_check, help='"--MM-DD" or "YYYY-MM-DD"'))
    end = s.get("end", F("str", default=None, check=date_check, help='"--MM-DD" or "YYYY-MM-DD"'))
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


def parse_program(
    name: str, s: Section, points: Mapping[str, Point], photocell: PhotocellSettings | None
) -> Program | None:
    period = s.get("period", F("str", default="astro", choices=PERIODS))
    if period in ("sensor", "astro+sensor") and photocell is None:
        s.error("period", period, "a [lighting.photocell] section for sensor periods", "no photocell configured")
    on = s.get("on", F("str", default=MISSING if period == "absolute" else None, check=time_check, help=TIME_HELP))
    off = s.get("off", F("str", default=MISSING if period == "absolute" else None, check=time_check, help=TIME_HELP))
    if on and off and on == off:
        s.error("off", off, "a time other than `on`", "empty period")
    d = Program(name)
    offs = {
        k: s.get(k, _offset(getattr(d, k)))
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
        on=parse_time(on),
        off=parse_time(off),
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
        at, level = ss.get("at", F("str", check=time_check, help=TIME_HELP)), ss.get("level", LEVEL)
        ss.finish()
        when = None if at is None else parse_time(at)  # checked: a time when given
        if when is not None and any(x.at == when for x in out):
            ss.error("at", at, "one step per time", "duplicate time")
        elif when is not None and level is not None:
            out.append(Step(when, level))
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
        off = ss.get("offset_min", _offset(0.0))
        level = ss.get("level", LEVEL)
        ss.finish()
        if ev is not None and off is not None and level is not None:
            out.append(AstroStep(ev, off, level))
    return tuple(out)


def _boost(s: Section, points: Mapping[str, Point]) -> Boost | None:
    point = point_ref(s, "point", points, required=True, what="a motion input, e.g. dio.motion")
    d = Boost("")
    b = Boost(
        point or "",
        level=or_default(s.get("level", F("float", default=100.0, min=0, max=100)), d.level),
        hold_s=or_default(s.get("hold_s", F("float", default=d.hold_s, min=1, max=7200)), d.hold_s),
        operation=or_default(s.get("operation", F("str", default="max", choices=BOOST_OPERATIONS)), "max"),
        max_s=or_default(
            s.get("max_s", F("float", default=d.max_s, min=10, max=86400, help="a longer detection is ignored")),
            d.max_s,
        ),
    )
    s.finish()
    return b if point else None
