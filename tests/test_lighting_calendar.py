"""Calendars: ordered rules on dates, ranges, weekdays with nth/last occurrences, the
default program, and the calendar day of a night (noon to noon) in the controller."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.control.lighting.calendar import LAST, Calendar, DateSpec, Rule, nth_weekday
from agent.control.lighting.programs import Program
from tests.test_lighting_rig import Rig, dimmed, settings, ts

THU, SAT, SUN = 3, 5, 6


def test_first_thursday_and_last_sunday_of_the_month():
    first_thu = Rule("p", weekdays=(THU,), occurrences=(1,))
    assert first_thu.matches(dt.date(2024, 3, 7))
    assert not first_thu.matches(dt.date(2024, 3, 14)) and not first_thu.matches(dt.date(2024, 3, 8))
    last_sun = Rule("p", weekdays=(SUN,), occurrences=(LAST,))
    assert last_sun.matches(dt.date(2024, 3, 31)) and last_sun.matches(dt.date(2024, 2, 25))
    assert not last_sun.matches(dt.date(2024, 3, 24))
    fifth_fri = Rule("p", weekdays=(4,), occurrences=(5,))
    assert fifth_fri.matches(dt.date(2024, 3, 29)) and not fifth_fri.matches(dt.date(2024, 4, 26))
    second_or_last_sat = Rule("p", weekdays=(SAT,), occurrences=(2, LAST))
    hits = [d for d in range(1, 31) if second_or_last_sat.matches(dt.date(2024, 11, d))]
    assert hits == [9, 30]


def test_nth_weekday_helper_agrees_with_the_rules():
    for month in range(1, 13):
        for wd in range(7):
            for n in (1, 2, 3, 4, LAST):
                d = nth_weekday(2025, month, wd, n)
                assert Rule("p", weekdays=(wd,), occurrences=(n,)).matches(d)
    with pytest.raises(ValueError):
        nth_weekday(2024, 2, 0, 5)


def test_rule_order_is_priority_and_the_default_program_fills_the_rest():
    cal = Calendar(
        "c",
        "normal",
        (
            Rule("xmas", dates=(DateSpec.parse("--12-24"), DateSpec.parse("--12-25"))),
            Rule("weekend", weekdays=(4, 5)),
            Rule("once", dates=(DateSpec.parse("2024-07-01"),)),
        ),
    )
    assert cal.program_for(dt.date(2026, 12, 25))[0] == "xmas"
    assert cal.program_for(dt.date(2020, 12, 25))[0] == "xmas"  # recurring
    assert cal.program_for(dt.date(2027, 12, 24))[0] == "xmas"  # a Friday: the earlier rule wins
    assert cal.program_for(dt.date(2024, 7, 5))[0] == "weekend"
    assert cal.program_for(dt.date(2024, 7, 1)) == ("once", "dates 2024-07-01")
    assert cal.program_for(dt.date(2025, 7, 1)) == ("normal", "default")


def test_ranges_recurring_absolute_and_across_the_new_year():
    winter = Rule("w", start=DateSpec.parse("--11-01"), end=DateSpec.parse("--02-28"))
    assert winter.matches(dt.date(2024, 12, 31)) and winter.matches(dt.date(2025, 1, 15))
    assert not winter.matches(dt.date(2025, 3, 1)) and not winter.matches(dt.date(2025, 10, 31))
    summer_sundays = Rule("s", weekdays=(SUN,), start=DateSpec.parse("--06-01"), end=DateSpec.parse("--08-31"))
    assert summer_sundays.matches(dt.date(2024, 6, 2)) and not summer_sundays.matches(dt.date(2024, 5, 26))
    works = Rule("roadworks", start=DateSpec.parse("2024-05-01"), end=DateSpec.parse("2024-05-31"))
    assert works.matches(dt.date(2024, 5, 15)) and not works.matches(dt.date(2025, 5, 15))
    leap = Rule("leap", dates=(DateSpec.parse("--02-29"),))
    assert leap.matches(dt.date(2024, 2, 29))
    for bad in ("2024-02-30", "12-24", "--13-01", "tomorrow"):
        with pytest.raises(ValueError):
            DateSpec.parse(bad)


def test_a_night_belongs_to_the_calendar_day_of_its_evening():
    progs = {
        "normal": Program("normal", period="absolute", on=dt.time(18), off=dt.time(6), level=50.0),
        "weekend": Program("weekend", period="absolute", on=dt.time(18), off=dt.time(6), level=90.0),
    }
    cal = {"main": Calendar("main", "normal", (Rule("weekend", name="fri+sat", weekdays=(4, 5)),))}
    rig = Rig(
        "berlin",
        settings(programs=progs, calendars=cal, photocell=False, segments=[dimmed()]),
        start=ts(2024, 3, 8, 12, 30, tz="Europe/Berlin"),
    )  # Friday 12:30
    rig.run(10 * 3600, 60)  # Friday 22:30
    assert rig.decision().reason == "program:weekend" and rig.decision().level == 90
    rig.run(6 * 3600, 60)  # Saturday 04:30: still Friday's night
    assert rig.decision().reason == "program:weekend" and rig.decision().on
    rig.run(2 * 86400, 60)  # Monday 04:30: Sunday's night is a normal one
    assert rig.local().strftime("%a %H") == "Mon 04"
    assert rig.decision().reason == "program:normal" and rig.decision().level == 50
