"""The controller: fail-safe order, cool-down, warm-up, read-back, failure detection
from the meter, burning hours and energy, state persistence, and properties
(never crashes on any snapshot; lights on whenever the sun is 6 degrees down)."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from agent.control.lighting.controller import LightingController
from agent.control.lighting.model import Actuation, FailureDetection
from agent.control.lighting.programs import Program
from agent.model import Quality
from tests.test_lighting_rig import LUX, SITES, Rig, dimmed, seg, settings, ts

NOON = ts(2024, 1, 15, 12, tz="Europe/Berlin")
MIDNIGHT = ts(2024, 1, 16, 0, tz="Europe/Berlin")


def cond(rig: Rig, cid: str):
    return next(c for c in rig.ctl.conditions() if c.alarm_id == cid)


# -- fail-safe ------------------------------------------------------------------------------------


def test_clock_unknown_runs_on_the_photocell_alone_and_says_so():
    rig = Rig("berlin", start=NOON, clock=False)
    rig.lux = 500.0
    rig.run(60, 10)
    d = rig.decision()
    assert not d.on and d.reason == "failsafe:clock-unknown" and d.detail == "photocell"
    assert rig.active("lighting.clock") and not rig.active("lighting.failsafe")
    rig.lux = 10.0
    rig.run(200, 10)
    assert rig.decision().on and rig.decision().level is None  # switched only
    rig.clock = True
    rig.step(1)
    assert rig.decision().reason == "program:evening" and not rig.active("lighting.clock")


def test_no_clock_and_no_photocell_means_lights_on():
    rig = Rig("berlin", start=NOON, clock=False)
    rig.lux = None
    rig.run(100, 10)
    d = rig.decision()
    assert d.on and d.reason == "failsafe:no-clock-no-photocell"
    c = cond(rig, "lighting.failsafe")
    assert c.active and c.severity == "critical"
    rig2 = Rig("berlin", settings(photocell=False), start=NOON, clock=False)
    rig2.step(1)
    assert rig2.result is not None
    assert rig2.decision().on and rig2.result.mode == "failsafe:no-clock-no-photocell"


def test_clock_unknown_with_a_dead_photocell_at_noon_still_lights():
    rig = Rig("berlin", start=NOON, clock=False)
    rig.lux = 20000.0
    rig.run(60, 10)
    assert not rig.decision().on
    rig.lux = (0.0, "bad", 1.0)
    rig.run(120, 10)
    assert rig.decision().on and rig.decision().reason == "failsafe:no-clock-no-photocell"


# -- actuation -------------------------------------------------------------------------------------


def test_minimum_switch_interval_holds_the_contactor_then_switches():
    rig = Rig(
        "berlin", settings(photocell=False, actuation=Actuation(min_switch_interval_s=60, warm_up_s=0)), start=NOON
    )
    rig.step(1)
    rig.ctl.set_override(on=True, mono=rig.mono, utc=rig.t)
    rig.step(1)
    assert rig.decision().on
    rig.ctl.cancel_override()
    rig.run(30, 1)
    assert rig.decision().on and rig.decision().detail.endswith("cool-down")
    rig.run(31, 1)
    assert not rig.decision().on
    coil_writes = [w for w in rig.writes if w.point == "relays.seg1" and w.why == "change"]
    assert [w.value for w in coil_writes] == [True, False]


def test_warm_up_holds_full_level_and_suppresses_power_alarms():
    a = Actuation(min_switch_interval_s=0, warm_up_s=300, settle_s=30)
    f = FailureDetection(confirm_s=60)
    prog = Program("low", period="absolute", on=dt.time(17), off=dt.time(7), level=30.0)
    rig = Rig(
        "berlin",
        settings(segments=[dimmed()], programs=[prog], photocell=False, actuation=a, failure=f),
        start=ts(2024, 1, 15, 16, 59, tz="Europe/Berlin"),
    )
    rig.lamps_out["seg1"] = 5  # half the lamps dark from the start
    rig.run(120, 5)
    d = rig.decision()
    assert d.on and d.level == 100 and "warm-up" in d.detail and d.target == 30
    rig.run(250, 5)  # 5 minutes of warm-up with half the power (17:00-17:05): no alarm
    assert not rig.active("lighting.seg1.lamp_failure")
    assert rig.decision().level == 30
    rig.run(200, 5)  # steady state + confirmation
    c = cond(rig, "lighting.seg1.lamp_failure")
    assert c.active and c.severity == "warning" and "5 of 10 luminaires" in c.message


def test_read_back_mismatch_is_a_relay_failure_and_outputs_are_reasserted():
    a = Actuation(min_switch_interval_s=0, warm_up_s=0, readback_delay_s=10, reassert_s=5)
    rig = Rig("berlin", settings(photocell=False, actuation=a), start=NOON)
    rig.relay_stuck["seg1"] = True  # the coil reads back on while commanded off
    rig.run(8, 1)
    assert not rig.active("lighting.seg1.relay_failure")
    assert [w.why for w in rig.writes if w.point == "relays.seg1"][:2] == ["start", "reassert"]
    rig.run(5, 1)
    c = cond(rig, "lighting.seg1.relay_failure")
    assert c.active and c.severity == "critical" and "reads back True" in c.message
    del rig.relay_stuck["seg1"]
    rig.run(6, 1)  # the next reassert fixes it (a relay board that had lost its state)
    assert not rig.active("lighting.seg1.relay_failure") and rig.coil["seg1"] is False


def test_outputs_are_written_again_after_a_device_comes_back_with_a_wrong_state():
    a = Actuation(min_switch_interval_s=0, warm_up_s=0, reassert_s=10)
    rig = Rig("berlin", settings(photocell=False, actuation=a), start=MIDNIGHT)
    rig.run(60, 1)
    assert rig.coil["seg1"] is True
    n = len(rig.writes)
    rig.coil["seg1"] = False  # the relay board rebooted and came back with its coils off
    rig.step(1)
    assert rig.writes[n:] == [rig.writes[n]] and rig.writes[n].why == "reassert" and rig.writes[n].value is True


def test_feedback_contact_disagreeing_is_a_contactor_failure():
    a = Actuation(min_switch_interval_s=0, warm_up_s=0, readback_delay_s=10)
    rig = Rig("berlin", settings(segments=[seg(feedback="relays.aux1")], photocell=False, actuation=a), start=MIDNIGHT)
    rig.run(30, 1)
    assert not rig.active("lighting.seg1.contactor_failure")
    rig.contactor_stuck["seg1"] = False  # welded open
    rig.run(12, 1)
    c = cond(rig, "lighting.seg1.contactor_failure")
    assert c.active and "says open while commanded on" in c.message


def test_inverted_contactor_wiring_writes_the_coil_the_other_way():
    a = Actuation(min_switch_interval_s=0, warm_up_s=0)
    rig = Rig("berlin", settings(segments=[seg(invert=True)], photocell=False, actuation=a), start=MIDNIGHT)
    rig.run(10, 1)
    assert rig.decision().on and rig.coil["seg1"] is False and rig.power("seg1") > 0


# -- failure detection -----------------------------------------------------------------------------

FAST: dict[str, Any] = dict(
    actuation=Actuation(min_switch_interval_s=0, warm_up_s=0, settle_s=10), failure=FailureDetection(confirm_s=60)
)


def test_lamp_failure_needs_more_than_a_share_of_one_luminaire_and_confirmation():
    rig = Rig("berlin", settings(photocell=False, **FAST), start=MIDNIGHT)
    rig.run(120, 5)
    rig.lamps_out["seg1"] = 1
    rig.run(50, 5)
    assert not rig.active("lighting.seg1.lamp_failure")  # not confirmed yet
    rig.run(30, 5)
    assert "about 1 of 10 luminaires out" in cond(rig, "lighting.seg1.lamp_failure").message
    rig.lamps_out["seg1"] = 0
    rig.run(70, 5)
    assert not rig.active("lighting.seg1.lamp_failure")


def test_stuck_contactor_closed_is_a_day_burner_and_open_is_no_power():
    rig = Rig("berlin", settings(photocell=False, **FAST), start=NOON)
    rig.contactor_stuck["seg1"] = True
    rig.run(100, 5)
    c = cond(rig, "lighting.seg1.day_burner")
    assert c.active and c.severity == "critical" and "stuck closed" in c.message
    rig2 = Rig("berlin", settings(photocell=False, **FAST), start=MIDNIGHT)
    rig2.contactor_stuck["seg1"] = False
    rig2.run(100, 5)
    c = cond(rig2, "lighting.seg1.no_power")
    assert c.active and "stuck open" in c.message and not rig2.active("lighting.seg1.supply_loss")


def test_supply_loss_is_told_apart_by_the_voltage_and_power_too_high():
    rig = Rig("berlin", settings(photocell=False, **FAST), start=MIDNIGHT)
    rig.supply_lost.add("seg1")
    rig.run(100, 5)
    assert rig.active("lighting.seg1.supply_loss") and not rig.active("lighting.seg1.no_power")
    s = settings(segments=[seg(expected_w=700.0)], photocell=False, **FAST)
    rig2 = Rig("berlin", s, start=MIDNIGHT)
    rig2.s = settings(segments=[seg(expected_w=1000.0)], photocell=False, **FAST)  # the plant draws 1000 W
    rig2.run(100, 5)
    assert "power too high" in cond(rig2, "lighting.seg1.power_too_high").message


def test_no_judgement_on_a_bad_meter():
    rig = Rig("berlin", settings(photocell=False, **FAST), start=MIDNIGHT)
    rig.meter_ok = False
    rig.contactor_stuck["seg1"] = False
    rig.run(600, 5)
    assert not rig.active("lighting.seg1.no_power")


# -- accounting ------------------------------------------------------------------------------------


def test_burning_hours_switches_and_energy_with_a_counter_reset_and_bad_values():
    prog = Program("fixed", period="absolute", on=dt.time(18), off=dt.time(6))
    rig = Rig(
        "berlin",
        settings(programs=[prog], photocell=False, actuation=Actuation(warm_up_s=0)),
        start=ts(2024, 1, 15, 12, tz="Europe/Berlin"),
    )
    rig.run(86400, 60)  # one night of 12 h at 1000 W
    st = rig.ctl.state()["segments"]["seg1"]
    assert abs(st["burning_h"] - 12) < 0.05 and st["switches"] == 1
    assert abs(st["energy_kwh"] - 12.0) < 0.05 and abs(st["full_power_kwh"] - 12.0) < 0.05
    rig.kwh["seg1"] = 0.0  # meter replaced: the counter starts again at 0
    rig.meter_ok = False
    rig.run(3600 * 7, 60)  # 19:00, no meter values for a while
    rig.meter_ok = True
    rig.run(3600 * 5, 60)  # 00:00
    st = rig.ctl.state()["segments"]["seg1"]
    assert any(e.kind == "counter" and "went back" in e.message for e in rig.events)
    assert abs(st["energy_kwh"] - 12.0 - 5.0) < 0.1  # the hours without meter values are not lost after re-basing
    assert st["switches"] == 2


def test_energy_from_a_meter_polled_less_often_than_the_controller_steps():
    """The counter moves once per meter poll (60 s here) while the controller steps every
    second: each delta belongs to the whole poll interval, not to the last step."""
    prog = Program("fixed", period="absolute", on=dt.time(18), off=dt.time(6))
    rig = Rig(
        "berlin",
        settings(programs=[prog], photocell=False, actuation=Actuation(warm_up_s=0)),
        start=ts(2024, 1, 15, 19, tz="Europe/Berlin"),
    )
    fill = rig._fill
    held: dict[str, tuple] = {}

    def polled_meter(dt_s):
        fill(dt_s)
        for sg in rig.s.segments:
            assert sg.energy is not None  # seg() gives every segment a meter
            value, q, _ = rig.image[sg.energy]
            last = held.get(sg.energy)
            if last is None or rig.t - last[1] >= 60:
                held[sg.energy] = last = (value, rig.t)
            rig.image[sg.energy] = (last[0], q, rig.t - last[1])

    rig._fill = polled_meter  # type: ignore[method-assign]  # the plant's meter, polled once a minute
    rig.run(3600, 1)  # an hour lit at 1000 W
    st = rig.ctl.state()["segments"]["seg1"]
    assert abs(st["energy_kwh"] - 1.0) < 0.02, st
    assert not any(e.kind == "counter" for e in rig.events)


def test_state_round_trips_through_json_and_a_restart_counts_the_downtime_energy():
    prog = Program("fixed", period="absolute", on=dt.time(18), off=dt.time(6))
    s = settings(programs=[prog], photocell=False, actuation=Actuation(warm_up_s=0))
    rig = Rig("berlin", s, start=ts(2024, 1, 15, 17, tz="Europe/Berlin"))
    rig.run(3 * 3600, 60)  # 2 h lit
    saved = json.loads(json.dumps(rig.ctl.state()))
    rig2 = Rig("berlin", s, start=rig.t + 3600)  # down for an hour, the lamps burnt on (fail-on wiring)
    rig2.kwh = dict(rig.kwh)
    rig2.kwh["seg1"] += 1.0
    rig2.ctl.restore(saved)
    rig2.run(3600, 60)
    st = rig2.ctl.state()["segments"]["seg1"]
    assert abs(st["energy_kwh"] - 4.0) < 0.05 and abs(st["burning_h"] - 3.0) < 0.05
    rig2.ctl.restore({"format": 1, "segments": {"seg1": {"burning_h": "lots", "switches": -3}}})
    assert rig2.ctl.state()["segments"]["seg1"]["burning_h"] == 0.0


def test_status_is_json_safe():
    rig = Rig("berlin", start=MIDNIGHT)
    rig.run(60, 10)
    text = json.dumps(rig.ctl.status(rig.t))
    assert '"seg1"' in text and '"night"' in text
    assert json.dumps([e.to_dict() for e in rig.events]) and json.dumps([c.to_dict() for c in rig.conditions])


def test_quality_enum_and_named_samples_are_understood():
    rig = Rig("berlin", settings(programs=[Program("p", period="sensor")]), start=NOON, clock=False)
    rig.lux = (5.0, Quality.GOOD, 1.0)
    rig.run(20, 10)
    assert rig.decision().on and rig.decision().reason == "failsafe:clock-unknown"


# -- properties ------------------------------------------------------------------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
samples = st.one_of(
    st.none(),
    st.tuples(
        values, st.sampled_from(["good", "bad", "stale", "x", None]), st.one_of(st.none(), st.floats(allow_nan=True))
    ),
    values,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    snap=st.lists(
        st.dictionaries(
            st.sampled_from(
                ["relays.seg1", "dali.seg1", "seg1.power", "seg1.energy", "seg1.voltage", LUX, "dio.motion"]
            ),
            samples,
        ),
        min_size=1,
        max_size=6,
    ),
    clock=st.lists(st.booleans(), min_size=6, max_size=6),
    dt_s=st.floats(0, 5000),
)
def test_any_snapshot_never_crashes_and_decisions_stay_in_range(snap, clock, dt_s):
    from agent.control.lighting.programs import Boost

    prog = Program("p", period="astro+sensor", boost=Boost("dio.motion", level=90))
    ctl = LightingController(
        settings(segments=[dimmed()], programs=[prog]), latitude=52.5, longitude=13.4, timezone="Europe/Berlin"
    )
    mono, t = 0.0, NOON
    for image, known in zip(snap, clock, strict=False):  # 1 to 6 snapshots, 6 clock flags
        mono += dt_s
        t += dt_s
        r = ctl.step(mono, t if known else None, image)
        d = r.decisions["seg1"]
        assert isinstance(d.on, bool) and (d.level is None or 0 <= d.level <= 100)
        assert d.on or d.level in (0, None)
        json.dumps(ctl.status(t))
    json.dumps(ctl.state())


@hsettings(max_examples=40, deadline=None)
@given(
    site=st.sampled_from(sorted(SITES)),
    day=st.integers(0, 364),
    hour=st.floats(0, 24),
    on_off=st.floats(-15, 15),
    off_off=st.floats(-15, 15),
    mode=st.sampled_from(["astro", "astro+sensor", "blind"]),
)
# found in CI: Madinah's sun is still 8 degrees down 28 min before sunrise, outside the
# time-based backstop; a photocell stuck at daylight is now "implausible" there
@example(site="madinah", day=102, hour=2.5, on_off=0.0, off_off=0.0, mode="astro+sensor")
@example(site="madinah", day=198, hour=16.625, on_off=0.0, off_off=0.0, mode="astro+sensor")
def test_lights_are_on_whenever_the_sun_is_six_degrees_below_the_horizon(site, day, hour, on_off, off_off, mode):
    start = ts(2024, 1, 1) + day * 86400 + hour * 3600
    prog = Program(
        "p", period="astro" if mode == "astro" else "astro+sensor", sunset_offset_min=on_off, sunrise_offset_min=off_off
    )
    rig = Rig(site, settings(programs=[prog]), start=start - 3600, clock=mode != "blind")
    if mode == "astro+sensor":
        rig.lux = 20000.0  # even a photocell that insists on daylight cannot keep the lights off
    rig.run(3600, 300)
    elevation = rig.ctl.astro.elevation(rig.t)
    # the photocell's "implausible" needs its fault delay (30 s) of night, judged at the rig's
    # 300-s steps: the sun must already have been 6 degrees down one step before (found in
    # CI: Madinah at -6.02 degrees, crossed 40 s before the last step)
    if elevation < -6 and rig.ctl.astro.elevation(rig.t - 300) < -6:
        assert rig.decision().on, (site, rig.local(), elevation, rig.decision())
    if mode == "astro" and elevation > 3:
        assert not rig.decision().on
    assert math.isfinite(elevation)
