"""Cabinet alarms on the simulated cabinet: door, flood and mains failure driven in the
plant reach the agent through its inputs, become alarms with their transitions in the
outbox at alarm priority, shed the heater, survive in the alarm state file, and a
latched flood alarm needs an acknowledgement."""

from __future__ import annotations

import json

import pytest

from agent.model import Priority
from tests.sim_rig import Rig, rig_config


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
    assert {"alarm.climate.door_open", "alarm.climate.flood", "alarm.climate.ups_on_battery"} <= {p for _, p in alarm_rows}
