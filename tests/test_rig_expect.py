"""Expectations judged against hand-built run records: a passing and a failing case of
every kind, with the evidence (time and value) that decided it."""

from __future__ import annotations

import dataclasses
import datetime as dt

from agent.control.lighting.astro import AstroClock
from tests.test_rig_record import BERLIN, START, synthetic
from tools.rig.expect import (
    AlarmExpect,
    DeliveredExpect,
    EnergyExpect,
    NoOtherAlarms,
    OutputExpect,
    QualityExpect,
    SegmentExpect,
    Window,
    judge_all,
)
from tools.rig.record import AlarmInterval, Decision, Delivery

NIGHT = AstroClock(BERLIN[0], BERLIN[1], 0.0, BERLIN[2]).night_of(dt.date(2026, 6, 21))
SUNSET, SUNRISE = float(NIGHT.sunset or 0), float(NIGHT.sunrise or 0)
H = 3600.0
T22, T02, T04 = START + 10 * H, START + 14 * H, START + 16 * H
WHOLE = Window(START, START + 24 * H, "over the run")


# ---------------------------------------------------------------- segment


def test_segment_on_through_the_night_passes():
    v = SegmentExpect("seg1 on", "seg1", True, Window(SUNSET + 10 * 60, SUNRISE - 10 * 60)).judge(synthetic())
    assert v.passed, v.message
    assert v.evidence is not None and v.evidence.value["on"] is True


def test_segment_level_and_reason():
    r = synthetic()
    assert SegmentExpect("dim", "seg3", True, Window(T22 + 60, T02), level=70).judge(r).passed
    assert SegmentExpect("why", "seg3", True, Window(T22 + 60, T02), reason="program:").judge(r).passed
    v = SegmentExpect("why", "seg3", True, Window(T22 + 60, T02), reason="failsafe:").judge(r)
    assert not v.passed and "program:evening" in v.message


def test_segment_fails_at_the_first_wrong_decision():
    r = synthetic()
    v = SegmentExpect("seg3 full", "seg3", True, Window(SUNSET + 600, T02), level=100).judge(r)
    assert not v.passed
    assert v.evidence is not None and v.evidence.t == T22 and v.evidence.value["level"] == 70
    assert "on 70%" in v.message and "22:00:00" in v.message


def test_segment_off_window_that_reaches_the_switch_on_fails_at_the_switch():
    v = SegmentExpect("off", "seg1", False, Window(START, SUNSET + 600)).judge(synthetic())
    assert not v.passed and v.evidence is not None and v.evidence.t == SUNSET + 60


def test_segment_without_a_decision_before_the_window_fails():
    r = synthetic()
    r.decisions = [d for d in r.decisions if d.t > START]
    v = SegmentExpect("off", "seg1", False, Window(START + 60, START + 120)).judge(r)
    assert not v.passed and "no decision" in v.message


def test_segment_dimmable_level_none_counts_as_full():
    r = synthetic()
    r.decisions.append(Decision(T04 + 60, "seg1", True, None, "override"))
    assert SegmentExpect("full", "seg1", True, Window(T04 + 120, T04 + 180), level=100).judge(r).passed


# ---------------------------------------------------------------- alarm


def test_alarm_raised_and_cleared_in_time_passes():
    v = AlarmExpect("lamps", "lighting.seg2.lamp_failure", T02, 300, T04, 300, "warning").judge(synthetic())
    assert v.passed, v.message
    assert v.evidence is not None and v.evidence.t == T02 + 180
    assert v.evidence.value == {"severity": "warning", "raised_after_s": 180.0, "cleared": "2026-06-22 04:02:30 CEST"}
    assert "180 s" in v.message and "150 s" in v.message


def test_alarm_raised_too_late_fails_with_its_delay():
    v = AlarmExpect("lamps", "lighting.seg2.lamp_failure", T02, 120).judge(synthetic())
    assert not v.passed and "raised 180 s after" in v.message
    assert v.evidence is not None and v.evidence.t == T02 + 180


def test_alarm_never_raised_fails():
    v = AlarmExpect("x", "lighting.seg1.no_power", T02, 600).judge(synthetic())
    assert not v.passed and "never raised" in v.message


def test_alarm_not_cleared_or_cleared_late_fails():
    r = synthetic()
    v = AlarmExpect("lamps", "lighting.seg2.lamp_failure", T02, 300, T04, 60).judge(r)
    assert not v.passed and "not within 60 s" in v.message
    assert v.evidence is not None and v.evidence.t == T04 + 150
    r.alarms[0] = dataclasses.replace(r.alarms[0], cleared=None)
    v = AlarmExpect("lamps", "lighting.seg2.lamp_failure", T02, 300, T04, 300).judge(r)
    assert not v.passed and "never cleared" in v.message


def test_alarm_wrong_severity_or_already_active_fails():
    r = synthetic()
    v = AlarmExpect("lamps", "lighting.seg2.lamp_failure", T02, 300, severity="critical").judge(r)
    assert not v.passed and "raised as warning" in v.message
    v = AlarmExpect("lamps", "lighting.seg2.lamp_failure", T02 + 600, 300).judge(r)
    assert not v.passed and "already active" in v.message


# ---------------------------------------------------------------- no other alarms


