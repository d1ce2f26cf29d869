"""One emulated RS-485 line of simulated pole nodes, alone, in its own process (for
`python -m tools.bench rtu`'s pole case, so the nodes' CPU is not counted as the agent's):

    python -m boards.sim.pole_line --count 30 --baud 19200 --dir DIR

prints one JSON line {"port": pty link, "turnaround": s, "units": [...]} once serving, steps
the poles every second (contactor on, night: every lamp lit), and stops when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from boards.sim.line import RtuLine
from boards.sim.poles import PoleSegment


async def serve(count: int, baud: int, first_unit: int, directory: Path) -> None:
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    seg = PoleSegment("line", [(f"pole{k + 1}", first_unit + k) for k in range(count)], now_ms())
    nodes = {p.unit: seg.handler(p, now_ms) for p in seg.poles}
    directory.mkdir(parents=True, exist_ok=True)
    line = RtuLine(directory / "poles.tty", {}, baudrate=baud, nodes=nodes)
    await line.start()
    print(json.dumps({"port": line.port, "turnaround": line.turnaround, "units": sorted(nodes)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stdin_closed = asyncio.ensure_future(reader.read())
    try:
        while not stdin_closed.done():
            for pole in seg.poles:
                pole.step(now_ms(), True, True, 0.0)
            await asyncio.wait({stdin_closed}, timeout=1.0)
    finally:
        await line.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.sim.pole_line", description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=30, help="number of pole nodes (1..247)")
    ap.add_argument("--baud", type=int, default=19200, help="line speed in Bd")
    ap.add_argument("--first-unit", type=int, default=1, help="unit id of the first node")
    ap.add_argument("--dir", type=Path, required=True, help="directory for the line's pty link")
    args = ap.parse_args(argv)
    if not 1 <= args.count <= 247 or not 1 <= args.first_unit <= 248 - args.count:
        ap.error(f"--count {args.count} from --first-unit {args.first_unit} does not fit unit ids 1..247")
    asyncio.run(serve(args.count, args.baud, args.first_unit, args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
