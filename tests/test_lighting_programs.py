"""Programs through the controller: whole nights at several sites, astro offsets,
fixed-time dimming across DST, astro steps, boost with hold time and `max`, ramps,
polar day and night."""

from __future__ import annotations

import datetime as dt

from agent.control.lighting.model import Actuation
from agent.control.lighting.programs import AstroStep, Boost, Program, Step, local_instant
from tests.test_lighting_rig import EVENING, Recorder, Rig, dimmed, settings, ts

NO_WAIT = Actuation(min_switch_interval_s=0, warm_up_s=0, settle_s=0)


def astro(**kw) -> Program:
    return Program("night", period="astro", **kw)


def test_madinah_a_whole_night_on_near_sunset_dimming_followed_off_after_sunrise():
    rig = Recorder(
        "madinah",
        settings(segments=[dimmed()], programs={"evening": EVENING}),
        start=ts(2024, 4, 10, 12, tz="Asia/Riyadh"),
    )
    night = rig.ctl.astro.night_of(dt.date(2024, 4, 10))
    assert night.sunset is not None and night.sunrise is not None
    levels = {}
    while rig.t < ts(2024, 4, 11, 11, tz="Asia/Riyadh"):
        rig.step(20)
        levels[rig.local().strftime("%H:%M")] = rig.decision().level
    (t_on, on), (t_off, off) = rig.switches["seg1"][1:3]
    assert on and not off
    assert night.sunset - 45 * 60 <= t_on <= night.sunset + 30 * 60  # photocell inside the astro window
    assert night.sunrise - 30 * 60 <= t_off <= night.sunrise + 45 * 60
    assert levels["21:00"] == 100 and levels["23:00"] == 70 and levels["03:00"] == 40 and levels["05:40"] == 100
    assert levels["10:00"] == 0


def test_berlin_astro_offsets_switch_within_a_step_of_sunset_and_sunrise():
    prog = astro(sunset_offset_min=15, sunrise_offset_min=-15)
    rig = Recorder(
        "berlin",
        settings(programs=[prog], photocell=False, actuation=NO_WAIT),
        start=ts(2024, 1, 15, 12, tz="Europe/Berlin"),
    )
    rig.run(86400, 30)
    night = rig.ctl.astro.night_of(dt.date(2024, 1, 15))
    assert night.sunset is not None and night.sunrise is not None
    (t_on, _), (t_off, _) = rig.switches["seg1"][1:3]
    assert abs(t_on - (night.sunset + 900)) <= 30 and abs(t_off - (night.sunrise - 900)) <= 30


def test_fixed_steps_follow_local_time_across_both_dst_changes():
    prog = Program(
        "dim",
        period="absolute",
        on=dt.time(18),
        off=dt.time(7),
        steps=(Step(dt.time(18), 100.0), Step(dt.time(2, 30), 30.0), Step(dt.time(4), 60.0)),
    )
    tz = "Europe/Berlin"
    for day in (30, 31):  # the night into Sunday 31 March 2024: 02:00 CET -> 03:00 CEST
        rig = Rig(
            "berlin",
            settings(segments=[dimmed()], programs=[prog], photocell=False, actuation=NO_WAIT),
            start=ts(2024, 3, day - 1, 23, tz=tz),
        )
        seen = {}
        while rig.t < ts(2024, 3, day, 5, tz=tz):
            rig.step(60)
            seen[rig.t] = rig.decision().level
        gap = day == 31
        # in the gap the 02:30 step takes effect when the clock jumps over it (03:00 CEST)
        t_step = ts(2024, 3, 31, 1, 0, tz="UTC") if gap else ts(2024, 3, day, 2, 30, tz=tz)
        assert seen[t_step - 60] == 100 and seen[t_step] == 30, (day, sorted(seen.items())[:5])
        assert seen[ts(2024, 3, day, 4, 0, tz=tz)] == 60
    rig = Rig(
        "berlin",
        settings(segments=[dimmed()], programs=[prog], photocell=False, actuation=NO_WAIT),
        start=ts(2024, 10, 26, 23, tz=tz),
    )  # 27 October: 03:00 CEST -> 02:00 CET, 02:30 happens twice
    seen = {}
    while rig.t < ts(2024, 10, 27, 5, tz=tz):
        rig.step(60)
        seen[rig.t] = rig.decision().level
    first = ts(2024, 10, 27, 0, 30, tz="UTC")  # 02:30 CEST
    assert seen[first - 60] == 100 and seen[first] == 30
    assert seen[first + 3600] == 30  # 02:30 CET again: still 30, no step back
    assert seen[ts(2024, 10, 27, 4, 0, tz=tz)] == 60


def test_local_instant_of_a_gap_time_is_the_jump_and_of_a_repeated_time_the_first():
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    assert local_instant(dt.date(2024, 3, 31), dt.time(2, 30), tz) == ts(2024, 3, 31, 1, 0)
    assert local_instant(dt.date(2024, 10, 27), dt.time(2, 30), tz) == ts(2024, 10, 27, 0, 30)
    assert local_instant(dt.date(2024, 6, 1), dt.time(22), tz) == ts(2024, 6, 1, 20, 0)


