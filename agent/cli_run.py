"""`cabinet run`, part of the command table: resolve the board, start the simulated
cabinet when the board is "sim", build the app and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Callable

from agent import logs
from agent.app import App, Endpoints
from agent.clock import ScaledClock, WallClock
from agent.config import Config
from agent.config.model import RtuBus
from agent.datadir import DataDirLock

log = logging.getLogger("agent.run")


def run(load: Callable[[], Config], *, data_dir: Path, guard: Callable[[], None] | None = None,
        log_level: str | None = None, log_format: str | None = None, speed: float | None = None,
        broker: str | None = None, with_ingest: bool = False) -> int:
    """Under the data-dir lock: `guard()` (a pushed config that cannot start is rolled back),
    then `load()` the config, then run the agent."""
    logs.setup(log_level or "info", log_format or "text")
    try:
        with DataDirLock(data_dir):
            if guard is not None:
                guard()
            config = load()
            logs.setup(log_level or config.agent.log_level, log_format or config.agent.log_format)
            return asyncio.run(_main(config, data_dir, speed, broker, with_ingest))
    except KeyboardInterrupt:
        return 130
    except RuntimeError as e:  # refused to start (data dir in use, simulator failed)
        log.error("%s", e)
        return 1


async def _main(config: Config, data_dir: Path, speed: float | None, broker: str | None = None,
                with_ingest: bool = False) -> int:
    from boards.registry import get as get_board

    board = get_board(config.board)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    child = None
    if board.name == "sim":
        from boards.sim.child import SimChild
        from drivers.dio import FilePinsDIO

        child = await SimChild.start(config.source, data_dir, speed=speed)
        ep = child.endpoints
        clk = ep["clock"]
        clock = ScaledClock(clk["speed"], start=clk["wall"] + (time.time() - clk["real"]) * clk["speed"])
        endpoints = Endpoints(buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep.get("gps"),
                              dio=FilePinsDIO(ep["pins"]))
    else:
        from drivers.dio import BlinkaDIO

        clock = WallClock()
        buses = {n: ("rtu", board.ports.get(b.port, b.port)) for n, b in config.buses.items() if isinstance(b, RtuBus)}
        gps = board.ports.get(config.gps.port, config.gps.port) if config.gps else None
        dio, dio_error = None, None
        if config.inputs or config.outputs:
            try:
                dio = BlinkaDIO()
            except Exception as e:  # noqa: BLE001 - no GPIO here: inputs go bad, the rest runs
                dio_error = str(e)
                log.error("digital inputs unavailable: %s", e)
        endpoints = Endpoints(buses=buses, gps_port=gps, dio=dio, pins=dict(board.pins), dio_error=dio_error)
    from agent import cli_uplink

    up = cli_uplink.settings(config, broker or ("127.0.0.1:1883" if with_ingest and config.uplink is None else None))
    ingest = None
    wiring = None
    if up is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        if with_ingest:
            key = cli_uplink._signing_key(Path(up.signing_key) if up.signing_key else data_dir / "signing.key")
            ingest = await cli_uplink.LocalIngest.start(data_dir, up, config.cabinet_id, key)
        wiring = cli_uplink.wiring(config, data_dir, up, ingest.public_key if ingest else None)
    app = App(config, data_dir=data_dir, clock=clock, endpoints=endpoints, uplink=wiring)
    if child is not None:
        child.on_exit(stop.set)
    try:
        await app.run(stop)
    finally:
        if child is not None:
            await child.stop()
        if ingest is not None:
            await ingest.stop()
    if child is not None and child.failed:
        log.error("the simulated cabinet stopped unexpectedly (exit code %s)", child.returncode)
        return 1
    return 0
