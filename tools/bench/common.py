"""What both sides of a benchmark share: the device profile, the simulator child
process, and CPU/RSS readings of this process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from drivers.profiles.base import DataType, DeviceProfile, Limits, RegisterPoint, Table

# W1's device: 20 contiguous holding registers, mixed int16 and float32 (10 + 5 = 15 values)
BENCH_POINTS = tuple(
    [RegisterPoint(f"i{n}", Table.HOLDING, n, DataType.INT16, scale=0.1) for n in range(10)]
    + [RegisterPoint(f"f{n}", Table.HOLDING, 10 + 2 * n, DataType.FLOAT32) for n in range(5)]
)
BENCH_PROFILE = DeviceProfile("bench20", BENCH_POINTS, Limits())


def generic_toml(device: str) -> str:
    """The bench profile as a generic-profile config section."""
    lines = [f"[devices.{device}.options]", "points = ["]
    for p in BENCH_POINTS:
        lines.append(
            f'  {{ key = "{p.key}", table = "holding", address = {p.address}, type = "{p.dtype.value}"'
            + (f", scale = {p.scale}" if p.scale != 1 else "")
            + " },"
        )
    lines.append("]")
    return "\n".join(lines) + "\n"


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024
    return round(fields.get("VmRSS", 0.0), 1), round(fields.get("VmHWM", 0.0), 1)


class SimProcess:
    """The bench simulator in its own process (tools.bench.simserver), so its CPU is
    not counted as the agent's. Commands go to its stdin, one JSON line each."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("the simulator process needs pipes for stdin and stdout")
        self.proc = proc
        self.info = info
        self.stdin: asyncio.StreamWriter = proc.stdin
        self.stdout: asyncio.StreamReader = proc.stdout

    @classmethod
    async def start(cls, *args: str) -> SimProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.bench.simserver",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        sim = cls(proc, {})
        line = await asyncio.wait_for(sim.stdout.readline(), 30)
        if not line:
            raise RuntimeError("bench simulator failed to start")
        sim.info = json.loads(line)
        return sim

    async def command(self, **cmd: Any) -> dict[str, Any]:
        self.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.stdin.drain()
        return json.loads(await asyncio.wait_for(self.stdout.readline(), 10))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
