"""The whole agent against the simulated cabinet: in-process app with the status
socket, faults through the sim reaching point quality, and the real `cabinet run`
command in a subprocess answering `cabinet status --json` within 10 s."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.app import App, Endpoints
from agent.runtime.entry import board_infos
from agent.runtime.status_api import SOCKET_NAME, fetch
from boards.sim.cabinet import SimCabinet
from boards.sim.control import ControlServer, send
from drivers.dio import FilePinsDIO
from tests.conftest import wait_until

pytestmark = pytest.mark.integration  # the agent against the simulated cabinet; `cabinet` CLI processes


@pytest.fixture
async def running(tmp_path):
    config = cfg.load(cfg.EXAMPLE, board_infos())
    clock = ScaledClock(1.0)
    sim = SimCabinet(config, tmp_path / "sim", clock)
    ep = await sim.start()
    app = App(
        config,
        data_dir=tmp_path,
        clock=clock,
        endpoints=Endpoints(
            buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep["gps"], dio=FilePinsDIO(ep["pins"])
        ),
    )
    await app.start()
    control = ControlServer(sim, tmp_path / "sim" / "control.sock")
    await control.start()
    yield app, sim, tmp_path
    await control.close()
    await app.stop()
    await sim.stop()


def point(doc, name):
    return next(p for p in doc["points"] if p["name"] == name)


async def test_all_points_good_and_status_socket(running):
    _, _, data_dir = running
    sock = data_dir / SOCKET_NAME

    async def all_good() -> bool:
        doc = await fetch(sock)
        return all(p["quality"] == "good" for p in doc["points"])

    deadline = time.monotonic() + 10
    while not await all_good():
        assert time.monotonic() < deadline, [p for p in (await fetch(sock))["points"] if p["quality"] != "good"]
        await asyncio.sleep(0.2)
    doc = await fetch(sock)
    assert doc["cabinet"]["id"] == "CAB-SIM-0001"
    assert {"name", "value", "unit", "quality", "age_s"} <= set(doc["points"][0])
    assert {b["name"] for b in doc["buses"]} == {"rs485", "dali"}
    rs485 = next(b for b in doc["buses"] if b["name"] == "rs485")
    assert rs485["state"] == "up" and rs485["requests_per_cycle"] == sum(
        d["requests_per_poll"] for d in rs485["devices"]
    )
    assert point(doc, "climate.temperature")["unit"] == "°C"
    assert point(doc, "gps.latitude")["value"] == pytest.approx(52.5219, abs=1e-3)
    assert (await fetch(sock, "/health"))["ok"] is True
    with pytest.raises(OSError, match="404"):
        await fetch(sock, "/nope")


async def test_faults_and_inputs_reach_the_agent(running):
    app, sim, _ = running
    await wait_until(lambda: app.image.value("lux.lux", app.clock.monotonic()) is not None, timeout=10)
    sim.device_fault("lux", "silent")
    await wait_until(lambda: app.image.get("lux.lux", app.clock.monotonic())[0].quality.value == "bad", timeout=10)
    assert app.image.get("lux.lux", app.clock.monotonic())[0].reason == "no response"
    assert app.image.value("climate.temperature", app.clock.monotonic()) is not None
    sim.device_fault("lux", None)
    await wait_until(lambda: app.image.value("lux.lux", app.clock.monotonic()) is not None, timeout=10)

    sim.set_input("door_open", True)
    await wait_until(lambda: app.image.value("dio.door", app.clock.monotonic()) is True, timeout=5)


async def test_control_socket_drives_the_sim(running):
    app, sim, _ = running
    sock = sim.dir / "control.sock"
    ok = await send(sock, {"cmd": "fault", "device": "climate", "kind": "crc"})
    assert ok["ok"] and "lux" in ok["state"]
    await wait_until(
        lambda: (
            (app.image.get("climate.humidity", app.clock.monotonic())[0] or None) is not None
            and app.image.get("climate.humidity", app.clock.monotonic())[0].reason == "CRC error"
        ),
        timeout=15,
    )
    assert (await send(sock, {"cmd": "clear", "device": "climate"}))["ok"]
    assert (await send(sock, {"cmd": "set", "input": "flood", "value": True}))["state"]["flood"] is True
    await wait_until(lambda: app.image.value("dio.flood", app.clock.monotonic()) is True, timeout=5)
    bad = await send(sock, {"cmd": "explode"})
    assert not bad["ok"] and "unknown cmd" in bad["error"]
    assert not (await send(sock, {"cmd": "fault", "device": "nosuch", "kind": "silent"}))["ok"]
    assert not (await send(sock, {"cmd": "fault", "device": "climate", "kind": "melt"}))["ok"]


async def test_relay_write_drives_the_plant_and_meter(running):
    app, sim, _ = running
    await wait_until(lambda: app.image.value("meter_seg1.active_power", app.clock.monotonic()) is not None, timeout=10)
    assert app.image.value("meter_seg1.active_power", app.clock.monotonic()) == 0
    await app.pollers["rs485"].write("relays", "relay_1", True)
    assert sim.plant.circuit_on("segment1")
    await wait_until(
        lambda: (app.image.value("meter_seg1.active_power", app.clock.monotonic()) or 0) > 1500, timeout=10
    )


def test_cabinet_run_and_status_json_within_10_seconds(tmp_path: Path):
    env = {**os.environ, "CABINET_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        doc = None
        while time.monotonic() - started < 10:
            r = subprocess.run(
                [sys.executable, "-m", "tools.cli", "status", "--json"], env=env, capture_output=True, text=True
            )
            if r.returncode == 0:
                doc = json.loads(r.stdout)
                if doc["points"] and all(p["quality"] == "good" for p in doc["points"]):
                    break
            time.sleep(0.3)
        elapsed = time.monotonic() - started
        assert doc is not None, "the agent never answered"
        bad = [p for p in doc["points"] if p["quality"] != "good"]
        assert not bad and elapsed < 10, (elapsed, bad)
        assert len(doc["points"]) >= 100
        r = subprocess.run([sys.executable, "-m", "tools.cli", "status"], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and "points good" in r.stdout and "bus rs485" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert not (tmp_path / SOCKET_NAME).exists()
    r = subprocess.run([sys.executable, "-m", "tools.cli", "status"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "no agent answering" in r.stderr


async def test_output_on_a_pin_is_written_verified_and_drives_the_fan(running):
    """A write by hand drives the plant's fan; the climate controller (cabinet at ~17 °C:
    fan off) sees the verified reading and re-asserts its own decision within 5 s."""
    app, sim, _ = running
    await wait_until(lambda: app.controls.steps > 2 and "dio.fan" in app.actuator.state, timeout=10)
    assert app.actuator.state["dio.fan"].desired is False
    await app.dio.write("fan", True)
    assert app.image.value("dio.fan", app.clock.monotonic()) is True
    await wait_until(lambda: sim.plant.fan_on, timeout=5)
    await wait_until(lambda: not sim.plant.fan_on, timeout=10)  # re-asserted by the control loop
    assert app.image.value("dio.fan", app.clock.monotonic()) is False and app.actuator.state["dio.fan"].writes >= 2
    with pytest.raises(KeyError):
        await app.dio.write("nosuch", True)


async def test_scripted_faults_run_on_the_sim_clock(tmp_path):
    text = (
        cfg.EXAMPLE.read_text()
        + """
