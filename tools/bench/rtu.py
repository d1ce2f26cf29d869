"""RTU line benchmark: one emulated 9600-baud RS-485 line with 4 devices (the W1
profile: 20 holding registers each, one request per device by the plan).

* line_efficiency: polled as fast as the line allows, achieved cycles per second
  divided by the wire-time limit of the plan. Per transaction the wire allows
  request + turnaround + reply at 11 bits per character, then the 3.5-character
  silence before the next frame: the simulator enforces exactly that. Target >= 0.9.
* dead_device_rate_kept: with each device polled at a period that loads the line
  to about two thirds, one device goes silent; the lowest poll rate achieved by the
  other three, divided by their configured rate. Target >= 0.9. Per-device backoff
  is what keeps it: without it every poll of the dead device would cost a timeout.
* pole_line_efficiency: 30 pole nodes (the firmware's logic, boards/sim/pole_line.py in its
  own process) on one 19200-baud line, polled as fast as the line allows: achieved
  cycles per second (the mean over the nodes) over the wire-time limit of their plan (one
  request a node: input registers 0..19, the profile's default). Target >= 0.9. pole_cpu_ms_per_poll: the
  agent's CPU (this process) per node poll.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.clock import WallClock
from agent.runtime.app import App
from drivers.modbus import replies
from tools.bench.common import BENCH_PROFILE, SimProcess, generic_toml

BAUD = 9600
DEVICES = 4


def rtu_config(port: str, poll_s: float, timeout_ms: float = 200.0) -> str:
    parts = [
        (
            '[cabinet]\nid = "BENCH-RTU"\n[site]\nlatitude = 52.5\nlongitude = 13.4\ntimezone = "UTC"\n'
            f'[buses.line]\ntype = "rtu"\nport = "{port}"\nbaudrate = {BAUD}\ntimeout_ms = {timeout_ms}\n'
            "backoff_initial_s = 1.0\nbackoff_max_s = 30.0\n"
        )
    ]
    for u in range(1, DEVICES + 1):
        parts.append(
            f'[devices.dev{u}]\nbus = "line"\nunit = {u}\nprofile = "generic"\npoll_s = {poll_s}\n'
            + generic_toml(f"dev{u}")
        )
    return "\n".join(parts)


def cycle_limit_s(turnaround: float) -> float:
    """Wire-time limit of one cycle of the plan (every device polled once)."""
    count = BENCH_PROFILE.points[-1].end  # one block of 20 registers per device
    per_tx = replies.wire_time(8 + replies.read_reply_len(3, count), BAUD) + turnaround + replies.t35(BAUD)
    return DEVICES * per_tx


async def _measure(app: App, seconds: float, units: list[str]) -> dict[str, float]:
    poller = app.pollers["line"]
    before = {n: poller.devices[n].polls for n in units}
    await asyncio.sleep(seconds)
    return {n: (poller.devices[n].polls - before[n]) / seconds for n in units}


POLE_BAUD = 19200
POLES = 30


def pole_config(port: str, poll_s: float) -> str:
    head = '[cabinet]\nid = "BENCH-POLES"\n[site]\nlatitude = 52.5\nlongitude = 13.4\ntimezone = "UTC"\n'
    parts = [head + f'[buses.line]\ntype = "rtu"\nport = "{port}"\nbaudrate = {POLE_BAUD}\ntimeout_ms = 200\n']
    parts += [
        f'[devices.pole{u}]\nbus = "line"\nunit = {u}\nprofile = "pole_node"\npoll_s = {poll_s}\n'
        for u in range(1, POLES + 1)
    ]
    return "\n".join(parts)


def pole_cycle_limit_s(turnaround: float) -> float:
    """Wire-time limit of polling every pole node once: input registers 0..19 each."""
    per_node = replies.wire_time(8 + replies.read_reply_len(4, 20), POLE_BAUD) + turnaround + replies.t35(POLE_BAUD)
    return POLES * per_node


async def run_poles(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "boards.sim.pole_line",
            "--count",
            str(POLES),
            "--baud",
            str(POLE_BAUD),
            "--dir",
            tmp,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            limit = pole_cycle_limit_s(info["turnaround"])
            names = [f"pole{u}" for u in range(1, POLES + 1)]
            app = App(
                cfg.loads(pole_config(info["port"], 0.05), "poles.toml"),
                data_dir=Path(tmp) / "agent",
                clock=WallClock(),
            )
            await app.start()
            await asyncio.sleep(2.0)
            poller = app.pollers["line"]
            polls0 = sum(poller.devices[n].polls for n in names)
            cpu0 = time.process_time()
            rates = await _measure(app, seconds, names)
            cpu = time.process_time() - cpu0
            polls = sum(poller.devices[n].polls for n in names) - polls0
            await app.stop()
        finally:
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 10)
    achieved = sum(rates.values()) / len(rates)  # the mean: 30 nodes' whole polls in a window quantize less
    return {
        "pole_line": f"{POLE_BAUD} Bd, {POLES} pole nodes, 1 request each (input 0..19)",
        "pole_cycle_limit_ms": round(limit * 1000, 2),
        "pole_achieved_cycles_per_s": round(achieved, 3),
        "pole_line_efficiency": round(achieved * limit, 3),
        "pole_cpu_ms_per_poll": round(cpu * 1000 / max(polls, 1), 3),
    }


async def run(seconds: float = 30.0) -> dict[str, Any]:
    sim = await SimProcess.start("--mode", "rtu", "--devices", str(DEVICES), "--baud", str(BAUD))
    limit = cycle_limit_s(sim.info["turnaround"])
    names = [f"dev{u}" for u in range(1, DEVICES + 1)]
    out: dict[str, Any] = {
        "line": f"{BAUD} Bd, {DEVICES} devices x 20 holding registers, 1 request each",
        "cycle_limit_ms": round(limit * 1000, 2),
        "limit_cycles_per_s": round(1 / limit, 3),
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # 1. saturated: every device is always due
            app = App(cfg.loads(rtu_config(sim.info["port"], 0.05), "rtu.toml"), data_dir=Path(tmp), clock=WallClock())
            await app.start()
            await asyncio.sleep(2.0)
            rates = await _measure(app, seconds, names)
            await app.stop()
            achieved = min(rates.values())
            out["achieved_cycles_per_s"] = round(achieved, 3)
            out["line_efficiency"] = round(achieved / (1 / limit), 3)

            # 2. two-thirds load, then one device dies
            period = round(limit * 1.5, 3)
            app = App(
                cfg.loads(rtu_config(sim.info["port"], period), "rtu.toml"), data_dir=Path(tmp), clock=WallClock()
            )
            await app.start()
            await asyncio.sleep(2.0)
            alive = await _measure(app, seconds / 2, names)
            await sim.command(fault=DEVICES, kind="silent")
            await asyncio.sleep(1.0)
            dead_polls0 = app.pollers["line"].devices[names[-1]].polls
            dead = await _measure(app, seconds, names[:-1])
            dead_attempts = app.pollers["line"].devices[names[-1]].polls - dead_polls0
            await app.stop()
            await sim.command(clear=DEVICES)
    finally:
        await sim.stop()
    out["poll_period_s"] = period
    out["rate_all_alive_per_s"] = {k: round(v, 3) for k, v in alive.items()}
    out["rate_one_dead_per_s"] = {k: round(v, 3) for k, v in dead.items()}
    out["dead_device_attempts"] = dead_attempts
    out["dead_device_rate_kept"] = round(min(dead.values()) * period, 3)
    out.update(await run_poles(seconds))
    out["targets"] = {"line_efficiency": ">= 0.9", "dead_device_rate_kept": ">= 0.9", "pole_line_efficiency": ">= 0.9"}
    out["met"] = {
        "line_efficiency": out["line_efficiency"] >= 0.9,
        "dead_device_rate_kept": out["dead_device_rate_kept"] >= 0.9,
        "pole_line_efficiency": out["pole_line_efficiency"] >= 0.9,
    }
    return out
