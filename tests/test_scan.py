"""`cabinet scan` against the simulated cabinet's RS-485 line and TCP endpoint."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.entry import board_infos
from boards.sim.cabinet import SimCabinet
from drivers.modbus.engine import BusEngine
from tools.scan.probe import parse_units, report, scan


@pytest.fixture
async def sim(tmp_path):
    config = cfg.load(cfg.EXAMPLE, board_infos())
    cab = SimCabinet(config, tmp_path / "sim", ScaledClock(1.0))
    ep = await cab.start()
    yield cab, ep
    await cab.stop()


@pytest.mark.integration  # the simulated cabinet
async def test_scan_finds_and_recognizes_the_rtu_devices(sim):
    _, ep = sim
    engine = BusEngine.rtu("scan", ep["buses"]["rs485"][1], baudrate=9600, timeout_ms=60)
    seen = []
    found = await scan(engine, parse_units("1-3,9-11,20,30,31"), progress=lambda d, t, n: seen.append((d, t, n)))
    await engine.close()
    by_unit = {f.unit: f for f in found}
    assert set(by_unit) == {1, 2, 3, 10, 20, 30}
    assert by_unit[1].profile == "sdm630" and by_unit[2].profile == "sdm120" and by_unit[3].profile == "sdm120"
    assert by_unit[10].profile == "xy-md02" and by_unit[20].profile == "relay-board"
    assert by_unit[30].profile == "lux"
    assert seen[-1] == (9, 9, 6)
    assert "sdm630" in report(found, False) and json.loads(report(found, True))[0]["unit"] == 1


@pytest.mark.integration  # the simulated cabinet
async def test_scan_tcp_dali_gateway(sim):
    _, ep = sim
    _, host, port = ep["buses"]["dali"]
    engine = BusEngine.tcp("scan", host, port, timeout_ms=100)
    found = await scan(engine, [1, 2])
    await engine.close()
    assert [(f.unit, f.profile) for f in found] == [(1, "dali-gateway")]


def test_parse_units():
    assert parse_units("1-3,7") == [1, 2, 3, 7]
    with pytest.raises(ValueError):
        parse_units("0-5")


@pytest.mark.integration  # the simulated cabinet and a `cabinet scan` process
async def test_scan_command_against_a_sim_port(sim):
    _, ep = sim
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "scan",
        "--port",
        ep["buses"]["rs485"][1],
        "--units",
        "9-10",
        "--timeout-ms",
        "60",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)  # the sim runs in this loop: never block it
    assert proc.returncode == 0, err.decode()
    assert [(f["unit"], f["profile"]) for f in json.loads(out)] == [(10, "xy-md02")]
