"""`cabinet run` (and `python -m agent run`): resolve the board, start the simulated
cabinet when the board is "sim", build the app and run it until SIGTERM/SIGINT.

A local cloud ingest (`cabinet run --with-ingest`) is the command table's business:
it hands in an `IngestStarter`, and this module only starts and stops it."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from agent import logs
from agent.clock import Clock, ScaledClock, WallClock
from agent.config import BoardInfo, Config
from agent.config.model import RtuBus, Uplink
from agent.runtime.app import App, Endpoints
from agent.runtime.datadir import DataDirLock
from agent.uplink import setup as uplink_setup
from boards.registry import get as get_board
from boards.sim.child import SimChild
from drivers.dio import BlinkaDIO, FilePinsDIO

log = logging.getLogger("agent.run")


class LocalIngest(Protocol):
    """A cloud ingest started beside the agent: its key signs the acknowledgements."""

    public_key: Any  # Ed25519PublicKey

    async def stop(self) -> None: ...


# (data dir, uplink settings, cabinet id, the cabinet's signing key) -> a started ingest
IngestStarter = Callable[[Path, Uplink, str, Any], Awaitable[LocalIngest]]


def run(
    load: Callable[[], Config],
    *,
    data_dir: Path,
    boards: dict[str, BoardInfo] | None = None,
    guard: Callable[[], object] | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
    speed: float | None = None,
    broker: str | None = None,
    ingest: IngestStarter | None = None,
    virtual: Clock | None = None,
) -> int:
    """Under the data-dir lock: `guard()` (a pushed config that cannot start is rolled back),
    then `load()` the config, then run the agent. `virtual`: the clock of a process on
    virtual time (boards/sim/vtime, `$VTIME_SOCKET`), instead of the board's."""
    logs.setup(log_level or "info", log_format or "text")
    try:
        with DataDirLock(data_dir):
            if guard is not None:
                guard()
            config = load()
            logs.setup(log_level or config.agent.log_level, log_format or config.agent.log_format)
            default = "mqtt://127.0.0.1:1883" if ingest and config.uplink is None else None
            up = uplink_setup.settings(config, broker or default)  # before anything starts: a usage error
            return asyncio.run(_main(config, data_dir, speed, up, ingest, boards, virtual))
    except uplink_setup.UplinkSettingsError as e:
        print(f"cabinet run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except RuntimeError as e:  # refused to start (data dir in use, simulator failed)
        log.error("%s", e)
        return 1


async def _main(
    config: Config,
    data_dir: Path,
    speed: float | None,
    up: Uplink | None = None,
    start_ingest: IngestStarter | None = None,
    boards: dict[str, BoardInfo] | None = None,
    virtual: Clock | None = None,
) -> int:
    board = get_board(config.board)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    child = None
    if board.name == "sim":
        child = await SimChild.start(config.source, data_dir, speed=speed)
        ep = child.endpoints
        clk = ep["clock"]
        clock: Clock = virtual or ScaledClock(
            clk["speed"], start=clk["wall"] + (time.time() - clk["real"]) * clk["speed"]
        )
        endpoints = Endpoints(
            buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep.get("gps"), dio=FilePinsDIO(ep["pins"])
        )
    else:
        clock = virtual or WallClock()
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
    ingest = None
    wiring = None
    if up is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        if start_ingest is not None:
            key = uplink_setup.signing_key(up, data_dir)
            ingest = await start_ingest(data_dir, up, config.cabinet_id, key)
        wiring = uplink_setup.wiring(config, data_dir, up, ingest.public_key if ingest else None)
    app = App(config, data_dir=data_dir, clock=clock, endpoints=endpoints, uplink=wiring, boards=boards)
    if child is not None:
        child.on_exit(stop.set)
    console = None
    if config.console is not None and config.console.enabled:  # the technician's web console (docs/console.md)
        from agent.console.server import ConsoleServer  # deferred: a console turned off costs no memory

        actions = app.controls.actions() if app.controls.active else {}
        console = ConsoleServer(
            config.console,
            data_dir=data_dir,
            snapshot=app.status,
            actions=actions,
            put=app.put,
            wall=clock.now,
            name=config.cabinet_id,
            config_path=config.source if Path(config.source).is_file() else None,
            boards=boards,
        )
        await console.start()
    stats = console.stats if console is not None else None
    app.status_server.snapshot = lambda: {**app.status(), "console": stats() if stats else None}
    try:
        await app.run(stop)
    finally:
        if console is not None:
            await console.close()
        if child is not None:
            await child.stop()
        if ingest is not None:
            await ingest.stop()
    if child is not None and child.failed:
        log.error("the simulated cabinet stopped unexpectedly (exit code %s)", child.returncode)
        return 1
    return 0
