"""The alarm framework (agent.control.alarms.manager): delays, hysteresis, latching,
acknowledge, default definitions, overrides, persistence across a restart."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control.alarms.manager import (
    AlarmDef,
    AlarmEvent,
    AlarmManager,
    AlarmOverride,
    Condition,
    Hysteresis,
    as_condition,
)
from agent.model import Quality


def cond(
    active: bool, aid: str = "x.alarm", sev: str = "warning", value: float | None = None, msg: str = ""
) -> Condition:
    return Condition(aid, "x.src", sev, active, msg, value)


def run(m: AlarmManager, seq: list[tuple[float, bool]], aid: str = "x.alarm") -> list[tuple[float, str, str]]:
    """Feed (time, active) steps; return (time, transition, state) of every event."""
    out = []
    for t, active in seq:
        out += [(t, e.transition, e.state) for e in m.update(t, [cond(active, aid)])]
    return out


# ---- hysteresis -------------------------------------------------------------------------


def test_hysteresis_high_and_low():
    high = Hysteresis(35.0, 30.0)
    assert high.rising
    assert not high.next(False, 34.9) and high.next(False, 35.0)
    assert high.next(True, 30.1) and not high.next(True, 30.0)
    low = Hysteresis(5.0, 8.0)
    assert not low.rising
    assert not low.next(False, 5.1) and low.next(False, 5.0)
    assert low.next(True, 7.9) and not low.next(True, 8.0)
    with pytest.raises(ValueError):
        Hysteresis(1.0, 1.0)
    with pytest.raises(ValueError):
        Hysteresis(float("nan"), 1.0)


# ---- delays ---------------------------------------------------------------------------


def test_raise_delay_debounces_and_raises_exactly_after_it():
    m = AlarmManager([AlarmDef("x.alarm", "x.src", raise_delay_s=10.0)])
    # a 9 s blip, gone, then a held condition
    events = run(m, [(0, True), (5, True), (9, True), (9.5, False), (20, True), (29.9, True), (30, True), (31, True)])
    assert events == [(30, "raised", "active")]
    assert m.state("x.alarm") == "active"


def test_next_due_tells_when_a_delay_ends():
    m = AlarmManager([AlarmDef("a", raise_delay_s=10.0, clear_delay_s=20.0), AlarmDef("b", raise_delay_s=3.0)])
    assert m.next_due() is None
    m.update(1, [cond(True, "a"), cond(True, "b")])
    assert m.next_due() == 4.0
    m.update(4, [])
    assert m.next_due() == 11.0
    m.update(11, [])
    assert m.next_due() is None
    m.update(12, [cond(False, "a")])
    assert m.next_due() == 32.0


def test_clear_delay_keeps_the_alarm_through_short_gaps():
    m = AlarmManager([AlarmDef("x.alarm", clear_delay_s=30.0)])
    events = run(m, [(0, True), (10, False), (20, True), (50, False), (79, False), (80, False)])
    assert events == [(0, "raised", "active"), (80, "cleared", "cleared")]


def test_a_condition_not_reported_is_held_and_its_delay_runs():
    m = AlarmManager([AlarmDef("x.alarm", raise_delay_s=10.0)])
    assert m.update(0, [cond(True)]) == []
    assert m.update(5, []) == []
    ev = m.update(10, [])
    assert [(e.alarm_id, e.transition) for e in ev] == [("x.alarm", "raised")]


def test_value_hysteresis_does_not_chatter():
    d = AlarmDef("t.high", "t", "warning", hysteresis=Hysteresis(45.0, 43.0))
    m = AlarmManager([d])
    values = [44.0, 45.0, 44.9, 44.0, 45.1, 43.5, 44.8, 43.1, 45.0, 43.0, 42.0]
    events = []
    for i, v in enumerate(values):
        events += [(i, e.transition) for e in m.update(float(i), [Condition("t.high", "t", "warning", False, "", v)])]
    assert events == [(1, "raised"), (9, "cleared")]


def test_value_hysteresis_with_a_delay_and_a_low_alarm():
    d = AlarmDef("t.low", "t", "critical", raise_delay_s=60, clear_delay_s=60, hysteresis=Hysteresis(0.0, 2.0))
    m = AlarmManager([d])
    ev = []
    for t in range(0, 400, 10):
        v = -1.0 if t < 200 else 1.0 if t < 300 else 2.5
        ev += [(t, e.transition, e.value) for e in m.update(t, [Condition("t.low", "t", "critical", False, "", v)])]
    assert ev == [(60, "raised", -1.0), (360, "cleared", 2.5)]


# ---- latching and acknowledge ---------------------------------------------------------


def test_latching_alarm_stays_until_acknowledged():
    m = AlarmManager([AlarmDef("f", "dio.flood", "critical", latching=True)])
    assert [e.transition for e in m.update(0, [Condition("f", "dio.flood", "critical", True)])] == ["raised"]
    ev = m.update(5, [Condition("f", "dio.flood", "critical", False)])
    assert [(e.transition, e.state) for e in ev] == [("cleared", "latched")]
    assert [a["id"] for a in m.active()] == ["f"] and m.active()[0]["state"] == "latched"
    assert m.update(100, [Condition("f", "dio.flood", "critical", False)]) == []
    ack = m.acknowledge("f", 200, wall=1_700_000_200.0, by="tech")
    assert ack is not None
    assert (ack.transition, ack.state, ack.by, ack.t) == ("acknowledged", "cleared", "tech", 1_700_000_200.0)
    assert m.active() == [] and m.state("f") == "cleared"
    assert m.acknowledge("f", 201) is None  # nothing left to acknowledge


def test_latched_alarm_raised_again_counts_a_new_occurrence():
    m = AlarmManager([AlarmDef("f", latching=True)])
    run(m, [(0, True), (1, False)], "f")
    assert m.state("f") == "latched"
    ev = m.update(2, [cond(True, "f")])
    assert [(e.transition, e.state, e.count) for e in ev] == [("raised", "active", 2)]


def test_acknowledged_latching_alarm_clears_normally():
    m = AlarmManager([AlarmDef("f", latching=True)])
    run(m, [(0, True)], "f")
    ack = m.acknowledge("f", 1)
    assert ack is not None
    assert (ack.transition, ack.state) == ("acknowledged", "acknowledged")
    assert m.active()[0]["acknowledged"] is True
    assert run(m, [(2, False)], "f") == [(2, "cleared", "cleared")]
    assert m.active() == []


def test_acknowledge_unknown_or_cleared_alarm_is_a_no_op():
    m = AlarmManager([AlarmDef("a")])
    assert m.acknowledge("a", 0) is None
    assert m.acknowledge("nope", 0) is None


# ---- undefined alarms, condition forms, overrides --------------------------------------


def test_undefined_alarm_gets_a_default_definition_from_its_condition():
    m = AlarmManager()
    ev = m.update(
        0, [Condition("lighting.segment1.lamp_failure", "meter_seg1.current", "critical", True, "no current")]
    )
    assert [(e.alarm_id, e.source, e.severity, e.message) for e in ev] == [
        ("lighting.segment1.lamp_failure", "meter_seg1.current", "critical", "no current")
    ]
    d = m.definition("lighting.segment1.lamp_failure")
    assert d is not None
    assert (d.raise_delay_s, d.clear_delay_s, d.latching) == (0.0, 0.0, False)
    assert [
        e.transition for e in m.update(1, [Condition("lighting.segment1.lamp_failure", "s", "critical", False)])
    ] == ["cleared"]


@dataclass
class LightingCondition:  # what another controller may emit without importing Condition
    id: str
    source: str
    severity: str
    active: bool
    message: str


def test_conditions_as_tuples_mappings_and_foreign_objects():
    m = AlarmManager()
    ev = m.update(
        0,
        [
            ("a.one", "s1", "warning", True, "m1"),
            {"id": "a.two", "source": "s2", "severity": "critical", "active": True, "message": "m2"},
            LightingCondition("a.three", "s3", "warning", True, "m3"),
        ],
    )
    assert sorted((e.alarm_id, e.source, e.severity, e.message) for e in ev) == [
        ("a.one", "s1", "warning", "m1"),
        ("a.three", "s3", "warning", "m3"),
        ("a.two", "s2", "critical", "m2"),
    ]


@dataclass
class SegmentCondition:  # lighting's shape: no source, a segment
    id: str
    severity: str
    active: bool
    message: str
    segment: str | None = None


def test_conditions_without_a_source_take_the_segment_or_the_id_prefix():
    m = AlarmManager()
    ev = m.update(
        0,
        [
            SegmentCondition("lighting.seg1.lamp_failure", "critical", True, "no current", "seg1"),
            SegmentCondition("lighting.clock_unknown", "warning", True, "no time"),
        ],
    )
    assert sorted((e.alarm_id, e.source) for e in ev) == [
        ("lighting.clock_unknown", "lighting"),
        ("lighting.seg1.lamp_failure", "seg1"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        ("a", "s", "fatal", True),
        ("a", "s", "warning", 1),
        ("", "s", "warning", True),
        {"source": "s", "severity": "warning", "active": True},
        ("a",),
    ],
)
def test_malformed_conditions_are_refused(bad):
    with pytest.raises(ValueError):
        as_condition(bad)


def test_overrides_change_defined_and_undefined_alarms():
    m = AlarmManager(
        [AlarmDef("climate.door_open", "dio.door", "warning")],
        {
            "climate.door_open": AlarmOverride(raise_delay_s=5.0, severity="critical"),
            "lighting.x": AlarmOverride(latching=True),
            "lighting.off": AlarmOverride(enabled=False),
        },
    )
    assert run(m, [(0, True), (4, True), (5, True)], "climate.door_open") == [(5, "raised", "active")]
    assert m.active()[0]["severity"] == "critical"
    run(m, [(0, True), (1, False)], "lighting.x")
    assert m.state("lighting.x") == "latched"
    assert run(m, [(0, True), (100, True)], "lighting.off") == []


def test_disabling_a_restored_active_alarm_clears_it():
    m = AlarmManager([AlarmDef("a")])
    run(m, [(0, True)], "a")
    m2 = AlarmManager.from_dict(m.to_dict(), [AlarmDef("a")], {"a": AlarmOverride(enabled=False)})
    assert [(e.transition, e.state) for e in m2.update(0, [])] == [("cleared", "cleared")]


# ---- what is shown and sent -------------------------------------------------------------


def test_active_list_critical_first_then_oldest_and_json_safe():
    m = AlarmManager([AlarmDef("w1"), AlarmDef("c1", severity="critical"), AlarmDef("w0")])
    m.update(0, [cond(True, "w0")], wall=1000.0)
    m.update(1, [cond(True, "w1")], wall=1001.0)
    m.update(2, [cond(True, "c1", "critical", value=float("nan"))], wall=1002.0)
    act = m.active()
    assert [a["id"] for a in act] == ["c1", "w0", "w1"]
    assert act[1]["since"] == 1000.0 and act[0]["value"] is None
    json.dumps(act, allow_nan=False)


def test_event_to_reading_is_an_outbox_reading():
    ev = AlarmEvent("climate.flood", "dio.flood", "critical", "raised", "active", "water", 1_700_000_000.5, None, 1)
    r = ev.to_reading()
    assert r.point == "alarm.climate.flood" and r.t == 1_700_000_000.5 and r.quality is Quality.GOOD
    assert json.loads(r.value) == {
        "alarm": "climate.flood",
        "source": "dio.flood",
        "severity": "critical",
        "transition": "raised",
        "state": "active",
        "message": "water",
        "t": 1_700_000_000.5,
        "value": None,
        "count": 1,
    }


# ---- persistence ------------------------------------------------------------------------


def _restart(m: AlarmManager, defs: list[AlarmDef]) -> AlarmManager:
    return AlarmManager.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)), defs)


def test_restored_active_alarm_is_not_raised_again_and_clears_later():
    defs = [AlarmDef("a", "src", "critical", clear_delay_s=10.0)]
    m = AlarmManager(defs)
    m.update(0, [cond(True, "a", "critical", msg="hot")], wall=5000.0)
    m2 = _restart(m, defs)
    assert m2.active()[0]["since"] == 5000.0 and m2.active()[0]["message"] == "hot"
    assert m2.update(0, [cond(True, "a", "critical")]) == []  # the new process's monotonic clock starts again
    assert m2.update(5, [cond(False, "a", "critical")]) == []
    ev = m2.update(15, [cond(False, "a", "critical")])
    assert [(e.transition, e.count) for e in ev] == [("cleared", 1)]


def test_restored_latched_and_acknowledged_states():
    defs = [AlarmDef("l", latching=True), AlarmDef("k")]
    m = AlarmManager(defs)
    run(m, [(0, True), (1, False)], "l")
    run(m, [(0, True)], "k")
    m.acknowledge("k", 2, by="op")
    m2 = _restart(m, defs)
    assert {a["id"]: a["state"] for a in m2.active()} == {"l": "latched", "k": "acknowledged"}
    assert m2.update(0, [cond(True, "k")]) == []
    ack = m2.acknowledge("l", 1)
    assert ack is not None
    assert ack.state == "cleared"


def test_a_pending_raise_waits_its_full_delay_again_after_a_restart():
    defs = [AlarmDef("a", raise_delay_s=60.0)]
    m = AlarmManager(defs)
    run(m, [(0, True), (50, True)], "a")
    m2 = _restart(m, defs)
    assert m2.update(0, []) == [] and m2.update(59, []) == []
    assert [e.transition for e in m2.update(60, [])] == ["raised"]


def test_restored_value_alarm_keeps_its_hysteresis():
    defs = [AlarmDef("t.high", hysteresis=Hysteresis(45.0, 43.0))]
    m = AlarmManager(defs)
    m.update(0, [Condition("t.high", "t", "warning", False, "", 46.0)])
    m2 = _restart(m, defs)
    # 44 °C is inside the band: a fresh thermostat would call it "off", the restored alarm stays
    assert m2.update(0, [Condition("t.high", "t", "warning", False, "", 44.0)]) == []
    assert m2.is_active("t.high")


def test_undefined_alarm_survives_a_restart_with_its_source_and_severity():
    m = AlarmManager()
    m.update(0, [Condition("lighting.x", "seg1", "critical", True, "m")])
    m2 = _restart(m, [])
    assert m2.active()[0] | {} == m.active()[0]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 2, "alarms": {}},
        {"version": 1, "alarms": []},
        {"version": 1, "alarms": {"a": {"state": "on", "condition": True, "severity": "warning"}}},
        {"version": 1, "alarms": {"a": {"state": "active", "condition": "yes", "severity": "warning"}}},
        {"version": 1, "alarms": {"a": {"state": "active", "condition": True, "severity": "warning", "since": "x"}}},
        {"version": 1, "alarms": {"a": {"state": "active", "condition": True, "severity": "warning", "count": -1}}},
    ],
)
def test_malformed_state_is_refused(data):
    with pytest.raises(ValueError):
        AlarmManager.from_dict(data)


# ---- a property: an alarm is raised only after its condition held for the delay -----------


@settings(max_examples=150, deadline=None)
@given(
    delay=st.sampled_from([0.0, 1.0, 5.0]),
    clear=st.sampled_from([0.0, 2.0]),
    steps=st.lists(st.tuples(st.floats(0.1, 4.0), st.booleans()), min_size=1, max_size=60),
)
def test_raised_only_after_the_condition_held_for_the_delay(delay, clear, steps):
    m = AlarmManager([AlarmDef("a", raise_delay_s=delay, clear_delay_s=clear)])
    t, history, state = 0.0, [], "cleared"
    for dt, active in steps:
        t += dt
        history.append((t, active))
        for e in m.update(t, [cond(active, "a")]):
            # the condition was reported true at every step in [t - delay, t] and at the step before
            since = max(tt for tt, a in history if not a) if any(not a for _, a in history) else -1.0
            if e.transition == "raised":
                assert state == "cleared" and active
                start = min(tt for tt, a in history if a and tt > since)
                assert t - start >= delay
            else:
                assert state == "active" and not active
                last_true = max(tt for tt, a in history if a)
                first_false = min(tt for tt, a in history if not a and tt > last_true)
                assert t - first_false >= clear
            state = e.state
    assert m.state("a") == state
