"""Same decisions at speed: the example cabinet through a scripted window in real time and on
virtual time as fast as possible, their decision / alarm / quality timelines compared
(tools/rig/timeline.py, tools/bench/rig.py) — and the comparison itself catches a run that
decided otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model import Quality, Reading
from tools.bench import rig as bench
from tools.rig import timeline
from tools.rig.timeline import Entry

T0 = 1_790_000_000.0


def test_a_shifted_a_missing_and_an_extra_decision_are_each_a_difference():
    raised, cleared = ("alarm", "climate.door_open", "raised"), ("alarm", "climate.door_open", "cleared")
    ref = [Entry(6.0, raised), Entry(31.0, cleared)]
    same = [Entry(7.5, raised), Entry(30.0, cleared)]
    assert timeline.compare(ref, same, 6.0) == []
    late = [Entry(19.0, raised), *ref[1:]]
    (d,) = timeline.compare(ref, late, 6.0)
    assert "climate.door_open raised" in d and "6.0 s in the reference, 19.0 s here" in d
    (d,) = timeline.compare(ref, ref[:1], 6.0)
    assert "cleared" in d and "missing here" in d
    extra = [*ref, Entry(40.0, ("alarm", "climate.flood", "raised"))]
    (d,) = timeline.compare(ref, extra, 6.0)
    assert "climate.flood raised: at 40.0 s here, not in the reference" in d


def test_the_timeline_keeps_decisions_alarms_and_quality_changes_and_skips_a_fade(tmp_path: Path):
    from agent.config import load

    config = load(bench.scripted_config(tmp_path))
    good, stale = Quality("good"), Quality("stale")
    rows = [
        Reading("meter_seg1.voltage", T0 + 3, 230.0, good),  # the first good field reading: t = 0
        Reading("lighting.seg3.level", T0 + 2, 100.0, good),
        Reading("lighting.seg3.level", T0 + 10, 99.0, good),  # a fade: each step holds 1 s
        Reading("lighting.seg3.level", T0 + 11, 98.0, good),
        Reading("lighting.seg3.level", T0 + 12, 60.0, good),
        Reading("alarm.climate.flood", T0 + 13, '{"alarm": "climate.flood", "transition": "raised"}', good),
        Reading("meter_seg2.current", T0 + 14, None, stale, "timeout"),
        Reading("meter_seg2.current", T0 + 15, None, stale, "timeout"),  # no change: not an entry
        Reading("meter_seg2.current", T0 + 20, 1.0, good),
    ]
    keys = [(e.t, e.key) for e in timeline.timeline(rows, config)]
    assert keys == [
        (-1.0, ("set", "lighting.seg3.level", "100")),
        (9.0, ("set", "lighting.seg3.level", "60")),
        (10.0, ("alarm", "climate.flood", "raised")),
        (11.0, ("quality", "meter_seg2.current", "stale")),
        (17.0, ("quality", "meter_seg2.current", "good")),
    ]


@pytest.mark.integration
def test_real_time_and_virtual_time_make_the_same_decisions(tmp_path: Path):
    out = bench.faithful(bench.REFERENCE_S, keep=tmp_path)
    assert out["same_decisions"], "\n".join(out["differences"]) + "\n" + "\n".join(out["timeline"])
    seen = "\n".join(out["timeline"])
    for what in (
        "alarm climate.door_open raised",
        "alarm climate.door_open cleared",
        "alarm climate.flood raised",
        "alarm climate.flood cleared",
        "alarm climate.ups_on_battery raised",
        "alarm climate.ups_on_battery cleared",
        "quality meter_seg2.current bad",
        "quality meter_seg2.current good",
    ):
        assert what in seen, f"{what} not in the reference's timeline:\n{seen}"


@pytest.mark.integration
def test_the_day_benchmark_reports_its_keys():
    out = bench.day(300.0)
    assert {"day_s", "cpu_s", "cpu_day_s", "simulated_s", "all_good"} <= set(out)
    assert out["simulated_s"] >= 300.0 and out["all_good"]
    assert out["day_s"] > out["wall_s"]  # scaled from 300 s to a day
