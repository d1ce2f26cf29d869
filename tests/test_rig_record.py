"""The rig's run record: a synthetic day of the example cabinet (shared by the other rig
tests), JSON round trip, and record files that are not records refused with the field."""

from __future__ import annotations

import datetime as dt
import json
import math
from zoneinfo import ZoneInfo

import pytest

from agent.control.lighting.astro import AstroClock
from tools.rig import record as rec
from tools.rig.record import (
    AgentExit,
    AlarmInterval,
    Decision,
    Delivery,
    Event,
    Injected,
    RecordError,
    RunRecord,
    RunSite,
    segment_series,
)

BERLIN = (52.5219, 13.4132, "Europe/Berlin")
START = dt.datetime(2026, 6, 21, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
DAY = 86400.0


def synthetic(step: float = 300.0, crashed: bool = False) -> RunRecord:
    """A day at Alexanderplatz from noon: seg1 and seg2 on from sunset to sunrise, seg3 dimmed
    after 22:00, half of seg2's lamps failed at 02:00 (lamp_failure raised 02:03, cleared after
    the 04:00 repair), a door alarm acknowledged, every reading delivered once."""
    lat, lon, tz = BERLIN
    astro = AstroClock(lat, lon, 0.0, tz)
    night = astro.night_of(dt.date(2026, 6, 21))
    sunset, sunrise = night.sunset, night.sunrise
    assert sunset is not None and sunrise is not None
    t22 = START + 10 * 3600  # 22:00
    t02, t04 = START + 14 * 3600, START + 16 * 3600
    site = RunSite(lat, lon, tz)
    r = RunRecord("synthetic", "synthetic.toml", "CAB-SIM-0001", site, START, START + DAY, None)
    r.segments, r.photocell, r.wall_s = ("seg1", "seg2", "seg3"), (35.0, 55.0), 12.5
    ts = [START + i * step for i in range(int(DAY / step) + 1)]
    sun = [(t, astro.elevation(t)) for t in ts]
    r.series[rec.SUN] = list(sun)
    r.series[rec.LUX] = [(t, max(0.1, 400 + 1000 * e) if e > 0 else max(0.1, 400 * 10 ** (e / 2))) for t, e in sun]
    lit = [(t, sunset + 60 <= t < sunrise + 60) for t in ts]
    for seg, watts in (("seg1", 1800.0), ("seg2", 1200.0), ("seg3", 2400.0)):
        r.series[segment_series(seg, "on")] = [(t, 1.0 if on else 0.0) for t, on in lit]
        factor = [(0.5 if seg == "seg2" and t02 <= t < t04 else 1.0) for t in ts]
        r.series[segment_series(seg, "power_w")] = [
            (t, watts * f if on else 0.0) for (t, on), f in zip(lit, factor, strict=True)
        ]
        kwh, energy = 0.0, list[tuple[float, float | None]]()
        for t, p in r.series[segment_series(seg, "power_w")]:
            energy.append((t, kwh))
            kwh += (p or 0.0) * step / 3.6e6
        r.series[segment_series(seg, "energy_kwh")] = energy
        r.agent_energy_kwh[seg] = kwh
        r.plant_energy_kwh[seg] = kwh * 1.01
    r.series[segment_series("seg3", "level")] = [(t, (70.0 if t >= t22 else 100.0) if on else 0.0) for t, on in lit]
    r.series[rec.TEMPERATURE] = [(t, 25 + 8 * math.sin((t - START) / DAY * 2 * math.pi)) for t in ts]
    r.series[rec.HUMIDITY] = [(t, 55 - 10 * math.sin((t - START) / DAY * 2 * math.pi)) for t in ts]
    r.series[rec.DEW_POINT] = [(t, 12.0) for t in ts]
    r.series[rec.FAN] = [(t, 1.0 if (v or 0) > 31 else 0.0) for t, v in r.series[rec.TEMPERATURE]]
    r.series[rec.HEATER] = [(t, 0.0) for t in ts]
    for seg in ("seg1", "seg2", "seg3"):
        r.decisions.append(Decision(START, seg, False, None, "program:evening"))
        r.decisions.append(Decision(sunset + 60, seg, True, 100.0 if seg == "seg3" else None, "program:evening"))
        r.decisions.append(Decision(sunrise + 60, seg, False, None, "program:evening"))
    r.decisions.append(Decision(t22, "seg3", True, 70.0, "program:evening"))
    r.decisions.sort(key=lambda d: d.t)
    r.alarms = [
        AlarmInterval("lighting.seg2.lamp_failure", "warning", t02 + 180, t04 + 150, None, "lamp failure"),
        AlarmInterval("climate.door_open", "warning", START + 3600, START + 4200, START + 3900, "door open"),
    ]
    r.events = [Event(sunset + 60, "event.lighting.switched", "seg1 on", {"segment": "seg1"})]
    r.actions = [
        Injected(START + 3600, "door", {"open": True}, "door_open = true"),
        Injected(START + 4200, "door", {"open": False}, "door_open = false"),
        Injected(t02, "lamps_failed", {"circuit": "segment2", "share": 0.5}, "circuit segment2: 50% failed"),
        Injected(t04, "lamps_failed", {"circuit": "segment2", "share": 0.0}, "circuit segment2: 0% failed"),
    ]
    r.qualities = {
        "lux.lux": [(START + 5, "good")],
        "meter_seg2.active_power": [(START + 5, "good"), (t02 + 600, "bad"), (t02 + 900, "good")],
    }
    r.deliveries = {"lux.lux": Delivery(500, 500), "meter_seg2.active_power": Delivery(300, 300)}
    if crashed:
        r.exit = AgentExit("crashed", 1, "exited during the run", ("INFO starting", "ERROR boom: <&> \x01"))
    return r


def test_round_trip_through_json(tmp_path):
    r = synthetic(crashed=True)
    path = tmp_path / "run.json"
    rec.save(r, path)
    back = rec.load(path)
    assert back == r
    assert back.exit.crashed and back.exit.log_tail[-1].endswith("\x01")
    assert json.loads(path.read_text())["format"] == rec.FORMAT


def test_value_at_is_the_last_sample_at_or_before():
    r = synthetic()
    t = r.series[segment_series("seg3", "level")][10][0]
    assert r.value_at(segment_series("seg3", "level"), t + 1) == r.series[segment_series("seg3", "level")][10][1]
    assert r.value_at("no.such.series", t) is None
    assert r.value_at(rec.SUN, r.start - 1) is None


def test_delivery_missing_counts_unique_rows():
    assert Delivery(10, 10).missing == 0
    assert Delivery(10, 11, duplicates=1).missing == 0
    assert Delivery(10, 9, duplicates=1).missing == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(format=99), "format"),
        (lambda d: d.update(start="noon"), "start"),
        (lambda d: d["alarms"][0].update(raised=None), "alarms[0].raised"),
        (lambda d: d["decisions"][2].update(on="yes"), "decisions[2].on"),
        (lambda d: d["series"]["lux"].append([1.0]), "series.lux"),
        (lambda d: d["deliveries"]["lux.lux"].update(produced=1.5), "deliveries.lux.lux.produced"),
        (lambda d: d["exit"].update(status="exploded"), "exit.status"),
        (lambda d: d.update(site=[]), "site"),
    ],
)
def test_a_bad_record_names_the_field(change, field):
    d = json.loads(json.dumps(synthetic().to_dict()))
    change(d)
    with pytest.raises(RecordError) as e:
        RunRecord.from_dict(d, "run.json")
    assert str(e.value).startswith(f"run.json: {field}: expected"), str(e.value)


def test_a_file_that_is_not_json(tmp_path):
    p = tmp_path / "run.json"
    p.write_text("{nope")
    with pytest.raises(RecordError, match=r"run\.json: not JSON"):
        rec.load(p)
    with pytest.raises(RecordError, match="cannot read"):
        rec.load(tmp_path / "missing.json")
