"""The rig reads what the agent did back from the agent's own outbox into a RunRecord."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import WallClock
from agent.control.alarms.model import AlarmEvent
from agent.control.lighting.model import Event
from agent.model import Priority, Quality, Reading
from agent.outbox.writer import Outbox
from agent.runtime.entry import board_infos
from tools.rig import record as R
from tools.rig.collect import CollectError, fill, readings, series_names

T0 = 1_780_000_000.0
CONFIG = cfg.load(cfg.EXAMPLE, board_infos())


def alarm(t: float, transition: str, alarm_id: str = "climate.door_open") -> Reading:
    state = {"raised": "active", "acknowledged": "acknowledged", "cleared": "cleared"}[transition]
    return AlarmEvent(alarm_id, "dio.door", "warning", transition, state, "door open", T0 + t).to_reading()


def switched(t: float, seg: str, on: bool) -> Reading:
    data = {"on": on, "level": 80 if on else None, "reason": "program:p", "detail": "astro"}
    doc = Event("switched", f"{seg} {'on' if on else 'off'}", seg, data).to_dict()
    return Reading("event.lighting.switched", T0 + t, json.dumps(doc), Quality.GOOD)


def record() -> R.RunRecord:
    site = R.RunSite(52.5, 13.4, "Europe/Berlin")
    return R.RunRecord("s", "s.toml", "CAB", site, T0, T0 + 3600, None, segments=("seg1", "seg2", "seg3"))


async def test_readings_alarms_events_and_series_come_back(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    ob = Outbox(db, clock=WallClock())
    await ob.start()
    try:
        await ob.put([Reading("lighting.seg1.on", T0 + 5, True, Quality.GOOD), switched(5, "seg1", True)])
        await ob.put(
            [
                Reading("lux.lux", T0 + 1, 12.5, Quality.GOOD),
                Reading("lux.lux", T0 + 3, math.nan, Quality.BAD, "timeout"),
                Reading("lighting.seg1.energy_kwh", T0 + 10, 1.5, Quality.GOOD),
                Reading("lighting.seg1.energy_kwh", T0 + 3000, 2.25, Quality.GOOD),
            ]
        )
        await ob.put(
            [alarm(10, "raised"), alarm(20, "acknowledged"), alarm(30, "cleared"), alarm(40, "raised")], Priority.ALARM
        )
        await ob.flush()
        rs = readings(db)  # read while the agent still holds the file
    finally:
        await ob.close()
    rec = fill(record(), rs, CONFIG)
    # reported by exception: each value holds until the run's last reading (t = 3000)
    assert [(t - T0, v) for t, v in rec.series[R.LUX]] == [(1, 12.5), (3, None), (3000, None)]
    assert rec.qualities["lux.lux"] == [(T0 + 1, "good"), (T0 + 3, "bad")]
    assert rec.series[R.segment_series("seg1", "on")] == [(T0 + 5, 1.0), (T0 + 3000, 1.0)]
    sun = rec.series[R.SUN]  # Berlin, 2026-05-28 20:26 UTC to 21:26 UTC: the sun going down
    first, last = sun[0][1], sun[-1][1]
    assert sun[0][0] == T0 and sun[-1][0] == T0 + 3600
    assert first is not None and last is not None and first > last
    assert rec.agent_energy_kwh == {"seg1": pytest.approx(0.75)}
    assert [(d.segment, d.on, d.level, d.reason) for d in rec.decisions] == [("seg1", True, 80.0, "program:p")]
    assert [(a.id, a.raised - T0, a.acked and a.acked - T0, a.cleared and a.cleared - T0) for a in rec.alarms] == [
        ("climate.door_open", 10, 20, 30),
        ("climate.door_open", 40, None, None),
    ]
    assert rec.alarms[0].severity == "warning"
    assert [e.kind for e in rec.events] == ["event.lighting.switched"]


def test_the_example_cabinets_points_map_onto_the_record() -> None:
    names = series_names(CONFIG)
    assert names["lux.lux"] == R.LUX
    assert names["meter_seg1.active_power"] == R.segment_series("seg1", "power_w")
    assert names["climate.temperature"] == R.TEMPERATURE and names["dio.fan"] == R.FAN
    assert names["relays.relay_8"] == R.HEATER


def test_no_outbox_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CollectError, match="no outbox"):
        readings(tmp_path / "outbox.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CollectError, match=r"junk\.db"):
        readings(tmp_path / "junk.db")
