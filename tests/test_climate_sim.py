"""Cabinet climate and alarms on the simulated cabinet: a hot cabinet cooled by the fan
within its thermostat band, a failed fan detected within the configured time; door,
flood and mains failure driven in the plant reach the agent through its inputs, become
alarms with their transitions in the outbox at alarm priority, shed the heater, survive
in the alarm state file, and a latched flood alarm needs an acknowledgement."""

from __future__ import annotations

import itertools
import json

import pytest

from agent.model import Priority
from boards.sim.plant import Weather
from tests.sim_rig import Rig, rig_config

pytestmark = pytest.mark.integration  # the agent against the simulated cabinet, in accelerated time


@pytest.fixture
async def rig(tmp_path):
    r = await Rig(rig_config(), "2026-11-22T12:00:00+00:00", 30.0, tmp_path).start()
    yield r
    await r.stop()


def transitions(rig: Rig, alarm_id: str) -> list[tuple[str, str]]:
    return [(v["transition"], v["state"]) for _, v in rig.stored(f"alarm.{alarm_id}")]


async def test_door_flood_and_mains_failure(rig):
    await rig.until(rig.wall() + 30)
    assert not {a for a in rig.alarm_ids() if a.startswith("climate.")}
    assert rig.app.controls.status()["climate"]["mode"] == "normal"

    rig.sim.set_input("door_open", True)
    await rig.until(rig.wall() + 15)
    assert "climate.door_open" in rig.alarm_ids()
    rig.sim.set_input("door_open", False)
    await rig.until(rig.wall() + 15)
    assert "climate.door_open" not in rig.alarm_ids()
    assert transitions(rig, "climate.door_open") == [("raised", "active"), ("cleared", "cleared")]

    rig.sim.set_input("flood", True)
    await rig.until(rig.wall() + 10)
    assert "climate.flood" in rig.alarm_ids()
    climate = rig.app.controls.status()["climate"]
    assert climate["flooded"] and "relays.relay_8" in climate["shed"]  # no heater with water inside
    assert rig.app.image.value("relays.relay_8", rig.clock.monotonic()) is False
    rig.sim.set_input("flood", False)
    await rig.until(rig.wall() + 10)
    flood = next(a for a in rig.app.controls.alarms.active() if a["id"] == "climate.flood")
    assert flood["state"] == "latched" and flood["severity"] == "critical"  # water gone, nobody has looked yet
    saved = json.loads((rig.dir / "agent" / "state" / "alarms.json").read_text())
    assert "climate.flood" in json.dumps(saved)
    await rig.app.controls.acknowledge({"id": "climate.flood", "by": "technician"})
    assert "climate.flood" not in rig.alarm_ids()
    await rig.app.outbox.flush()
    assert transitions(rig, "climate.flood")[-1] == ("acknowledged", "cleared")

    rig.sim.set_input("mains_ok", False)  # the DC-UPS carries the cabinet
    await rig.until(rig.wall() + 20)
    assert "climate.ups_on_battery" in rig.alarm_ids()
    assert rig.app.controls.status()["climate"]["on_battery"]
    rig.sim.set_input("mains_ok", True)
    await rig.until(rig.wall() + 20)
    assert "climate.ups_on_battery" not in rig.alarm_ids()

    alarm_rows = [(prio, r.point) for prio, r in rig.app.outbox.peek(100_000) if r.point.startswith("alarm.")]
    assert alarm_rows and all(prio == Priority.ALARM for prio, _ in alarm_rows)
    assert {"alarm.climate.door_open", "alarm.climate.flood", "alarm.climate.ups_on_battery"} <= {
        p for _, p in alarm_rows
    }


async def test_hot_cabinet_fan_band_and_a_failed_fan_alarm(tmp_path):
    """Summer midday, the cabinet at 37 °C: the fan (on 35, off 30) cools it; then the fan
    stops moving air and the indirect check ([climate.fan_check]: 0.5 K within 1200 s)
    raises climate.fan_failed in time. The climate sensor is polled every 50 s here."""
    rig = Rig(rig_config(), "2026-07-15T10:00:00+00:00", 120.0, tmp_path)
    plant = rig.sim.plant
    plant.weather = Weather(mean_c=20, swing_c=5, mean_rh=45, swing_rh=10)
    plant.cabinet_c = 37.0
    await rig.start()
    assert rig.app is not None
    try:
        t0, low = rig.wall(), [99.0]
        switches: list[tuple[float, bool, float]] = []  # (wall, fan on, cabinet °C) at each switch

        def watch():
            if not switches or switches[-1][1] != plant.fan_on:
                switches.append((rig.wall(), plant.fan_on, plant.cabinet_c))
            if len(switches) >= 2:
                low[0] = min(low[0], plant.cabinet_c)

        await rig.until(t0 + 15 * 60, watch=watch)
        on = [s for s in switches if s[1]]
        off = [s for s in switches[1:] if not s[1]]
        assert on and on[0][0] - t0 < 120 and on[0][2] > 35  # on soon after the first reading
        assert off and 29.0 < off[0][2] < 30.5  # off at the bottom of the band
        assert all(b[0] - a[0] >= 60 for a, b in itertools.pairwise(switches[1:]))  # no short cycling
        assert low[0] > 28.5 and "climate.fan_failed" not in rig.alarm_ids()

        plant.fan_failed = True  # the fan runs but moves no air, on a hotter afternoon
        plant.weather = Weather(mean_c=26, swing_c=5, mean_rh=45, swing_rh=10)
        plant.cabinet_c = 35.5
        t1 = rig.wall()
        await rig.until(t1 + 27 * 60, watch=watch)
        started = next(s[0] for s in switches if s[1] and s[0] > t1)
        await rig.app.outbox.flush()
        raised = [v for _, v in rig.stored("alarm.climate.fan_failed") if v["transition"] == "raised"]
        assert raised, (
            rig.alarm_ids(),
            [(round((s[0] - t1) / 60, 1), s[1], round(s[2], 2)) for s in switches],
            rig.app.controls.status()["climate"],
        )
        # the verdict comes with the first reading after 1200 s (polled every 50 s); the
        # watcher sees the fan start up to ~6 simulated seconds late (it looks every 50 ms)
        assert started + 1200 - 15 <= raised[0]["t"] <= started + 1200 + 180
    finally:
        await rig.stop()
