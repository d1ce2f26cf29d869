"""TALQ-style calendars: which program runs on a given local date.

Owns date rules. A Calendar is an ordered list of Rules and a default program; the
first rule that matches the date wins (rule order = priority, as in TALQ), else the
default program runs. A rule may carry a date range (`start`/`end`, yearly
recurring "--MM-DD" or absolute "YYYY-MM-DD"; a recurring range may wrap the new
year, e.g. --11-01..--02-28) and one condition:

* `dates`: a list of dates (recurring or absolute), TALQ `ccDate`;
* `weekdays` (0 = Monday) with optional `occurrences` 1..5 or -1 (= last), TALQ
  `ccDay` ("first Thursday", "last Sunday of the month");
* neither: the range alone matches.

The date is the site's local calendar day of the evening (the controller maps a
time to it with the configured day start, noon by default, so one night is one
calendar day). Pure; nothing here knows about time zones.
"""

from __future__ import annotations

import calendar as _cal
import datetime as dt
import re
from dataclasses import dataclass

LAST = -1
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DATE_RE = re.compile(r"(?:(\d{4})|-)-(\d{2})-(\d{2})")


@dataclass(frozen=True, slots=True)
class DateSpec:
    """A date: `year` None = every year on month/day."""

    month: int
    day: int
    year: int | None = None

    @classmethod
    def parse(cls, text: str) -> DateSpec:
        """ "YYYY-MM-DD" or "--MM-DD" (TALQ's recurring form); ValueError if neither or not a date."""
        m = _DATE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD or --MM-DD)")
        year = int(m.group(1)) if m.group(1) else None
        month, day = int(m.group(2)), int(m.group(3))
        dt.date(2000 if year is None else year, month, day)  # 2000 is a leap year: --02-29 is allowed; year 0 is not
        return cls(month, day, year)

    def key(self) -> tuple[int, int]:
        return (self.month, self.day)

    def absolute(self) -> dt.date | None:
        """The date, when it has a year (None: it recurs every year)."""
        return None if self.year is None else dt.date(self.year, self.month, self.day)

    def matches(self, d: dt.date) -> bool:
        return d.month == self.month and d.day == self.day and (self.year is None or self.year == d.year)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}" if self.year else f"--{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True, slots=True)
class Rule:
    program: str
    name: str = ""
    dates: tuple[DateSpec, ...] = ()
    weekdays: tuple[int, ...] = ()  # 0 = Monday ... 6 = Sunday
    occurrences: tuple[int, ...] = ()  # 1..5, or LAST (-1); empty = every such weekday
    start: DateSpec | None = None
    end: DateSpec | None = None

    def in_range(self, d: dt.date) -> bool:
        s, e = self.start, self.end
        if s is None and e is None:
            return True
        s_date = None if s is None else s.absolute()
        e_date = None if e is None else e.absolute()
        if (s is None or s_date is not None) and (e is None or e_date is not None):  # no recurring end
            return (s_date is None or d >= s_date) and (e_date is None or d <= e_date)
        lo = s.key() if s is not None else (1, 1)
        hi = e.key() if e is not None else (12, 31)
        k = (d.month, d.day)
        if s is not None and s.year is not None and d.year < s.year:
            return False
        if e is not None and e.year is not None and d.year > e.year:
            return False
        return lo <= k <= hi if lo <= hi else (k >= lo or k <= hi)

    def matches(self, d: dt.date) -> bool:
        if not self.in_range(d):
            return False
        if self.dates:
            return any(x.matches(d) for x in self.dates)
        if self.weekdays:
            if d.weekday() not in self.weekdays:
                return False
            if not self.occurrences:
                return True
            nth = (d.day - 1) // 7 + 1
            last = d.day + 7 > _cal.monthrange(d.year, d.month)[1]
            return nth in self.occurrences or (last and LAST in self.occurrences)
        return True

    def describe(self) -> str:
        if self.name:
            return self.name
        if self.dates:
            return "dates " + ",".join(map(str, self.dates))
        if self.weekdays:
            occ = ",".join("last" if o == LAST else str(o) for o in self.occurrences)
            days = ",".join(WEEKDAYS[w] for w in self.weekdays)
            return f"{occ + ' ' if occ else ''}{days}"
        return f"{self.start or ''}..{self.end or ''}"


@dataclass(frozen=True, slots=True)
class Calendar:
    name: str
    default_program: str
    rules: tuple[Rule, ...] = ()

    def program_for(self, d: dt.date) -> tuple[str, str]:
        """(program name, what chose it: the rule's description or "default")."""
        for rule in self.rules:
            if rule.matches(d):
                return rule.program, rule.describe()
        return self.default_program, "default"


def nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The n-th (1..5, or LAST) `weekday` of a month; ValueError if there is no 5th one."""
    days = [d for d in range(1, _cal.monthrange(year, month)[1] + 1) if dt.date(year, month, d).weekday() == weekday]
    if n == LAST:
        return dt.date(year, month, days[-1])
    if not 1 <= n <= len(days):
        raise ValueError(f"no occurrence {n} of weekday {weekday} in {year}-{month:02d}")
    return dt.date(year, month, days[n - 1])
