"""Times in a scenario file: durations ("2h30m") and points in time of the run.

A point in time is `BASE`, `BASE+DURATION` or `BASE-DURATION`, or a bare duration (an
offset from the start):

| base | the time |
|---|---|
| `start`, `end` | the run's start and end |
| `HH:MM` or `HH:MM:SS` | the first such local clock time (the site's zone) at or after the start |
| `sunset` | the sunset of the run's first night, maybe just before the start (the agent's astro code) |
| `sunrise` | the first sunrise at or after the start |
| `@name` | the time of the named `[[action]]` (an earlier one in the file) |

e.g. `"2h30m"`, `"sunset+20m"`, `"sunrise-1h"`, `"03:00"`, `"03:00+1d"`, `"@cut+2h"`.
A clock time the site's clocks skip (02:30 on a spring-forward night) is an error; one
they pass twice (autumn) is its first occurrence. TOML date-times with an offset are
absolute times. Resolution raises TimeError with what is wrong; the scenario parser
adds the file, section and key. Pure (astral for the sun).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from agent.control.lighting.astro import AstroClock

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_SPEC = re.compile(r"\s*([^+\-\s]+)\s*(?:([+-])\s*(\S+))?\s*")
DURATION_HELP = 'a duration such as "90s", "15m", "2h30m", "1d" (or seconds as a number)'
TIME_HELP = (
    'an offset such as "2h30m", or start/end, HH:MM, sunset, sunrise or @action, '
    'each with an optional +/- duration ("sunset+20m")'
)
SUN_EVENTS = ("sunset", "sunrise")


class TimeError(ValueError):
    """A duration or time that cannot be read or resolved."""


def parse_duration(v: Any) -> float:
    """Seconds from "2h30m", "90s", "1.5h", "1d" or a number (seconds, >= 0)."""
    if isinstance(v, bool):
        raise TimeError(f"expected {DURATION_HELP}")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v < 0:
            raise TimeError("a duration must be a finite number of seconds >= 0")
        return float(v)
    if not isinstance(v, str):
        raise TimeError(f"expected {DURATION_HELP}")
    m = _DURATION.fullmatch(v.strip())
    if not v.strip() or m is None:
        raise TimeError(f"not a duration: expected {DURATION_HELP}")
    return sum(float(x) * _UNITS[u] for x, u in zip(m.groups(), "dhms", strict=True) if x)


def format_duration(seconds: float) -> str:
    """ "2h30m" for 9000; "0s" for 0; the inverse of parse_duration for whole seconds."""
    s, out = round(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out + (f"{s}s" if s or not out else "")


@dataclass
class TimeContext:
    """What a point in time is resolved against: the run, the site, the actions so far."""

    start: float
    end: float
    timezone: str
    latitude: float
    longitude: float
    elevation: float = 0.0
    actions: dict[str, float] = field(default_factory=dict)  # action name -> its time
    broken: set[str] = field(default_factory=set)  # named actions with errors (no time to refer to)

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.timezone)
        self.astro = AstroClock(self.latitude, self.longitude, self.elevation, self.timezone)

    def resolve(self, v: Any, inside: bool = True) -> float:
        """Epoch seconds of a time spec; `inside`: it must lie within [start, end]."""
        t = self._resolve(v)
        if inside and not self.start - 1e-6 <= t <= self.end + 1e-6:
            raise TimeError(
                f"outside the run ({self.local(t)}; the run is {self.local(self.start)} .. {self.local(self.end)})"
            )
        return t

    def local(self, t: float) -> str:
        return dt.datetime.fromtimestamp(t, self.tz).isoformat(timespec="minutes")

    def _resolve(self, v: Any) -> float:
        if isinstance(v, dt.datetime):
            if v.tzinfo is None:
                raise TimeError("a date-time needs an offset (2026-06-21T20:00:00+03:00) or use HH:MM")
            return v.timestamp()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return self.start + parse_duration(v)
        if not isinstance(v, str):
            raise TimeError(f"expected {TIME_HELP}")
        try:
            return self.start + parse_duration(v)
        except TimeError:
            pass
        if "T" in v:
            try:
                return self._resolve(dt.datetime.fromisoformat(v))
            except ValueError:
                raise TimeError(f"not an ISO date-time with offset: {v!r}") from None
        m = _SPEC.fullmatch(v)
        named = self._named(v.strip())
        if named is not None:  # "@ingest-down+1m": a name may have a "-" of its own
            base, sign, offset = named
        elif m is None:
            raise TimeError(f"not a time: expected {TIME_HELP}")
        else:
            base, sign, offset = m.groups()
        t = self._base(base)
        if sign:
            d = parse_duration(offset)
            t = t + d if sign == "+" else t - d
        return t

    def _named(self, v: str) -> tuple[str, str | None, str | None] | None:
        """(base, sign, offset) of "@name[+-duration]" for the longest action name it starts with."""
        if not v.startswith("@"):
            return None
        for name in sorted({*self.actions, *self.broken}, key=len, reverse=True):
            rest = v[1:]
            if rest.startswith(name):
                tail = rest[len(name) :].strip()
                if not tail:
                    return "@" + name, None, None
                if tail[0] in "+-":
                    return "@" + name, tail[0], tail[1:].strip()
        return None

    def _base(self, base: str) -> float:
        if base == "start":
            return self.start
        if base == "end":
            return self.end
        if base.startswith("@"):
            name = base[1:]
            if name in self.broken:
                raise TimeError(f"the [[action]] named {name!r} has errors of its own")
            if name not in self.actions:
                known = ", ".join(f"@{n}" for n in self.actions) or "none so far"
                raise TimeError(f"no earlier [[action]] named {name!r} (named actions: {known})")
            return self.actions[name]
        if base in SUN_EVENTS:
            return self.sun_event(base)
        m = _CLOCK.fullmatch(base)
        if m is None:
            raise TimeError(f"not a time: {base!r}; expected {TIME_HELP}")
        return self.clock_time(dt.time(int(m[1]), int(m[2]), int(m[3] or 0)))

    def clock_time(self, at: dt.time) -> float:
        """The first local clock time `at` at or after the start."""
        day = dt.datetime.fromtimestamp(self.start, self.tz).date()
        for i in range(3):
            d = day + dt.timedelta(days=i)
            local = dt.datetime.combine(d, at, tzinfo=self.tz)
            t = local.timestamp()
            back = dt.datetime.fromtimestamp(t, self.tz)
            if (back.hour, back.minute, back.second) != (at.hour, at.minute, at.second):
                if t >= self.start:
                    raise TimeError(f"{at:%H:%M:%S} does not exist on {d} in {self.timezone} (the clocks skip it)")
                continue
            if t >= self.start:
                return t
        raise TimeError(f"no {at:%H:%M} after the start")  # cannot happen: a day has every time

    def sun_event(self, which: str) -> float:
        """The run's first night: `sunset` of the first night not over at the start (it may be
        before the start), `sunrise` the first at or after the start (it may be after the end)."""
        day = self.astro.local_date(self.start) - dt.timedelta(days=1)
        last = self.astro.local_date(self.end) + dt.timedelta(days=2)
        while day <= last:
            night = self.astro.night_of(day)
            day += dt.timedelta(days=1)
            if which == "sunrise" and night.sunrise is not None and night.sunrise >= self.start:
                return night.sunrise
            over = night.dark_until is not None and night.dark_until <= self.start
            if which == "sunset" and night.sunset is not None and not over:
                return night.sunset
        raise TimeError(
            f"no {which} near the run at {self.latitude:g}, {self.longitude:g} "
            f"({self.local(self.start)} .. {self.local(self.end)}; polar night or day?): use clock times"
        )

    def named(self, name: str, t: float) -> None:
        self.actions[name] = t
