"""The `cabinet scan` command: build a bus engine from the arguments (or a bus of the
config, or the running simulator's pty for that bus) and run tools.scan.probe on it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.modbus.engine import BusEngine
from tools.scan.probe import parse_units, progress_bar, report, scan


def _engine(args: Any, load_config: Callable, data_dir: Path) -> BusEngine:
    if args.bus:
        config = load_config(args.config)
        bus = config.buses.get(args.bus)
        if bus is None:
            raise SystemExit(f"cabinet scan: no bus {args.bus!r} in the config (buses: {', '.join(config.buses)})")
        where = None
        ready = data_dir / "sim" / "endpoints.json"
        if config.board == "sim" and ready.exists():
            where = json.loads(ready.read_text())["buses"].get(args.bus)
        if bus.kind == "rtu":
            port = where[1] if where else bus.port
            return BusEngine.rtu(
                bus.name,
                port,
                baudrate=bus.baudrate,
                parity=bus.parity,
                stopbits=bus.stopbits,
                timeout_ms=args.timeout_ms,
            )
        host, port = (where[1], where[2]) if where else (bus.host, bus.port)
        return BusEngine.tcp(bus.name, host, port, timeout_ms=args.timeout_ms)
    if args.port:
        return BusEngine.rtu(
            "scan",
            args.port,
            baudrate=args.baudrate,
            parity=args.parity,
            stopbits=args.stopbits,
            timeout_ms=args.timeout_ms,
        )
    if args.host:
        return BusEngine.tcp("scan", args.host, args.tcp_port, timeout_ms=args.timeout_ms)
    raise SystemExit("cabinet scan: give --bus NAME, --port DEVICE or --host HOST")


def main(args: Any, load_config: Callable, default_data_dir: Callable[[], Path]) -> int:
    try:
        units = parse_units(args.units)
    except ValueError as e:
        print(f"cabinet scan: --units: {e}", file=sys.stderr)
        return 2

    async def go() -> list:
        engine = _engine(args, load_config, Path(args.data_dir or default_data_dir()))  # needs a running loop
        if not await engine.connect():
            raise SystemExit(f"cabinet scan: cannot open {engine.target}: {engine.reason}")
        try:
            return await scan(engine, units, progress=progress_bar())
        finally:
            await engine.close()

    found = asyncio.run(go())
    print(report(found, args.json))
    return 0
