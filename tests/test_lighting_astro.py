"""The astronomical clock: tonight's sunset/sunrise at several sites, polar day and
night, sunsets after midnight, DST, GPS refinement, and never a crash."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from agent.control.lighting.astro import HORIZON, AstroClock, GpsFix
from tests.test_lighting_rig import SITES

D = dt.timedelta(days=1)


def clock(site: str) -> AstroClock:
    lat, lon, elev, tz = SITES[site]
    return AstroClock(lat, lon, elev, tz)


def local(a: AstroClock, t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, a.tz)


def year(a: AstroClock, y: int = 2023):
    d = dt.date(y, 1, 1)
    while d.year == y:
        yield a.night_of(d)
        d += D


def test_madinah_every_night_is_normal_and_the_year_has_about_4340_dark_hours():
    a = clock("madinah")
    nights = list(year(a))
    assert {n.kind for n in nights} == {"normal"}
    hours = sum((n.dark_until - n.dark_from) for n in nights) / 3600
    assert 4250 < hours < 4450
    for n in nights:
        ss = local(a, n.sunset)
        assert ss.date() == n.day and dt.time(17, 30) < ss.time() < dt.time(19, 20)
        assert local(a, n.sunrise).date() == n.day + D


def test_spans_join_up_the_whole_year_at_every_site():
    for site in SITES:
        a = clock(site)
        prev = None
        for n in year(a, 2024):
            assert n.noon < n.next_noon
            if prev is not None:
                assert prev.next_noon == n.noon
            if n.dark_from is not None:
                assert n.noon <= n.dark_from < n.dark_until <= n.next_noon
            prev = n


def test_berlin_sunset_moves_smoothly_in_utc_and_jumps_an_hour_in_local_time_at_dst():
    a = clock("berlin")
    for before, after in ((dt.date(2024, 3, 30), dt.date(2024, 3, 31)), (dt.date(2024, 10, 26), dt.date(2024, 10, 27))):
        n0, n1 = a.night_of(before), a.night_of(after)
        assert n0.sunset is not None and n1.sunset is not None
        utc_step = (n1.sunset - n0.sunset) - 86400
        assert abs(utc_step) < 200  # a couple of minutes a day
        local_step = (local(a, n1.sunset).hour * 60 + local(a, n1.sunset).minute) - (
            local(a, n0.sunset).hour * 60 + local(a, n0.sunset).minute
        )
        assert abs(abs(local_step) - 60) < 5
    midsummer = a.night_of(dt.date(2024, 6, 21))
    assert midsummer.sunset is not None
    assert local(a, midsummer.sunset).strftime("%H:%M") in ("21:32", "21:33", "21:34")


def test_tromso_polar_day_and_polar_night_from_the_noon_and_midnight_elevations():
    a = clock("tromso")
    summer = a.night_of(dt.date(2024, 6, 21))
    assert summer.kind == "polar_day" and summer.dark_from is None
    assert summer.midnight_elevation > HORIZON and not summer.dark(summer.noon + 12 * 3600)
    winter = a.night_of(dt.date(2024, 12, 21))
    assert winter.kind == "polar_night" and winter.noon_elevation < HORIZON
    assert winter.dark(winter.noon) and winter.dark(winter.next_noon - 1)
    kinds = {n.kind for n in year(a, 2024)}
    assert kinds == {"normal", "polar_day", "polar_night"}


def test_transition_nights_are_cut_at_the_span_ends_so_darkness_is_continuous():
    a = clock("tromso")
    # around the start of the polar night the sun sets and does not rise before the next noon
    t = a.night_of(dt.date(2024, 11, 25)).noon
    end = a.night_of(dt.date(2024, 12, 5)).noon
    dark_since = None
    while t < end:
        n = a.night_at(t)
        if n.dark(t) and dark_since is None:
            dark_since = t
        t += 600
    assert dark_since is not None
    # once the polar night has begun (Nov 28 here) it stays dark through every span boundary
    t = a.night_of(dt.date(2024, 11, 29)).noon - 1200
    while t < end:
        assert a.night_at(t).dark(t), local(a, t)
        t += 600


def test_reykjavik_sunset_after_midnight_belongs_to_the_evening_before():
    a = AstroClock(64.15, -21.94, 0.0, "Atlantic/Reykjavik")
    n = a.night_of(dt.date(2024, 6, 20))
    assert n.sunset is not None and n.sunrise is not None
    ss, sr = local(a, n.sunset), local(a, n.sunrise)
    assert ss.date() == dt.date(2024, 6, 21) and ss.hour == 0  # after local midnight
    assert sr.date() == dt.date(2024, 6, 21) and sr > ss
    assert n.kind == "normal"


def test_melbourne_and_santiago_have_long_nights_in_june_and_short_in_december():
    for site in ("melbourne", "santiago"):
        a = clock(site)
        june, dec = a.night_of(dt.date(2024, 6, 21)), a.night_of(dt.date(2024, 12, 21))
        assert june.dark_from is not None and june.dark_until is not None
        assert dec.dark_from is not None and dec.dark_until is not None
        assert (june.dark_until - june.dark_from) > (dec.dark_until - dec.dark_from) + 3 * 3600
    a = clock("melbourne")  # DST begins on the first Sunday of October
    n0, n1 = a.night_of(dt.date(2024, 10, 5)), a.night_of(dt.date(2024, 10, 6))
    assert n0.sunset is not None and n1.sunset is not None
    off0, off1 = local(a, n0.sunset).utcoffset(), local(a, n1.sunset).utcoffset()
    assert off0 is not None and off1 is not None  # aware datetimes
    assert off1 - off0 == dt.timedelta(hours=1)


def test_night_at_finds_the_span_holding_a_time():
    a = clock("berlin")
    n = a.night_of(dt.date(2024, 1, 10))
    assert a.night_at(n.noon).day == n.day
    assert a.night_at(n.noon - 1).day == n.day - D
    assert a.night_at(n.next_noon).day == n.day + D
    assert n.dark_from is not None and n.dark_until is not None
    mid = (n.dark_from + n.dark_until) / 2
    assert a.night_at(mid).dark(mid) and a.elevation(mid) < -20


def test_gps_refinement_moves_the_site_within_bounds_only():
    a = clock("berlin")
    before = a.night_of(dt.date(2024, 3, 1)).sunset
    assert before is not None
    assert a.refine(GpsFix(52.52, 13.9, 40.0))  # 34 km east: accepted
    after = a.night_of(dt.date(2024, 3, 1)).sunset
    assert after is not None
    assert after < before - 60  # the sun sets earlier further east
    assert a.refine_note is not None  # every refine() leaves a note
    assert "refined" in a.refine_note
    assert not a.refine(GpsFix(48.14, 11.58))  # Munich: 500 km away, refused
    assert "km from the configured site" in a.refine_note
    assert not a.refine(GpsFix(float("nan"), 13.4)) and "out of range" in a.refine_note
    assert not a.refine("garbage") and "not a position" in a.refine_note
    assert not a.refine(GpsFix(52.52, 13.9, 40.0))  # no change: nothing to do


@hsettings(max_examples=60, deadline=None)
@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-180, 180),
    days=st.integers(0, 365 * 60),
    tz=st.sampled_from(["UTC", "Europe/Oslo", "Pacific/Auckland", "America/Anchorage", "Asia/Kolkata"]),
)
def test_any_place_and_date_gives_a_consistent_night_and_never_raises(lat, lon, days, tz):
    a = AstroClock(lat, lon, 0.0, tz)
    n = a.night_of(dt.date(2000, 1, 1) + dt.timedelta(days=days))
    assert n.kind in ("normal", "polar_day", "polar_night")
    if n.dark_from is not None:
        assert n.dark_until is not None
        assert n.noon <= n.dark_from < n.dark_until <= n.next_noon
        mid = (n.dark_from + n.dark_until) / 2
        assert a.elevation(mid) < 1.0  # the middle of the dark interval is not daylight
    else:
        assert a.elevation(n.noon) > HORIZON - 1.0
    assert a.night_at(n.noon) == n and a.night_at(n.next_noon - 1) == n
