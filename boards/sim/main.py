"""`cabinet sim`: run the simulated cabinet alone until SIGTERM/SIGINT (or until the
parent process given with --parent-pid is gone). Serves the control socket
(`<sim dir>/control.sock`) and, once every server is up, writes the endpoints as
JSON to `<sim dir>/endpoints.json` (where `cabinet scan --bus` and `cabinet doctor`
look for the simulated buses; removed again at exit) and to the ready file if one
is given, else prints them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from boards.sim.cabinet import SimCabinet
from boards.sim.control import ControlServer

log = logging.getLogger("boards.sim")
ENDPOINTS_FILE = "endpoints.json"  # in the sim dir


def main(
    config: Any,
    *,
    sim_dir: Path,
    clock: Any,
    ready_file: str | None = None,
    parent_pid: int | None = None,
    log_level: str = "info",
) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    try:
        asyncio.run(serve(config, sim_dir, clock, ready_file, parent_pid))
    except KeyboardInterrupt:
        pass
    return 0


async def serve(config: Any, sim_dir: Path, clock: Any, ready_file: str | None, parent_pid: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cabinet = SimCabinet(config, sim_dir, clock)
    endpoints = await cabinet.start()
    control = ControlServer(cabinet, Path(sim_dir) / "control.sock")
    await control.start()
    endpoints["control"] = str(control.path)
    endpoints["clock"] = {"speed": getattr(clock, "speed", 1.0), "wall": clock.now(), "real": time.time()}
    text = json.dumps(endpoints, indent=2)
    standard = Path(sim_dir) / ENDPOINTS_FILE
    for path in {standard, Path(ready_file) if ready_file else standard}:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    if not ready_file:
        print(text, flush=True)
    watch = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    try:
        await stop.wait()
    finally:
        if watch:
            watch.cancel()
        await control.close()
        await cabinet.stop()
        standard.unlink(missing_ok=True)


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """Set `stop` when process `pid` (the agent that started us) has exited: woken by its
    pidfd (no timer: under virtual time a 0.5-s poll was a tenth of all the steps), or
    polling where pidfds do not exist."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None and os.getppid() == pid:
        gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, gone.set)
        try:
            await gone.wait()
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    else:
        if fd is not None:
            os.close(fd)
        while os.getppid() == pid:
            await asyncio.sleep(0.5)
    log.info("parent %d is gone; stopping", pid)
    stop.set()
