"""A two-process exchange for checking virtual time: a responder and a requester over
a real pty or loopback TCP, timed on the loop's clock.

    python -m boards.sim.vtime.probe respond --pty|--tcp --ready FILE [--delay S]
    python -m boards.sim.vtime.probe request --ready FILE --count N [--timeout S] [--every K] [--thread S]

The responder answers every request line after `--delay` seconds, except a line
"silent" (no answer). The requester sends `--count` requests (every K-th one
"silent"), waits for each answer at most `--timeout` seconds, and prints one JSON
object: the measured round trips, the timeouts (and when they fired), the virtual
and wall time of the run. `--thread S` first runs a worker thread for S wall
seconds under a wait_for of 0.1 virtual s (it must not time out: time stands still
while a thread works). With $VTIME_SOCKET set both run on the coordinator's time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import tty
from pathlib import Path


async def respond(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    delay = args.delay
    if args.tcp:
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                if line.strip() != b"silent":
                    await asyncio.sleep(delay)
                    writer.write(line)
                    await writer.drain()
            writer.close()
            done.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _ready(args.ready, {"tcp": ["127.0.0.1", port]})
        await done.wait()
        server.close()
        return
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    _ready(args.ready, {"pty": os.ttyname(slave)})
    buf = bytearray()
    got = asyncio.Queue[bytes]()

    def readable() -> None:
        try:
            buf.extend(os.read(master, 4096))
        except OSError:
            return
        while b"\n" in buf:
            i = buf.index(b"\n") + 1
            got.put_nowait(bytes(buf[:i]))
            del buf[:i]

    loop.add_reader(master, readable)
    while True:
        line = await got.get()
        if os.environ.get("VTIME_PROBE_LOG"):
            print(f"{loop.time():.6f} got {line.strip().decode()}", file=sys.stderr)
        if line.strip() == b"end":
            break
        if line.strip() != b"silent":
            await asyncio.sleep(delay)
            os.write(master, line)


def _ready(path: str, what: dict) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(what))
    os.replace(tmp, path)


async def request(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    while not Path(args.ready).exists():
        await asyncio.sleep(0.01)
    where = json.loads(Path(args.ready).read_text())
    out: dict = {"round_trips": [], "timeouts": [], "thread_timed_out": None}
    if args.thread:
        try:
            await asyncio.wait_for(asyncio.to_thread(time.sleep, args.thread), 0.1)
            out["thread_timed_out"] = False
        except TimeoutError:
            out["thread_timed_out"] = True
    if "tcp" in where:
        reader, writer = await asyncio.open_connection(*where["tcp"])

        def send(data: bytes) -> None:
            writer.write(data)

        async def readline() -> bytes:
            return await reader.readline()
    else:
        fd = os.open(where["pty"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        lines: asyncio.Queue[bytes] = asyncio.Queue()
        buf = bytearray()

        def readable() -> None:
            buf.extend(os.read(fd, 4096))
            while b"\n" in buf:
                i = buf.index(b"\n") + 1
                lines.put_nowait(bytes(buf[:i]))
                del buf[:i]

        loop.add_reader(fd, readable)

        def send(data: bytes) -> None:
            os.write(fd, data)

        async def readline() -> bytes:
            return await lines.get()

    v0, w0 = loop.time(), time.perf_counter()  # perf_counter: real even when time.monotonic is virtual
    pending: asyncio.Task[bytes] | None = None
    for i in range(args.count):
        silent = args.every and (i + 1) % args.every == 0
        t = loop.time()
        send(b"silent\n" if silent else f"req {i}\n".encode())
        if pending is None:
            pending = asyncio.ensure_future(readline())
        try:
            line = await asyncio.wait_for(asyncio.shield(pending), args.timeout)
            pending = None
            out["round_trips"].append([i, loop.time() - t, line.decode().strip()])
        except TimeoutError:
            out["timeouts"].append([i, loop.time() - t, bool(silent)])
    out["virtual_s"] = loop.time() - v0
    out["wall_s"] = time.perf_counter() - w0
    out["pid"] = os.getpid()
    send(b"end\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.sim.vtime.probe")
    ap.add_argument("role", choices=("respond", "request"))
    ap.add_argument("--pty", action="store_true")
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--ready", required=True)
    ap.add_argument("--delay", type=float, default=0.5)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--every", type=int, default=0)
    ap.add_argument("--thread", type=float, default=0.0)
    args = ap.parse_args(argv)
    if os.environ.get("VTIME_SOCKET"):
        from boards.sim.vtime.loop import install

        install()  # as `python -m agent run|sim` do (agent/runtime/entry.py)
    if args.role == "respond":
        asyncio.run(respond(args))
    else:
        print(json.dumps(asyncio.run(request(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
