"""The benchmarks' simulator process: N Modbus TCP endpoints (W1) or one emulated
RS-485 line with several units (rtu), serving the bench profile with values that
change. Prints its endpoints as one JSON line, then obeys JSON lines on stdin
({"fault": unit, "kind": "silent"} / {"clear": unit} / {"stats": true}) until EOF."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from boards.sim.faults import Fault, FaultKind, FaultTable
from boards.sim.line import RtuLine
from boards.sim.store import RegisterStore
from boards.sim.tcp import TcpEndpoint
from tools.bench.common import BENCH_PROFILE


def values(t: float, seed: int) -> dict[str, float]:
    out = {f"i{n}": round(20 + 10 * math.sin(t / 7 + n + seed), 1) for n in range(10)}
    out.update({f"f{n}": 230 + 5 * math.sin(t / 3 + n + seed) for n in range(5)})
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("tcp", "rtu"), required=True)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--baud", type=int, default=9600)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    loop = asyncio.get_running_loop()
    faults = FaultTable()
    stores = [RegisterStore(BENCH_PROFILE, values(0, i)) for i in range(args.devices)]
    servers: list[TcpEndpoint | RtuLine] = []
    info: dict[str, Any]
    if args.mode == "tcp":
        info = {"endpoints": []}
        for store in stores:
            ep = TcpEndpoint({1: store}, faults=faults)
            info["endpoints"].append(list(await ep.start()))
            servers.append(ep)
    else:
        tmp = tempfile.mkdtemp(prefix="bench-rtu-")
        line = RtuLine(
            Path(tmp) / "tty",
            {u + 1: s for u, s in enumerate(stores)},
            baudrate=args.baud,
            faults=faults,
            turnaround_ms=0.0,
        )
        await line.start()
        servers.append(line)
        info = {"port": line.port, "t35": line.t35, "turnaround": line.turnaround}
    print(json.dumps(info), flush=True)

    async def animate() -> None:
        while True:
            t = loop.time()
            for i, s in enumerate(stores):
                s.set_many(values(t, i))
            await asyncio.sleep(0.25)

    anim = asyncio.create_task(animate())
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line_in := await reader.readline():
        cmd = json.loads(line_in)
        if "fault" in cmd:
            faults.set(int(cmd["fault"]), Fault(FaultKind(cmd.get("kind", "silent"))))
        elif "clear" in cmd:
            faults.clear(int(cmd["clear"]))
        answer = {"ok": True, "stats": [dict(s.stats) for s in servers]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    anim.cancel()
    for s in servers:
        await s.stop()


if __name__ == "__main__":
    asyncio.run(main())
