"""Folding what the runner observes into a record: alarm transitions to intervals, quality
changes, deliveries with duplicates, series that keep only changes."""

from __future__ import annotations

from agent.control.alarms.model import AlarmEvent
from tools.rig.fold import Series, alarm_intervals, deliveries, quality_changes
from tools.rig.record import AlarmInterval, Delivery


def ev(t: float, transition: str, alarm_id: str = "climate.flood", severity: str = "critical") -> dict:
    state = {"raised": "latched", "acknowledged": "acknowledged", "cleared": "cleared"}[transition]
    return AlarmEvent(alarm_id, "dio.flood", severity, transition, state, "water", t).to_dict()


def test_alarm_transitions_become_intervals():
    got = alarm_intervals(
        [
            ev(30, "cleared"),
            ev(10, "raised"),
            ev(20, "acknowledged"),
            ev(40, "raised"),
            ev(15, "raised", "climate.door_open", "warning"),
            ev(5, "cleared", "lighting.clock", "warning"),  # restored from state: opened and closed at once
        ]
    )
    assert got == [
        AlarmInterval("lighting.clock", "warning", 5, 5, None, "water"),
        AlarmInterval("climate.flood", "critical", 10, 30, 20, "water"),
        AlarmInterval("climate.door_open", "warning", 15, None, None, "water"),
        AlarmInterval("climate.flood", "critical", 40, None, None, "water"),
    ]


def test_a_second_raise_while_open_is_not_a_new_interval():
    got = alarm_intervals([ev(10, "raised"), ev(12, "raised"), ev(20, "cleared")])
    assert got == [AlarmInterval("climate.flood", "critical", 10, 20, None, "water")]


def test_a_latched_alarm_ends_at_its_acknowledgement_not_when_its_condition_goes():
    raised = AlarmEvent("climate.flood", "dio.flood", "critical", "raised", "active", "water", 10).to_dict()
    gone = AlarmEvent("climate.flood", "dio.flood", "critical", "cleared", "latched", "water", 20).to_dict()
    ack = AlarmEvent("climate.flood", "dio.flood", "critical", "acknowledged", "cleared", "water", 30).to_dict()
    assert alarm_intervals([raised, gone, ack]) == [AlarmInterval("climate.flood", "critical", 10, 30, 30, "water")]
    assert alarm_intervals([raised, gone]) == [AlarmInterval("climate.flood", "critical", 10, None, None, "water")]


def test_quality_changes_only():
    got = quality_changes([("a", 3, "bad"), ("a", 1, "good"), ("a", 2, "good"), ("b", 1, "stale"), ("a", 4, "good")])
    assert got == {"a": [(1, "good"), (3, "bad"), (4, "good")], "b": [(1, "stale")]}


def test_deliveries_count_missing_and_duplicate_rows():
    produced = [("a", 1.0), ("a", 2.0), ("a", 3.0), ("b", 1.0)]
    rows = [("a", 1.0), ("a", 1.0), ("a", 2.0), ("b", 1.0), ("c", 9.0)]
    got = deliveries(produced, rows)
    assert got == {"a": Delivery(3, 3, 1), "b": Delivery(1, 1, 0), "c": Delivery(0, 1, 0)}
    assert got["a"].missing == 1 and got["b"].missing == 0


def test_series_keeps_changes():
    s = Series()
    for t, v in ((0, 1.0), (1, 1.0), (2, None), (3, None), (4, 2.0)):
        s.add(t, v)
    assert s.samples == [(0, 1.0), (2, None), (4, 2.0)]