[[sim.script]]
at_s = 0.3
cmd = "fault"
device = "lux"
kind = "exception"
exception_code = 6
[[sim.script]]
at_s = 0.6
cmd = "set"
input = "door_open"
value = true
[[sim.script]]
at_s = 0.9
cmd = "clear"
device = "lux"
"""
    )
    config = cfg.loads(text, "scripted.toml", board_infos())
    sim = SimCabinet(config, tmp_path / "sim", ScaledClock(1.0))
    await sim.start()
    try:
        await wait_until(lambda: sim.script_done >= 1, timeout=5)
        fault = sim.faults["rs485"].get(30)
        assert fault is not None
        assert fault.exception_code == 6
        await wait_until(lambda: sim.script_done == 3, timeout=5)
        assert sim.plant.door_open and sim.faults["rs485"].get(30) is None
    finally:
        await sim.stop()


def test_a_second_agent_on_the_same_data_dir_is_refused(tmp_path: Path):
    from agent.runtime.datadir import DataDirBusy, DataDirLock

    with DataDirLock(tmp_path):
        with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}"):
            DataDirLock(tmp_path).acquire()
        r = subprocess.run(
            [sys.executable, "-m", "tools.cli", "run", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 1 and "another agent" in r.stderr
    DataDirLock(tmp_path).acquire().release()  # free again once the holder is gone


async def test_a_crashing_loop_is_restarted_not_fatal(running):
    app, _, _ = running
    calls = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        await asyncio.sleep(3600)

    app._spawn("flaky", flaky)
    await wait_until(lambda: len(calls) == 2, timeout=5)
    assert app.restarts == {"flaky": 1} and app.status()["task_restarts"] == {"flaky": 1}
