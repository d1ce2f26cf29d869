"""Simulated pole nodes (boards/sim/poles.py): the firmware's own PoleNode behind the
emulated 9600-baud RS-485 line, read by a third-party Modbus master (the pymodbus client)
as docs/pole-node.md documents the map, and their plant driven by control messages."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.entry import board_infos
from boards.pole_node import regmap
from boards.sim.cabinet import SimCabinet
from boards.sim.commands import CommandError

pytestmark = pytest.mark.integration  # ptys in real time

POLES = [f"pole{k}" for k in range(1, 9)]
GAP = 0.02  # s between requests: a master leaves the line quiet at least 3.5 characters (4 ms)
NIGHT = "2026-11-22T20:00:00+00:00"  # Berlin: dark


def pole_toml(count: int = 8, baudrate: int = 9600, poll_s: float = 2.0, first_unit: int = 1) -> str:
    """A bus `poles` on the board's second RS-485 port with `count` pole_node devices."""
    bus = f'[buses.poles]\ntype = "rtu"\nport = "rs485-2"\nbaudrate = {baudrate}\nparity = "N"\nstopbits = 1\n'
    out = [bus + "timeout_ms = 200\nretries = 0\n"]
    for k in range(count):
        out.append(
            f'[devices.pole{k + 1}]\nbus = "poles"\nunit = {first_unit + k}\nprofile = "pole_node"\npoll_s = {poll_s}\n'
        )
    return "\n".join(out)


def pole_config(count: int = 8, poll_s: float = 2.0, lighting: bool = True, extra: str = "") -> cfg.Config:
    """The example cabinet with `count` pole nodes on segment2 (seg2): the main line at
    115200 Bd as in tests/sim_rig.py, the poles on their own 9600-Bd line."""
    text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", "baudrate = 115200", 1)
    text = re.sub(r"(?m)^poll_s = ([0-9.]+)", lambda m: f"poll_s = {float(m.group(1)) * 5}", text)
    names = ", ".join(f'"pole{k + 1}"' for k in range(count))
    text = text.replace("load_w = 1200.0\n", f"load_w = 1200.0\npoles = [{names}]\n", 1)
    if lighting:
        text = text.replace("luminaires = 8\n", f"luminaires = 8\npoles = [{names}]\n", 1)
    return cfg.loads(text + "\n" + pole_toml(count, poll_s=poll_s) + extra, str(cfg.EXAMPLE), board_infos())


@pytest.fixture
async def sim(tmp_path):
    clock = ScaledClock(1.0, start=dt.datetime.fromisoformat(NIGHT).timestamp())
    cab = SimCabinet(pole_config(lighting=False), tmp_path / "sim", clock)
    ep = await cab.start()
    yield cab, ep
    await cab.stop()


def test_config_names_bad_pole_lists():
    assert pole_config(count=2, lighting=False).sim.circuits[1].poles == ("pole1", "pole2")
    text = cfg.EXAMPLE.read_text().replace("load_w = 1200.0\n", 'load_w = 1200.0\npoles = ["lux", "nope"]\n', 1)
    with pytest.raises(cfg.ConfigError) as e:
        cfg.loads(text, str(cfg.EXAMPLE), board_infos())
    msg = str(e.value)
    assert "circuits[1].poles[0]" in msg and "not a pole_node device" in msg
    assert 'circuits[1].poles[1] = "nope"' in msg


