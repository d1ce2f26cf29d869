"""The pure climate controller with a simulated clock: thermostats and stages,
minimum on/off times and trips, the heater's dew-point rules, sensor failures,
door, flood, UPS and their shedding order, fan-failure detection, and its alarms."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from agent.control.climate.controller import ClimateController, take_snapshot
from agent.control.climate.parts import Debounce, Switch, dew_point_c, rh_from_dew_point, saturation_vp_hpa
from agent.control.climate.settings import FanCheck, FanSettings, Limits, SensorSettings, UpsSettings
from agent.field.image import ProcessImage
from agent.model import Point, Quality, Reading
from tests.climate_rig import DOOR, FAN, FAN2, FLOOD, HEATER, LOW, ON_BATT, REPL, RH, Rig, T, settings

NO_MIN = dict(min_on_s=0.0, min_off_s=0.0)

# ---- dew point ---------------------------------------------------------------------------

# (T °C, RH %, Td °C): Rittal's dew-point table [S11] and Sensirion's application note
# examples [S12], both in domain.md §6.1-6.2.
KNOWN = [(35, 40, 19.38), (35, 80, 31.03), (25, 71, 19.38), (25, 10, -8.77), (50, 90, 47.90)]


@pytest.mark.parametrize("t, rh, td", KNOWN)
def test_dew_point_matches_published_values(t, rh, td):
    assert dew_point_c(t, rh) == pytest.approx(td, abs=0.011)


@pytest.mark.parametrize("t", [-10, 0, 5, 15, 25, 35, 45, 55])
@pytest.mark.parametrize("rh", [10, 30, 50, 70, 90, 100])
def test_dew_point_against_independent_computations(t, rh):
    td = dew_point_c(t, rh)
    # 1. by definition: the saturation pressure at Td is RH of the one at T (bisection, no closed form)
    lo, hi, target = -80.0, float(t), rh / 100 * saturation_vp_hpa(t)
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if saturation_vp_hpa(mid) < target else (lo, mid)
    assert td == pytest.approx(lo, abs=1e-6)
    # 2. Alduchov-Eskridge constants (17.625 / 243.04): within 0.1 K over the cabinet range (domain.md §6.2)
    g = math.log(rh / 100) + 17.625 * t / (243.04 + t)
    assert td == pytest.approx(243.04 * g / (17.625 - g), abs=0.1)
    assert rh_from_dew_point(t, td) == pytest.approx(rh, rel=1e-9)


def test_dew_point_clamps_impossible_humidity():
    assert dew_point_c(20, 0) < -60 and dew_point_c(20, 120) == pytest.approx(20.0)


# ---- building blocks ----------------------------------------------------------------------


def test_switch_minimum_times_and_trip():
    sw = Switch("p", min_on_s=60, min_off_s=120)
    assert sw.apply(0, True) is True and sw.switches == 0  # first decision: no wait
    assert sw.apply(30, False) is True and sw.held_until == 60
    assert sw.apply(60, False) is False and sw.held_until is None
    assert sw.apply(100, True) is False and sw.held_until == 180
    assert sw.apply(101, True, trip=True) is True and sw.switches == 2


def test_debounce():
    d = Debounce(1.0)
    assert d.update(0, False) is False
    assert d.update(0.1, True) is False and d.pending_until() == pytest.approx(1.1)
    assert d.update(0.6, False) is False and d.pending_until() is None  # a bounce
    assert d.update(1.0, True) is False
    assert d.update(2.0, True) is True


# ---- fans ---------------------------------------------------------------------------------


def test_fan_thermostat_hysteresis_without_chatter():
    r = Rig(settings(**NO_MIN), t=25.0)
    temps = [34.9, 35.0, 34.8, 35.2, 31.0, 34.9, 30.1, 30.0, 30.4, 34.9, 29.0]
    states = []
    for i, t in enumerate(temps):
        r.set(T, t)
        states.append(r.step(float(i)).outputs[0].on)
    assert states == [False, True, True, True, True, True, True, False, False, False, False]
    assert [s[1] for s in r.switches[FAN]] == [False, True, False]


def test_staged_fans():
    fans = (FanSettings("fan1", FAN, 35, 30), FanSettings("fan2", FAN2, 40, 35))
    r = Rig(settings(fans=fans, **NO_MIN), t=37)
    seen = []
    for t in (37, 41, 38, 36, 35, 31, 30):
        r.set(T, t)
        r.step(r.now + 1)
        seen.append((r.on(FAN), r.on(FAN2)))
    assert seen == [
        (True, False),
        (True, True),
        (True, True),
        (True, True),
        (True, False),
        (True, False),
        (False, False),
    ]


def test_minimum_on_and_off_times_hold_changes():
    r = Rig(settings(min_on_s=60, min_off_s=90, heater=None), t=36)
    assert r.step(0).outputs[0].on
    r.set(T, 29)
    d = r.step(10).outputs[0]
    assert d.on and d.held_until == 60 and "minimum time" in d.reason and not d.trip
    assert r.last.wake_at == 5.0 + 10 or r.last.wake_at <= 60  # never later than the held change
    assert r.run(59).outputs[0].on
    assert not r.step(60).outputs[0].on
    r.set(T, 36)
    assert not r.step(61).outputs[0].on and r.out(FAN).held_until == 150
    assert r.run(150).outputs[0].on
    assert [t for t, _, _ in r.switches[FAN]] == [0, 60, 150]


def test_over_temperature_trip_bypasses_minimum_times():
    r = Rig(settings(min_on_s=600, min_off_s=600), t=20, rh=80)  # damp: heater on
    r.step(0)
    assert r.on(HEATER) and not r.on(FAN)
    r.set(T, 50.0)
    st = r.step(5)
    assert r.on(FAN) and r.out(FAN).trip and "trip" in r.out(FAN).reason
    assert not r.on(HEATER) and r.out(HEATER).trip
    r.set(T, 46.0)  # inside the trip band (ends at 45)
    assert r.step(10).outputs[0].trip
    r.set(T, 44.0)  # the trip ends; the thermostat wants the fan on anyway
    d = r.step(15).outputs[0]
    assert d.on and not d.trip
    assert st.mode == "normal"


# ---- minimum times: a property ----------------------------------------------------------------


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.5, 40.0), st.floats(-15.0, 60.0), st.floats(5.0, 100.0), st.booleans(), st.booleans()),
        min_size=5,
        max_size=80,
    )
)
def test_no_output_switches_faster_than_its_minimum_time_except_for_trips(steps):
    fans = (FanSettings("fan1", FAN, 35, 30), FanSettings("fan2", FAN2, 40, 35, min_on_s=120))
    flood = settings().flood
    assert flood is not None
    s = settings(
        fans=fans,
        min_on_s=60,
        min_off_s=90,
        flood=dataclasses.replace(flood, shed=(HEATER, FAN2), release_s=30),
    )
    r = Rig(s)
    for dt, t, rh, flood, on_batt in steps:
        r.set(T, t)
        r.set(RH, rh)
        r.set(FLOOD, flood)
        r.set(ON_BATT, on_batt)
        r.step(r.now + dt)
    mins = {FAN: (60, 90), FAN2: (120, 90), HEATER: (60, 90)}
    for point, hist in r.switches.items():
        for (t0, on0, _), (t1, _on1, trip1) in itertools.pairwise(hist):
            if not trip1:
                assert t1 - t0 >= (mins[point][0] if on0 else mins[point][1]) - 1e-9, (point, hist)


# ---- heater ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t, rh, on, why",
    [
        (20, 50, False, "dry"),  # margin 10.7 K
        (20, 72, True, "condensation"),  # RH > 70 %
        (15, 85, True, "condensation"),  # margin 2.4 K < 3 K
        (25, 69, False, "dry"),  # margin 5.7 K, RH just under 70
        (4, 30, True, "minimum"),  # below 5 °C
        (5, 30, True, "minimum"),  # at 5 °C
        (31, 95, False, "blocked"),  # never at or above 30 °C
    ],
)
def test_heater_rules(t, rh, on, why):
    r = Rig(settings(**NO_MIN), t=t, rh=rh)
    d = r.step(0).outputs[1]
    assert d.point == HEATER and d.on is on and why in d.reason


def test_heater_hysteresis_on_margin_and_rh():
    r = Rig(settings(**NO_MIN), t=15.0, rh=85.0)  # margin 2.4 K: on
    assert r.step(0).outputs[1].on
    for rh, expect in [
        (75.0, True),  # margin 4.4 K, RH 75: not yet off
        (65.0, True),  # margin 6.5 K but RH 65 >= 60: stays on
        (59.0, False),  # margin 7.9 K and RH 59: off
        (68.0, False),  # margin 5.5 K, RH 68: not yet on again
        (81.0, True),
    ]:  # margin 3.0 K... and RH > 70: on
        r.set(RH, rh)
        assert r.step(r.now + 1).outputs[1].on is expect, rh


def test_heater_minimum_temperature_band():
    r = Rig(settings(**NO_MIN), t=4.0, rh=30.0)
    assert r.step(0).outputs[1].on
    r.set(T, 7.9)
    assert r.step(1).outputs[1].on
    r.set(T, 8.0)
    assert not r.step(2).outputs[1].on


# ---- sensor failure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, apply",
    [
        ("bad", lambda r: r.set(T, None, "bad")),
        ("stale", lambda r: r.set(T, 20.0, "stale")),
        ("stale", lambda r: r.set(T, 20.0, "good", age=600.0)),
        ("no value", lambda r: r.snap.pop(T)),
        ("out of range", lambda r: r.set(T, 85.0)),
        ("out of range", lambda r: r.set(T, -45.0)),
        ("not a number", lambda r: r.set(T, float("nan"))),
    ],
)
def test_failed_temperature_sensor_gives_the_safe_state(kind, apply):
    r = Rig(settings(min_on_s=0, min_off_s=0), t=20.0, rh=50.0)
    r.run(10)
    assert not r.on(FAN) and r.last.mode == "normal"
    apply(r)
    r.run(39)  # a fault is confirmed after 30 s; until then the last good value is used
    assert not r.on(FAN) and r.last.mode == "normal" and "climate.temperature_sensor_failed" not in r.raised()
    r.run(45)
    assert r.last.mode == "safe" and r.on(FAN) and "safe state" in r.out(FAN).reason
    assert "climate.temperature_sensor_failed" in r.active()
    ev = next(e for e in r.events if e.alarm_id == "climate.temperature_sensor_failed")
    assert ev.severity == "critical" and kind in ev.message
    # recovery
    r.set(T, 20.0)
    r.run(46)
    assert r.last.mode == "normal" and not r.on(FAN)
    r.run(200)
    assert "climate.temperature_sensor_failed" not in r.active()


def test_stuck_sensor():
    s = settings(sensor=SensorSettings(stuck_s=3600.0), **NO_MIN)
    r = Rig(s, t=22.0)
    r.run(3590, dt=10)
    assert r.last.mode == "normal"
    r.run(3640, dt=10)
    assert r.last.mode == "safe" and "stuck at 22" in r.ctl.status()["temperature_fault"]
    r.set(T, 22.1)
    assert r.step(3650).mode == "normal"


def test_heater_follows_the_last_good_reading_for_a_bounded_time():
    s = settings(sensor=SensorSettings(hold_s=600.0), **NO_MIN)
    r = Rig(s, t=10.0, rh=90.0)  # margin 1.6 K: heater on
    r.step(0)
    assert r.on(HEATER)
    r.set(T, None, "bad")
    r.set(RH, None, "bad")
    r.run(300, dt=10)
    assert r.last.mode == "safe" and r.on(HEATER) and r.on(FAN) and "last good" in r.out(HEATER).reason
    r.run(590, dt=10)
    assert r.on(HEATER)
    r.run(610, dt=10)
    assert not r.on(HEATER) and "failed more than 600 s ago" in r.out(HEATER).reason
    assert r.on(FAN)


def test_failed_humidity_sensor_uses_the_last_dew_point_with_the_current_temperature():
    r = Rig(settings(**NO_MIN), t=12.0, rh=80.0)  # Td 8.7 °C, margin 3.3 K, RH 80: on
    r.step(0)
    assert r.on(HEATER)
    r.set(RH, None, "bad")
    r.run(40)
    assert r.ctl.status()["humidity_fault"] == "bad" and r.last.mode == "normal"
    assert "climate.humidity_sensor_failed" in r.active()
    r.set(T, 16.0)  # same water content, warmer: margin 7.3 K, RH 61 %: still on (RH >= 60)
    assert r.step(41).outputs[1].on and "last good dew point" in r.out(HEATER).reason
    r.set(T, 17.0)  # margin 8.3 K, RH 57 %: off
    assert not r.step(42).outputs[1].on


def test_no_decisions_from_nothing_at_start():
    r = Rig(settings())
    r.snap.pop(T)
    r.snap.pop(RH)
    st = r.step(0)
    assert st.mode == "starting" and not any(d.on for d in st.outputs)
    assert all("waiting" in d.reason for d in st.outputs)
    r.run(31)
    assert r.last.mode == "safe" and not r.on(FAN) and r.out(FAN).held_until == 60  # safe state is no trip
    r.run(60)
    assert r.on(FAN)


# ---- door, flood, UPS ---------------------------------------------------------------------


def test_door_debounce_and_open_too_long():
    r = Rig(settings())
    r.run(5)
    r.set(DOOR, True)
    r.step(5.5)
    r.set(DOOR, False)  # a 0.5 s bounce
    r.run(10, dt=0.5)
    assert "climate.door_open" not in r.raised()
    r.set(DOOR, True)
    r.step(10.5)
    assert r.last.wake_at == pytest.approx(11.5)
    r.run(11.5, dt=0.5)
    assert r.raised() == ["climate.door_open"]
    r.run(10.5 + 899, dt=10)
    assert "climate.door_open_too_long" not in r.raised()
    r.run(10.5 + 920, dt=10)
    assert "climate.door_open_too_long" in r.raised()
    r.set(DOOR, False)
    r.run(r.now + 2)
    assert not r.active()


def test_door_may_stop_the_fans():
    door = settings().door
    assert door is not None
    s = settings(door=dataclasses.replace(door, stops_fans=True), **NO_MIN)
    r = Rig(s, t=36)
    assert r.step(0).outputs[0].on
    r.set(DOOR, True)
    r.run(3)
    assert not r.on(FAN) and "door open" in r.out(FAN).reason
    r.set(T, 50)  # but never against the over-temperature trip
    assert r.step(4).outputs[0].on


def test_flood_alarms_at_once_sheds_loads_and_latches():
    r = Rig(settings(min_on_s=600, min_off_s=600), t=10, rh=90)  # heater on
    r.run(10)
    assert r.on(HEATER)
    r.set(FLOOD, True)
    st = r.step(11)
    assert r.raised() == ["climate.flood"] and r.events[-1].severity == "critical"
    assert st.shed == {HEATER: "flood: load shed", "relays.relay_1": "flood: load shed"}
    assert not r.on(HEATER) and r.out(HEATER).trip  # despite its 600 s minimum on time
    r.set(FLOOD, False)
    r.step(20)
    assert r.alarms.state("climate.flood") == "latched"
    assert r.run(310).shed  # shed for release_s = 300 s after the water is gone
    assert not r.run(312).shed
    r.alarms.acknowledge("climate.flood", r.now)
    assert "climate.flood" not in r.active()


def test_restoring_after_a_shed_respects_minimum_off():
    r = Rig(settings(min_on_s=60, min_off_s=600), t=10, rh=90)
    r.run(10)
    r.set(FLOOD, True)
    r.step(11)
    r.set(FLOOD, False)
    r.run(320)
    assert not r.last.shed and not r.on(HEATER) and r.out(HEATER).held_until == 611
    assert r.run(611).outputs[1].on


def test_ups_sheds_the_heater_first_then_the_battery_low_loads():
    ups = UpsSettings(ON_BATT, LOW, REPL, shed_on_battery_low=(FAN,))
    base_heater = settings().heater
    assert base_heater is not None
    heater = dataclasses.replace(base_heater, max_c=45.0)  # so that fan and heater can run together
    r = Rig(settings(ups=ups, heater=heater, min_on_s=600, min_off_s=600), t=36, rh=90)  # hot and damp
    r.step(0)
    assert r.on(FAN) and r.on(HEATER)
    r.set(ON_BATT, True)
    st = r.step(1)
    assert st.shed == {HEATER: "on battery: load shed"} and not r.on(HEATER) and r.out(HEATER).trip
    assert r.on(FAN)
    r.run(5)
    assert "climate.ups_on_battery" not in r.raised()
    r.run(6)
    assert "climate.ups_on_battery" in r.raised()  # after its 5 s delay
    r.set(LOW, True)
    st = r.step(7)
    assert set(st.shed) == {HEATER, FAN} and not r.on(FAN) and r.out(FAN).trip and "battery low" in r.out(FAN).reason
    assert r.events[-1].alarm_id == "climate.ups_battery_low" and r.events[-1].severity == "critical"
    r.set(T, 52)  # over-temperature outranks battery shedding ...
    assert r.step(8).outputs[0].on and r.out(FAN).trip
    r.set(FLOOD, True)  # ... flood shedding outranks both (here it sheds the heater and relay_1)
    st = r.step(9)
    assert r.on(FAN) and st.shed[HEATER] == "flood: load shed" and st.shed["relays.relay_1"] == "flood: load shed"
    r.set(FLOOD, False)
    r.set(ON_BATT, False)
    r.set(LOW, False)
    r.set(T, 36)
    st = r.run(400)
    assert st.shed == {} and not r.on(HEATER) and r.out(HEATER).held_until == 601  # min off from the shed at 1


def test_flood_shedding_outranks_the_over_temperature_trip():
    flood = settings().flood
    assert flood is not None
    s = settings(flood=dataclasses.replace(flood, shed=(FAN, HEATER)), **NO_MIN)
    r = Rig(s, t=55)
    assert r.step(0).outputs[0].on
    r.set(FLOOD, True)
    assert not r.step(1).outputs[0].on and r.out(FAN).reason == "flood: load shed"


def test_replace_battery_alarm():
    r = Rig(settings())
    r.set(REPL, True)
    r.step(0)
    assert r.raised() == ["climate.ups_replace_battery"]


def test_failed_contact_input_holds_its_last_state_and_alarms():
    r = Rig(settings())
    r.set(DOOR, True)
    r.run(3)
    assert "climate.door_open" in r.raised()
    r.set(DOOR, None, "bad")
    r.run(34)
    assert r.ctl.status()["door_open"] is True
    assert "climate.input_failed" in r.raised()
    assert "dio.door" in next(e for e in r.events if e.alarm_id == "climate.input_failed").message


# ---- fan failure ------------------------------------------------------------------------------


def test_fan_failure_by_temperature_not_falling():
    s = settings(fan_check=FanCheck(after_s=600, drop_k=0.5), **NO_MIN)
    r = Rig(s, t=36)
    r.step(0)  # the fan switches on; the run is timed from the first step that sees it on (10 s)
    r.run(600, dt=10)
    assert not r.cond("climate.fan_failed")
    r.run(610, dt=10)
    assert "climate.fan_failed" in r.raised()
    assert "36.0 -> 36.0" in next(e for e in r.events if e.alarm_id == "climate.fan_failed").message
    r.set(T, 35.4)  # it falls after all: the verdict is taken back
    r.run(620, dt=10)
    assert "climate.fan_failed" not in r.active()


def test_fan_check_passes_when_the_temperature_falls():
    s = settings(fan_check=FanCheck(after_s=600, drop_k=0.5), **NO_MIN)
    r = Rig(s, t=36)
    for i in range(1, 120):
        r.set(T, 36 - 0.01 * i)
        r.step(i * 10.0)
    assert not r.cond("climate.fan_failed") and r.on(FAN)


def test_fan_check_gives_no_verdict_near_ambient():
    s = settings(ambient="outdoor.temperature", fan_check=FanCheck(after_s=600), **NO_MIN)
    r = Rig(s, t=36)
    r.set("outdoor.temperature", 35.0)
    r.run(2000, dt=10)
    assert not r.cond("climate.fan_failed")
    r.set("outdoor.temperature", 25.0)
    r.run(2700, dt=10)
    assert r.cond("climate.fan_failed")


def test_fan_monitor_window_and_substitute_fan():
    fans = (
        FanSettings("fan1", FAN, 35, 30, monitor="relays.input_5", monitor_min=800, monitor_max=3000),
        FanSettings("fan2", FAN2, 40, 35),
    )
    r = Rig(settings(fans=fans, **NO_MIN), t=36)
    r.set("relays.input_5", 0.0)
    r.step(0)
    assert r.on(FAN) and not r.on(FAN2)
    r.run(9)  # spin-up: not judged
    assert not r.ctl.conditions()["climate.fan_failed.fan1"].active
    r.run(19)
    assert not r.cond("climate.fan_failed.fan1")
    r.run(21)  # 10 s spin-up + 10 s out of the window
    assert "climate.fan_failed.fan1" in r.raised() and r.on(FAN2)
    assert r.out(FAN2).reason == "replaces a failed fan"
    r.set("relays.input_5", 1500.0)  # the tachometer is back
    r.run(22)
    assert not r.cond("climate.fan_failed.fan1") and not r.on(FAN2)


# ---- limits ---------------------------------------------------------------------------------


def test_two_level_temperature_and_humidity_alarms_with_delay_and_hysteresis():
    r = Rig(settings(limits=Limits(raise_delay_s=60, clear_delay_s=60)), t=46, rh=50)
    r.run(59)
    assert r.raised() == []
    r.run(61)
    assert r.raised() == ["climate.temperature_high.warning"]
    r.set(T, 56)
    r.run(130)
    assert "climate.temperature_high.critical" in r.raised()
    r.set(T, 44)  # below 45 but not below 43: the warning stays; the critical (clear at 53) goes
    r.run(300)
    assert r.active() == {"climate.temperature_high.warning"}
    r.set(T, 20)
    r.set(RH, 92)
    r.run(400)
    assert r.active() == {"climate.humidity_high.warning", "climate.humidity_high.critical"}
    r.set(T, -11)
    r.set(RH, 4)
    r.run(500)
    assert r.active() == {
        "climate.temperature_low.warning",
        "climate.temperature_low.critical",
        "climate.humidity_low.warning",
        "climate.humidity_low.critical",
    }


def test_limit_alarms_are_held_while_the_sensor_has_failed():
    r = Rig(settings(limits=Limits(raise_delay_s=0, clear_delay_s=0)), t=46)
    r.step(0)
    assert "climate.temperature_high.warning" in r.active()
    r.set(T, None, "bad")
    r.run(100)
    assert "climate.temperature_high.warning" in r.active()  # not cleared by a missing value


# ---- the interface ------------------------------------------------------------------------------


def test_only_changed_conditions_are_emitted_after_the_first_step():
    r = Rig(settings())
    first = r.step(0).conditions
    assert {c.alarm_id for c in first} == set(r.ctl.conditions()) and len(first) > 10
    assert {d.id for d in r.ctl.definitions()} == set(r.ctl.conditions())
    assert r.step(1).conditions == ()
    r.set(DOOR, True)
    r.step(2)
    assert {c.alarm_id for c in r.step(3).conditions} >= {"climate.door_open", "climate.flood"}
    r.ctl.resend_conditions()
    assert len(r.step(4).conditions) == len(first)


def test_inputs_outputs_snapshot_from_the_process_image_and_status():
    s = settings()
    ctl = ClimateController(s)
    assert set(ctl.inputs) == {T, RH, DOOR, FLOOD, ON_BATT, LOW, REPL}
    assert ctl.outputs == (FAN, HEATER)
    img = ProcessImage([Point(T, stale_after_s=30), Point(RH, stale_after_s=30), Point(DOOR)])
    img.update(Reading(T, 0.0, 36.5, Quality.GOOD), 100.0)
    img.update(Reading(RH, 0.0, 40.0, Quality.GOOD), 100.0)
    snap = take_snapshot(img, ctl.inputs, 140.0)
    assert snap[T] == (36.5, Quality.STALE, 40.0) and snap[DOOR] is None
    img.update(Reading(T, 0.0, 36.5, Quality.GOOD), 139.0)
    st = ctl.step(140.0, take_snapshot(img, ctl.inputs, 140.0))
    assert st.outputs[0].on
    status = ctl.status()
    assert status["temperature"] == 36.5 and status["outputs"][FAN]["on"] is True
    json.dumps(status, allow_nan=False)