def test_astro_steps_override_the_fixed_state_from_their_event_on():
    prog = astro(
        steps=(Step(dt.time(0), 40.0),), astro_steps=(AstroStep("sunset", 0, 100.0), AstroStep("sunrise", -60, 80.0))
    )
    rig = Rig(
        "berlin",
        settings(segments=[dimmed()], programs=[prog], photocell=False, actuation=NO_WAIT),
        start=ts(2024, 1, 15, 12, tz="Europe/Berlin"),
    )
    night = rig.ctl.astro.night_of(dt.date(2024, 1, 15))
    assert night.sunset is not None and night.sunrise is not None
    seen = {}
    while rig.t < night.sunrise + 600:
        rig.step(60)
        seen[rig.t] = rig.decision().level
    at = lambda t: seen[max(k for k in seen if k <= t)]  # noqa: E731
    assert at(night.sunset + 120) == 100
    assert at(ts(2024, 1, 16, 1, tz="Europe/Berlin")) == 40
    assert at(night.sunrise - 50 * 60) == 80


def test_boost_raises_with_max_holds_then_falls_back_and_never_dims():
    prog = astro(
        steps=(Step(dt.time(12), 100.0), Step(dt.time(22), 30.0)),
        boost=Boost("dio.motion", level=80.0, hold_s=300, operation="max", max_s=1800),
    )
    rig = Rig(
        "berlin",
        settings(segments=[dimmed()], programs=[prog], photocell=False, actuation=NO_WAIT),
        start=ts(2024, 1, 15, 20, tz="Europe/Berlin"),
    )
    rig.motion["dio.motion"] = True
    rig.step(5)
    assert rig.decision().level == 100 and "boost" not in rig.decision().detail  # max never lowers 100
    rig.motion["dio.motion"] = False
    rig.run(3 * 3600, 60)  # 23:00: dimmed to 30
    assert rig.decision().level == 30
    rig.motion["dio.motion"] = True
    rig.step(1)
    assert rig.decision().level == 80 and rig.decision().detail.endswith("+boost")
    rig.motion["dio.motion"] = False
    rig.run(290, 10)
    assert rig.decision().level == 80  # held
    rig.run(20, 10)
    assert rig.decision().level == 30
    # a motion input stuck at "detected" boosts for max_s, then is ignored and reported
    rig.motion["dio.motion"] = True
    rig.run(1700, 10)
    assert rig.decision().level == 80
    rig.run(500, 10)
    assert rig.decision().level == 30 and rig.active("lighting.boost.night")
    rig.motion["dio.motion"] = False
    rig.step(1)
    assert not rig.active("lighting.boost.night")


def test_boost_does_not_light_a_segment_outside_its_program():
    prog = astro(boost=Boost("dio.motion", level=100.0))
    rig = Rig(
        "berlin",
        settings(programs=[prog], photocell=False, actuation=NO_WAIT),
        start=ts(2024, 1, 15, 12, tz="Europe/Berlin"),
    )
    rig.motion["dio.motion"] = True
    rig.run(600, 10)
    assert not rig.decision().on


def test_ramp_down_is_linear_over_the_ramp_time():
    prog = Program(
        "dim",
        period="absolute",
        on=dt.time(18),
        off=dt.time(7),
        ramp_down_s=100.0,
        steps=(Step(dt.time(18), 100.0), Step(dt.time(22), 40.0)),
    )
    rig = Rig(
        "berlin",
        settings(segments=[dimmed()], programs=[prog], photocell=False, actuation=NO_WAIT),
        start=ts(2024, 1, 15, 21, 59, tz="Europe/Berlin"),
    )
    rig.run(60, 1)
    assert rig.decision().level == 100
    rig.run(50, 1)
    assert 65 <= rig.decision().level <= 75 and "ramp" in rig.decision().detail
    rig.run(60, 1)
    assert rig.decision().level == 40


def test_tromso_polar_night_lights_on_all_day_and_polar_day_off_all_night():
    prog = astro(sunset_offset_min=-10, sunrise_offset_min=10)
    rig = Rig("tromso", settings(programs=[prog], photocell=False), start=ts(2024, 12, 15, 0, tz="UTC"))
    ons = [rig.step(600).decisions["seg1"].on for _ in range(6 * 24 * 3)]
    assert all(ons[1:])
    rig = Rig("tromso", settings(programs=[prog], photocell=False), start=ts(2024, 6, 15, 0, tz="UTC"))
    ons = [rig.step(600).decisions["seg1"].on for _ in range(6 * 24 * 3)]
    assert not any(ons)


def test_southern_hemisphere_year_of_astro_lighting_burns_about_4300_hours():
    rig = Rig("melbourne", settings(programs=[astro()], photocell=False), start=ts(2023, 1, 1, 0, tz="UTC"))
    rig.run(365 * 86400, 300)
    burned = rig.ctl.state()["segments"]["seg1"]["burning_h"]
    assert 4200 < burned < 4450