async def test_third_party_master_reads_the_map_as_documented(sim):
    from pymodbus.client import AsyncModbusSerialClient

    cab, ep = sim
    cab.plant.set_circuit("segment2", True)
    cab.refresh()
    client = AsyncModbusSerialClient(ep["buses"]["poles"][1], baudrate=9600, timeout=1, retries=0)
    await client.connect()
    try:
        rr = await client.read_input_registers(0, count=regmap.INPUT_COUNT, device_id=3)
        assert not rr.isError()
        r = rr.registers
        assert r[0] == 2300  # supply voltage 230.0 V in 0.1 V
        assert r[11] == 100 and r[10] == 100 and r[12] == 1  # night, fail-safe default level, burning
        assert r[2] == 600  # 60.0 W: the default nominal power at 100 %
        assert r[18] == 256  # firmware 1.0
        assert r[16] & regmap.SETTINGS_DEFAULTED and not r[16] & regmap.LAMP_FAILURE
        await asyncio.sleep(GAP)
        hr = await client.read_holding_registers(0, count=regmap.HOLDING_COUNT, device_id=3)
        assert hr.registers == regmap.defaults()
        # exception 2 beyond the map, 3 for a value out of range, like a real device
        await asyncio.sleep(GAP)
        bad = await client.read_input_registers(15, count=10, device_id=3)
        assert bad.isError() and bad.exception_code == 2
        await asyncio.sleep(GAP)
        bad = await client.write_register(2, 101, device_id=3)
        assert bad.isError() and bad.exception_code == 3
        await asyncio.sleep(GAP)
        ok = await client.write_register(0, 40, device_id=3)
        assert not ok.isError()
        await asyncio.sleep(0.1)
        cab.refresh()
        await asyncio.sleep(GAP)
        rr = await client.read_input_registers(10, count=2, device_id=3)
        assert rr.registers == [40, 40]  # commanded: the node drives 40 %
    finally:
        client.close()
    assert cab.lines["poles"].stats["replies"] >= 6


async def test_control_messages_drive_one_pole_and_a_cut_silences_the_rest(sim):
    cab, _ = sim
    cab.plant.set_circuit("segment2", True)
    cab.refresh()
    full = cab.plant.circuit_power_w("segment2")
    read = await cab.command({"cmd": "read", "device": "pole3"})
    assert read["device"]["profile"] == "pole_node" and read["values"]["supply_voltage"] == 2300
    assert read["values"]["failsafe_timeout"] == 600 and read["values"]["firmware_version"] == 256
    r = await cab.command({"cmd": "pole", "pole": "pole7", "lamp": "failed"})
    assert "pole7" in r["done"] and "lamp failed" in r["done"]
    assert cab.plant.circuit_power_w("segment2") == pytest.approx(full * 7 / 8)
    await cab.command({"cmd": "pole", "pole": "pole4", "cut_after": True})
    state = cab.state()["poles"]["segment2"]["poles"]
    assert [state[p]["powered"] for p in POLES] == [True] * 4 + [False] * 4
    assert cab.plant.circuit_power_w("segment2") == pytest.approx(full * 4 / 8)
    await cab.command({"cmd": "pole", "pole": "pole4", "cut_after": False})
    assert cab.state()["poles"]["segment2"]["poles"]["pole8"]["boots"] == 2  # rebooted from its flash
    for bad, why in (
        ({"cmd": "pole", "pole": "pole9"}, "no pole node 'pole9'"),
        ({"cmd": "pole", "pole": "pole1", "lamp": "dim"}, "lamp"),
        ({"cmd": "pole", "pole": "pole1", "tilt": 120}, "'tilt' must be a number 0..90"),
        ({"cmd": "pole", "pole": "pole1", "wobble": 1}, "unknown key 'wobble'"),
    ):
        with pytest.raises(CommandError, match=re.escape(why)):
            await cab.command(bad)


def test_script_steps_for_poles_are_checked():
    ok = '[[sim.script]]\nat_s = 10\ncmd = "pole"\npole = "pole2"\nlamp = "failed"\n'
    assert pole_config(count=2, lighting=False, extra=ok).sim.script[0][1]["pole"] == "pole2"
    bad = '[[sim.script]]\nat_s = 10\ncmd = "pole"\npole = "pole9"\ntilt = 95\n'
    with pytest.raises(cfg.ConfigError) as e:
        pole_config(count=2, lighting=False, extra=bad)
    assert "script[0].tilt" in str(e.value)
    bad = '[[sim.script]]\nat_s = 10\ncmd = "pole"\npole = "pole9"\n'
    with pytest.raises(cfg.ConfigError, match=r"script\[0\]\.pole"):
        pole_config(count=2, lighting=False, extra=bad)


async def test_bench_pole_case_measures_against_the_wire_limit():
    from tools.bench import rtu

    out = await rtu.run_poles(seconds=2.0)
    # 30 x ((8 + 45) bytes at 11 bits / 19200 Bd + 2 x 3.5 characters) = 1031.25 ms
    assert abs(out["pole_cycle_limit_ms"] - 1031.25) < 0.5
    assert 0 < out["pole_line_efficiency"] <= 1.05 and out["pole_cpu_ms_per_poll"] > 0
