"""The `cabinet scan` command: build a bus engine from the arguments (a bus of the config,
reached where tools.scan.where says - on board "sim" the running simulator's pty or
port - or a serial device, or a Modbus TCP host) and run tools.scan.probe on it.

Exit codes: 0 devices answered; 1 none answered, the bus did not open, the simulated
cabinet is not running, or the running agent is master of that RTU line (one master
per line: stop it first); 2 usage or config error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.scan.probe import parse_units, progress_bar, report, scan
from tools.scan.where import SIM_HINT, SimNotRunning, agent_rtu_masters, bus_endpoints


class ScanRefused(Exception):
    """An expected reason not to scan: the message (and the exit code) for the user."""

    def __init__(self, message: str, code: int = 1, *, passing: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.passing = passing  # may go away by itself (a simulator starting): worth waiting for


def target(args: Any, load_config: Callable, data_dir: Path) -> tuple:
    """("rtu", port, baudrate, parity, stopbits) or ("tcp", host, port) to scan, from the arguments."""
    if args.bus:
        config = load_config(args.config)
        bus = config.buses.get(args.bus)
        if bus is None:
            raise ScanRefused(f"no bus {args.bus!r} in the config (buses: {', '.join(config.buses)})", 2)
        try:
            where = bus_endpoints(config, data_dir).get(args.bus)
        except SimNotRunning as e:
            raise ScanRefused(f"{e}; {SIM_HINT}", passing=True) from None
        if bus.kind == "rtu":
            return ("rtu", where[1] if where else bus.port, bus.baudrate, bus.parity, bus.stopbits)
        return ("tcp", where[1], where[2]) if where else ("tcp", bus.host, bus.port)
    if args.port:
        return ("rtu", args.port, args.baudrate, args.parity, args.stopbits)
    if args.host:
        return ("tcp", args.host, args.tcp_port)
    raise ScanRefused("give --bus NAME, --port DEVICE or --host HOST", 2)


def _engine(where: tuple, timeout_ms: float) -> Any:
    from drivers.modbus.engine import BusEngine  # deferred: heavy (pymodbus)

    if where[0] == "rtu":
        _, port, baudrate, parity, stopbits = where
        return BusEngine.rtu("scan", port, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout_ms=timeout_ms)
    return BusEngine.tcp("scan", where[1], where[2], timeout_ms=timeout_ms)


def _where(args: Any, load_config: Callable, data_dir: Path) -> tuple:
    """What to scan, waiting up to --wait seconds for a simulated cabinet that is starting;
    ScanRefused when it cannot or must not be scanned."""
    deadline = time.monotonic() + max(0.0, args.wait)
    while True:
        try:
            where = target(args, load_config, data_dir)
            break
        except ScanRefused as e:
            if not e.passing or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)
    if where[0] == "rtu":
        polled = agent_rtu_masters(data_dir).get(os.path.realpath(where[1]))
        if polled is not None:
            raise ScanRefused(
                f"the running agent polls this line (bus {polled}, {where[1]}); one master per line: "
                "stop the agent first, then scan"
            )
    return where


async def _scan(where: tuple, units: list[int], timeout_ms: float, wait_s: float) -> tuple[list, str | None, str]:
    """(devices found, why the bus did not open or None, the bus's name); the bus is retried
    for `wait_s` seconds (an adapter being plugged in, a simulator starting)."""
    engine = _engine(where, timeout_ms)  # needs a running loop
    deadline = asyncio.get_running_loop().time() + max(0.0, wait_s)
    try:
        while not await engine.connect():
            if asyncio.get_running_loop().time() >= deadline:
                return [], engine.reason, engine.target
            await asyncio.sleep(0.5)
        return await scan(engine, units, progress=progress_bar()), None, engine.target
    finally:
        await engine.close()


def main(args: Any, load_config: Callable, default_data_dir: Callable[[], Path]) -> int:
    try:
        units = parse_units(args.units)
    except ValueError as e:
        print(f"cabinet scan: --units: {e}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir or default_data_dir())
    logging.getLogger("drivers").setLevel(logging.CRITICAL)  # the bus's own log lines would repeat ours
    try:
        where = _where(args, load_config, data_dir)
    except ScanRefused as e:
        print(f"cabinet scan: {e}", file=sys.stderr)
        return e.code
    found, failed, name = asyncio.run(_scan(where, units, args.timeout_ms, args.wait))
    if failed is not None:
        print(f"cabinet scan: cannot open {name}: {failed}", file=sys.stderr)
        return 1
    if found or args.json:
        print(report(found, args.json))
    if not found:
        print(
            f"cabinet scan: no devices answered on {where[0]} {name} (units {args.units}, "
            f"{args.timeout_ms:g} ms each): check power, wiring (A/B), termination and the line settings",
            file=sys.stderr,
        )
        return 1
    return 0
