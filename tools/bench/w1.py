"""Workload W1: 10 simulated Modbus TCP devices x 20 contiguous holding registers
(10 int16 + 5 float32), 1 s polls, 60 s, through the real agent app (engine ->
poller -> decode -> process image -> report filter). The simulator runs in its own
process; CPU and RSS are this (the agent's) process only.

Baseline (peers.md, a popular Python gateway on this class of machine, same
workload): 200 transactions per cycle, ~2,200 values per CPU-second, 65 MB RSS.
Targets: tx_per_cycle = planner optimum (10), values_per_cpu_s >= 44,000 (20x),
rss_mb <= 40.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.clock import WallClock
from agent.runtime.app import App
from tools.bench.common import SimProcess, generic_toml, rss_mb

GATEWAY = {"tx_per_cycle": 200, "values_per_cpu_s": 2200.0, "rss_mb": 65.0}


def w1_config(endpoints: list[list[Any]], poll_s: float = 1.0) -> str:
    parts = [
        (
            '[cabinet]\nid = "BENCH-W1"\n[site]\nlatitude = 52.5\nlongitude = 13.4\ntimezone = "UTC"\n'
            '[board]\nprofile = "sim"\n'
        )
    ]
    for n, (host, port) in enumerate(endpoints):
        parts.append(
            f'[buses.tcp{n}]\ntype = "tcp"\nhost = "{host}"\nport = {port}\ntimeout_ms = 1000\n'
            f'[devices.dev{n}]\nbus = "tcp{n}"\nunit = 1\nprofile = "generic"\npoll_s = {poll_s}\n'
            + generic_toml(f"dev{n}")
        )
    return "\n".join(parts)


Sample = tuple[float, int, float, int, float]  # CPU s, image updates, transactions, polls, monotonic s


async def run(seconds: float = 60.0, devices: int = 10, warmup: float = 3.0, uplink: bool = False) -> dict[str, Any]:
    """`uplink`: also seal, sign and publish to a local Mosquitto (the agent's full path)."""
    sim = await SimProcess.start("--mode", "tcp", "--devices", str(devices))
    config = cfg.loads(w1_config(sim.info["endpoints"]), "w1.toml")
    broker = None
    with tempfile.TemporaryDirectory() as tmp:
        wiring = None
        if uplink:
            # deferred: heavy (the uplink's stack): without --uplink it would inflate the RSS measured
            from agent.config.model import Uplink
            from agent.uplink.setup import wiring as make_wiring
            from tools.bench.mqtt import BenchBroker

            broker = BenchBroker()
            wiring = make_wiring(
                config, Path(tmp), Uplink(broker="127.0.0.1", port=broker.port, tls=False, batch_max_age_s=5.0), None
            )
        app = App(config, data_dir=Path(tmp), clock=WallClock(), uplink=wiring)
        await app.start()
        try:
            await asyncio.sleep(warmup)

            def sample() -> Sample:
                polls = sum(st.polls for p in app.pollers.values() for st in p.devices.values())
                tx = sum(e.stats["completed"] for e in app.engines.values())
                return time.process_time(), app.image.updates, tx, polls, time.monotonic()

            first = sample()
            await asyncio.sleep(seconds)
            last = sample()
            failures = sum(e.stats["failures"] for e in app.engines.values())
            bad = sum(1 for p in app.image.snapshot(app.clock.monotonic()) if p["quality"] != "good")
        finally:
            await app.stop()
            await sim.stop()
            if broker is not None:
                broker.stop()
    out = figures(devices, seconds, first, last, failures, bad)
    if app.uplink is not None:
        u = app.uplink.stats
        out["uplink_batches"] = u["batches_sent"]
        out["uplink_bytes_per_value"] = round(u["bytes_sent"] / u["readings_sent"], 3) if u["readings_sent"] else None
    out["ratios"] = {
        "tx_vs_gateway": round(GATEWAY["tx_per_cycle"] / out["tx_per_cycle"], 1) if out["tx_per_cycle"] else None,
        "values_per_cpu_s_vs_gateway": round(out["values_per_cpu_s"] / GATEWAY["values_per_cpu_s"], 1)
        if out["values_per_cpu_s"]
        else None,
        "rss_vs_gateway": round(out["rss_mb"] / GATEWAY["rss_mb"], 2),
    }
    out["targets"] = {"tx_per_cycle": "== 10 (planner optimum)", "values_per_cpu_s": ">= 44000", "rss_mb": "<= 40"}
    out["met"] = {
        "tx_per_cycle": out["tx_per_cycle"] == devices,
        "values_per_cpu_s": (out["values_per_cpu_s"] or 0) >= 44000,
        "rss_mb": out["rss_mb"] <= 40,
    }
    return out


def figures(devices: int, seconds: float, first: Sample, last: Sample, failures: float, bad: int) -> dict[str, Any]:
    """The measured figures between two samples, with this process's RSS now."""
    cpu0, upd0, tx0, polls0, t0 = first
    cpu1, upd1, tx1, polls1, t1 = last
    cycles = (polls1 - polls0) / devices
    cpu = cpu1 - cpu0
    rss, peak = rss_mb()
    values = upd1 - upd0
    return {
        "workload": f"W1: {devices} TCP devices x 20 holding registers (15 values), 1 s polls, {seconds:g} s",
        "seconds": round(t1 - t0, 2),
        "cycles": round(cycles, 2),
        "tx_per_cycle": round((tx1 - tx0) / cycles, 2) if cycles else None,
        "values": values,
        "cpu_s": round(cpu, 3),
        "cpu_percent": round(100 * cpu / (t1 - t0), 2),
        "values_per_cpu_s": round(values / cpu) if cpu > 0 else None,
        "rss_mb": rss,
        "rss_peak_mb": peak,
        "failures": failures,
        "points_not_good": bad,
    }
