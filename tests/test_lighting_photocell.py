"""The photocell: hysteresis and delays, trusted only inside the astronomical window,
and every lux sensor fault kind degrading the lighting to the astronomical clock."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.control.lighting.photocell import Photocell, PhotocellSettings
from agent.control.lighting.programs import Program
from tests.test_lighting_rig import LUX, Rig, settings, ts

S = PhotocellSettings(LUX)


def feed(pc: Photocell, values, start: float = 0.0, dt_s: float = 1.0, phase=None) -> float:
    t = start
    for v in values:
        pc.update(t, (float(v), "good", 0.5) if isinstance(v, (int, float)) else v, phase)
        t += dt_s
    return t


def test_hysteresis_with_on_and_off_delays():
    pc = Photocell(S)
    t = feed(pc, [200])
    assert pc.dark is False and pc.healthy
    t = feed(pc, [30] * 90, t)  # 90 samples: 89 s below the on-level
    assert pc.dark is False
    t = feed(pc, [30], t)
    assert pc.dark is True
    t = feed(pc, [50] * 300, t)  # between the levels: no change however long
    assert pc.dark is True
    t = feed(pc, [60] * 60 + [40] + [60] * 89, t)  # a dip restarts the off-delay
    assert pc.dark is True
    feed(pc, [60] * 2, t)
    assert pc.dark is False


def test_headlights_and_clouds_shorter_than_the_delay_do_not_switch():
    pc = Photocell(S)
    t = feed(pc, [5])
    assert pc.dark
    t = feed(pc, ([5] * 20 + [3000] * 30) * 20, t)  # 30-s flashes of light
    assert pc.dark


def test_the_first_value_decides_at_once_in_the_middle_by_the_midpoint():
    for lux, dark in ((10, True), (40, True), (50, False), (500, False)):
        pc = Photocell(S)
        feed(pc, [lux])
        assert pc.dark is dark, lux


@pytest.mark.parametrize(
    "sample,kind",
    [
        (None, "missing"),
        ((12.0, "bad", 0.5), "bad"),
        ((12.0, "substituted", 0.5), "bad"),
        ((float("nan"), "good", 0.5), "bad"),
        (("12", "good", 0.5), "bad"),
        ((True, "good", 0.5), "bad"),
        ((12.0, "stale", 40.0), "stale"),
        ((12.0, "good", 600.0), "stale"),
        ((-5.0, "good", 0.5), "out-of-range"),
        ((250_000.0, "good", 0.5), "out-of-range"),
        ("garbage", "bad"),
    ],
)
def test_each_fault_kind_is_declared_after_the_fault_delay_and_recovers(sample, kind):
    pc = Photocell(S)
    t = feed(pc, [300])
    t = feed(pc, [sample] * 29, t)
    assert pc.fault is None  # a short glitch is no fault
    t = feed(pc, [sample] * 2, t)
    assert pc.fault == kind and not pc.healthy
    t = feed(pc, [8] * 59, t)
    assert pc.fault == kind  # good values for less than recover_s
    feed(pc, [8] * 2, t)
    assert pc.fault is None and pc.healthy and pc.dark is True


def test_stuck_is_a_value_unchanged_from_day_into_night():
    pc = Photocell(S)
    t = feed(pc, [120.0] * 3600, phase="day", dt_s=10)
    assert pc.healthy  # unchanged during the day alone is fine
    t = feed(pc, [120.0] * 10, t, phase="twilight", dt_s=10)
    assert pc.healthy
    t = feed(pc, [120.0], t, phase="night", dt_s=10)
    assert pc.fault == "stuck"
    t = feed(pc, [0.4] * 7, t, phase="night", dt_s=10)  # it moves again: trusted after recover_s
    assert pc.healthy and pc.dark


def test_constant_darkness_through_a_polar_night_is_not_stuck_with_a_clock_but_is_without():
    pc = Photocell(S)
    feed(pc, [0.0] * 24 * 60 * 3, phase="night", dt_s=60)  # three days of polar night
    assert pc.healthy
    pc = Photocell(S)
    feed(pc, [0.0] * 31 * 60, phase=None, dt_s=60)  # no clock: 31 h unchanged is stuck
    assert pc.fault == "stuck"


def photocell_rig(**kw) -> Rig:
    prog = Program("evening", period="astro+sensor")
    return Rig("berlin", settings(programs=[prog]), start=ts(2024, 1, 15, 12, tz="Europe/Berlin"), **kw)


@pytest.mark.parametrize("fault", [None, (5.0, "bad", 1.0), (5.0, "stale", 100.0), (-1.0, "good", 1.0)])
def test_a_faulty_lux_sensor_degrades_to_the_astronomical_clock_and_says_so(fault):
    rig = photocell_rig()
    rig.run(600, 10)
    assert rig.decision().detail == "astro"  # daylight, outside the window
    rig.lux = fault
    rig.run(120, 10)
    assert rig.active("lighting.lux_sensor")
    assert any(e.kind == "photocell" and "astronomical clock" in e.message for e in rig.events)
    night = rig.ctl.astro.night_of(dt.date(2024, 1, 15))
    assert night.sunset is not None
    rig.run(night.sunset + 60 - rig.t, 10)
    d = rig.decision()
    assert d.on and d.detail.startswith("astro-fallback") and d.reason == "program:evening"
    rig.lux = "sun"
    rig.run(120, 10)
    assert not rig.active("lighting.lux_sensor")


def test_a_stuck_lux_sensor_is_found_and_the_lights_still_come_on():
    rig = photocell_rig()
    rig.lux = 800.0  # frozen at an afternoon value
    night = rig.ctl.astro.night_of(dt.date(2024, 1, 15))
    assert night.sunset is not None
    rig.run(night.sunset + 30 * 60 - rig.t, 30)
    assert rig.decision().on  # the astro backstop at sunset + 30 min
    rig.run(3600, 30)
    assert rig.active("lighting.lux_sensor")
    assert rig.ctl.photocell is not None
    assert rig.ctl.photocell.fault == "stuck"


def test_the_photocell_is_trusted_only_inside_the_astronomical_window():
    rig = photocell_rig()
    rig.lux = 2.0  # a covered sensor at noon
    rig.run(1800, 10)
    assert not rig.decision().on
    night = rig.ctl.astro.night_of(dt.date(2024, 1, 15))
    rig.lux = "sun"
    assert night.dark_from is not None and night.dark_until is not None
    rig.run((night.dark_from + night.dark_until) / 2 - rig.t, 60)
    rig.lux = 5000.0  # headlights / a torch at midnight, for a short while
    rig.run(20, 10)
    assert rig.decision().on and rig.decision().detail == "astro-backstop"  # deep night: the photocell has no say
    assert rig.ctl.status(rig.t)["photocell"]["fault"] is None  # shorter than fault_delay_s
    rig.run(600, 10)  # daylight with the sun far below the horizon: the sensor is not believed
    assert rig.decision().on and rig.decision().detail == "astro-fallback"
    assert rig.ctl.status(rig.t)["photocell"]["fault"] == "implausible"


def test_the_photocell_switches_on_early_on_a_dark_afternoon_inside_the_window():
    rig = photocell_rig()
    night = rig.ctl.astro.night_of(dt.date(2024, 1, 15))
    assert night.sunset is not None
    rig.run(night.sunset - 40 * 60 - rig.t, 60)
    rig.lux = 10.0  # a thunderstorm 40 min before sunset
    rig.run(120, 10)
    assert rig.decision().on and rig.decision().detail.startswith("photocell")
