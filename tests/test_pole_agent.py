"""The real agent (tests/sim_rig.py: poller, process image, lighting controller, alarms)
against simulated pole nodes (the firmware's PoleNode) on an emulated 9600-Bd line: per-pole
lamp failure, one cable alarm for a cut, the node's fail-safe once the cabinet is silent.

The example cabinet with 8 pole nodes on segment2 (seg2), Berlin at night, 20x speed, the
poles polled every 20 simulated seconds (1 s of wall time for 8 poles at 9600 Bd)."""

from __future__ import annotations

import asyncio

import pytest

from agent.control.lighting import poles as pole_watch
from boards.pole_node import regmap
from drivers import profiles
from tests.sim_rig import Rig
from tests.test_pole_sim import GAP, NIGHT, POLES, pole_config

pytestmark = pytest.mark.integration  # the agent against the simulated cabinet, in accelerated time

SPEED = 20.0


@pytest.fixture
async def rig(tmp_path):
    config = pole_config(poll_s=20.0, extra="")
    r = await Rig(config, NIGHT, SPEED, tmp_path).start()
    yield r
    await r.stop()


async def lit(rig: Rig, within_s: float = 600.0) -> None:
    """Until seg2 is on at steady state and every pole answered at least once."""
    end = rig.wall() + within_s
    while rig.wall() < end:
        d = rig.segment("seg2")
        if d["on"] and rig.sim.plant.circuit_on("segment2"):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"seg2 not on within {within_s} s: {rig.segment('seg2')}")
    await rig.until(rig.wall() + 120)  # warm-up and settle


async def wait_alarm(rig: Rig, cid: str, within_s: float) -> None:
    end = rig.wall() + within_s
    while cid not in rig.alarm_ids():
        if rig.wall() > end:
            pytest.fail(f"{cid} not raised within {within_s} simulated s; active: {sorted(rig.alarm_ids())}")
        await asyncio.sleep(0.1)


def test_profile_matches_the_firmware_map():
    assert "level_command" not in {pt.key for pt in profiles.get("pole_node").build({}).points}  # 1 request
    p = profiles.get("pole_node").build({"level": True})
    by_key = {pt.key: pt for pt in p.points}
    for address, name, _words, _unit, _note in regmap.INPUTS:
        if name in by_key:
            assert by_key[name].address == address, name
    assert by_key["status"].address == 16 and by_key["level_command"].address == regmap.LEVEL_COMMAND
    for i, name, _text in regmap.STATUS_BITS:
        key = {"tilt": "tilt_alarm"}.get(name, name)
        assert by_key[key].bit == i and by_key[key].address == 16, name
    assert {c.point.address: c.default for c in p.config} == {r[0]: r[4] for r in regmap.HOLDING[1:]}
    bits = {name: 1 << i for i, name, _ in regmap.STATUS_BITS}
    assert {k: bits[{"tilt": "tilt", "door": "door_open"}.get(k, k)] for k in pole_watch.BITS} == pole_watch.BITS


async def test_lamp_failure_on_pole7_is_reported_as_pole7(rig):
    await lit(rig)
    assert not [a for a in rig.alarm_ids() if ".pole" in a]
    await rig.sim.command({"cmd": "pole", "pole": "pole7", "lamp": "failed"})
    await wait_alarm(rig, "lighting.seg2.pole7.lamp_failure", within_s=180)
    alarms = {a["id"]: a for a in rig.app.controls.alarms.active()}
    assert [a for a in alarms if ".pole" in a] == ["lighting.seg2.pole7.lamp_failure"]
    assert "pole7" in alarms["lighting.seg2.pole7.lamp_failure"]["message"]
    assert "lighting.seg2.cable_cut" not in alarms
    # per-pole telemetry: the nodes' burning hours and energy are points like any other
    mono = rig.clock.monotonic()
    assert rig.app.image.value("pole1.active_energy", mono) >= 0
    assert rig.app.image.value("pole7.luminaire_state", mono) == "failed"


async def test_cable_cut_after_pole4_is_one_cable_alarm_not_lamp_failures(rig):
    await lit(rig)
    await rig.sim.command({"cmd": "pole", "pole": "pole4", "cut_after": True})
    await wait_alarm(rig, "lighting.seg2.cable_cut", within_s=400)
    alarms = {a["id"]: a for a in rig.app.controls.alarms.active()}
    msg = alarms["lighting.seg2.cable_cut"]["message"]
    assert "between pole4 and pole5" in msg and "pole5..pole8 silent" in msg
    assert alarms["lighting.seg2.cable_cut"]["severity"] == "critical"
    assert not [a for a in alarms if ".pole" in a], "no per-pole alarms for the silent poles"
    assert "lighting.seg2.lamp_failure" not in alarms, "nor the segment meter's lamp failure"
    assert "lighting.seg2.cable_theft" not in alarms  # no door opened
    await rig.sim.command({"cmd": "pole", "pole": "pole4", "cut_after": False})
    end = rig.wall() + 400
    while "lighting.seg2.cable_cut" in rig.alarm_ids() and rig.wall() < end:
        await asyncio.sleep(0.1)
    assert "lighting.seg2.cable_cut" not in rig.alarm_ids()


async def test_door_and_current_drop_at_night_is_cable_theft(rig):
    await lit(rig)
    await rig.sim.command({"cmd": "pole", "pole": "pole5", "door": True})
    await wait_alarm(rig, "lighting.seg2.pole5.door", within_s=120)
    assert "lighting.seg2.cable_theft" not in rig.alarm_ids()  # door alone: a technician
    await rig.sim.command({"cmd": "pole", "pole": "pole5", "cut_after": True})
    await wait_alarm(rig, "lighting.seg2.cable_theft", within_s=200)
    theft = next(a for a in rig.app.controls.alarms.active() if a["id"] == "lighting.seg2.cable_theft")
    assert theft["severity"] == "critical" and "pole5" in theft["message"]


async def test_silent_cabinet_node_failsafe_keeps_the_lamp_on_at_night(rig):
    from pymodbus.client import AsyncModbusSerialClient

    await lit(rig)
    await rig.app.stop()  # the cabinet stops polling
    rig.app = None
    await asyncio.sleep(0.2)  # the reply the agent was waiting for, if any, has left the line
    port = rig.sim.endpoints_info()["buses"]["poles"][1]
    client = AsyncModbusSerialClient(port, baudrate=9600, timeout=1, retries=0)
    await client.connect()
    try:  # a technician's master commands pole3 to 30 % and shortens its fail-safe timeout to 60 s
        assert not (await client.write_registers(0, [30, 60], device_id=3)).isError()
        await asyncio.sleep(GAP)
        await rig.until(rig.wall() + 5)
        assert (await client.read_input_registers(10, count=2, device_id=3)).registers == [30, 30]
    finally:
        client.close()
    pole = rig.sim.state()["poles"]["segment2"]["poles"]["pole3"]
    assert pole["level"] == 30 and not pole["status"] & regmap.CABINET_SILENT
    await rig.until(rig.wall() + 70)  # nobody polls for longer than the timeout
    pole = rig.sim.state()["poles"]["segment2"]["poles"]["pole3"]
    assert pole["status"] & regmap.CABINET_SILENT
    assert pole["level"] == 100 and pole["power_w"] == pytest.approx(60.0)  # its default level, lamp burning
    others = rig.sim.state()["poles"]["segment2"]["poles"]
    assert all(others[p]["power_w"] > 0 for p in POLES)