def test_no_other_alarms_with_globs_passes():
    v = NoOtherAlarms("only", ("lighting.*.lamp_failure", "climate.door_open"), WHOLE).judge(synthetic())
    assert v.passed and "climate.door_open" in v.message


def test_an_unlisted_alarm_fails_with_the_first():
    r = synthetic()
    r.alarms.append(AlarmInterval("climate.temperature_sensor_failed", "critical", T02, T02 + 60))
    r.alarms.append(AlarmInterval("climate.temperature_sensor_failed", "critical", T04, None))
    v = NoOtherAlarms("only", ("lighting.seg2.lamp_failure",), WHOLE).judge(r)
    assert not v.passed
    assert v.evidence is not None and v.evidence.t == START + 3600 and v.evidence.value == "climate.door_open"
    assert "climate.temperature_sensor_failed ×2" in v.message


def test_no_other_alarms_only_counts_the_window():
    v = NoOtherAlarms("late", (), Window(T04 + 3600, START + 24 * H)).judge(synthetic())
    assert v.passed


# ---------------------------------------------------------------- energy


def test_energy_within_tolerance_passes_and_outside_fails():
    r = synthetic()
    assert EnergyExpect("e", ("seg1", "seg2", "seg3"), 0.02).judge(r).passed
    v = EnergyExpect("e", ("seg1", "seg2", "seg3"), 0.001, 0.0).judge(r)
    assert not v.passed and v.evidence is not None
    assert v.evidence.value["segment"] == "seg3"  # the largest segment is furthest off at 1 %


def test_energy_not_recorded_fails():
    r = synthetic()
    del r.plant_energy_kwh["seg2"]
    v = EnergyExpect("e", ("seg2",)).judge(r)
    assert not v.passed and "the plant's energy was not recorded" in v.message


# ---------------------------------------------------------------- delivered


def test_every_reading_delivered_once_passes():
    v = DeliveredExpect("all").judge(synthetic())
    assert v.passed and v.evidence is not None and v.evidence.value == 800


def test_missing_or_duplicate_readings_fail():
    r = synthetic()
    assert r.deliveries is not None
    r.deliveries["lux.lux"] = Delivery(500, 498)
    v = DeliveredExpect("all").judge(r)
    assert not v.passed and "lux.lux: 500 produced, 2 missing" in v.message
    r.deliveries["lux.lux"] = Delivery(500, 501, duplicates=1)
    v = DeliveredExpect("lux", ("lux.*",)).judge(r)
    assert not v.passed and "1 duplicate" in v.message
    assert DeliveredExpect("meters", ("meter_*",)).judge(r).passed


def test_delivered_without_uplink_or_points_fails():
    r = synthetic()
    assert not DeliveredExpect("x", ("nothing.*",)).judge(r).passed
    r.deliveries = None
    assert "no uplink" in DeliveredExpect("x").judge(r).message


# ---------------------------------------------------------------- quality


def test_quality_throughout_sometime_never():
    r = synthetic()
    p = "meter_seg2.active_power"
    assert QualityExpect("q", "lux.lux", "good", Window(START + 60, START + 24 * H)).judge(r).passed
    v = QualityExpect("q", p, "good", WHOLE).judge(r)
    assert not v.passed and v.evidence is not None and v.evidence.t == T02 + 600 and v.evidence.value == "bad"
    v = QualityExpect("q", p, "bad", Window(T02, T02 + 3600), "sometime").judge(r)
    assert v.passed and v.evidence is not None and v.evidence.t == T02 + 600
    assert not QualityExpect("q", p, "bad", Window(T04, T04 + 60), "sometime").judge(r).passed
    assert QualityExpect("q", p, "stale", WHOLE, "never").judge(r).passed
    v = QualityExpect("q", p, "bad", WHOLE, "never").judge(r)
    assert not v.passed and v.evidence is not None and v.evidence.t == T02 + 600


def test_quality_unknown_before_the_window_fails():
    r = synthetic()
    v = QualityExpect("q", "lux.lux", "good", Window(START, START + 1)).judge(r)
    assert not v.passed  # first known 5 s after the start
    assert not QualityExpect("q", "gps.fix", "good", WHOLE).judge(r).passed


def test_judge_all_keeps_the_order():
    r = synthetic()
    vs = judge_all([DeliveredExpect("a"), EnergyExpect("b", ("seg1",))], r)
    assert [v.name for v in vs] == ["a", "b"] and all(v.passed for v in vs)
    assert vs[0].to_dict()["evidence"] == {"t": r.end, "value": 800}


# ---------------------------------------------------------------- output


def test_output_on_and_off_throughout():
    r = synthetic()
    hot = Window(START + 4 * H, START + 7 * H)  # 16:00 .. 19:00: the synthetic cabinet is above 31 °C
    assert OutputExpect("fan", "fan", True, hot).judge(r).passed
    assert OutputExpect("heater", "heater", False, WHOLE).judge(r).passed
    v = OutputExpect("fan", "fan", True, Window(START + 4 * H, START + 12 * H)).judge(r)
    assert not v.passed and "fan off at" in v.message and v.evidence is not None and v.evidence.value == 0.0
    r.series["heater"] = []
    assert "no value" in OutputExpect("heater", "heater", False, WHOLE).judge(r).message
