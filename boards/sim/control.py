"""The simulated cabinet's control socket, for rigs and scenarios in other processes.

JSON lines over a Unix socket (`<sim dir>/control.sock`, i.e.
`<data dir>/sim/control.sock`): one request object per line, one answer per line,
`{"ok": true, "done": "...", "state": {...}, ...}` or `{"ok": false, "error": "..."}`.
The vocabulary is boards/sim/commands.py (reference: docs/simulator.md); the command
line is `cabinet sim-control` (tools/sim/control.py).

    {"cmd": "fault", "device": "meter_main", "kind": "silent"}        (also delay_ms, exception_code, every)
    {"cmd": "clear", "device": "meter_main"}
    {"cmd": "vanish", "bus": "rs485"}      {"cmd": "restore", "bus": "rs485"}
    {"cmd": "refuse", "bus": "dali", "on": true}
    {"cmd": "set", "input": "door_open", "value": true}
    {"cmd": "gps", "mode": "no_fix"}
    {"cmd": "circuit", "circuit": "segment1", "failed": 0.5, "stuck": "closed"}
    {"cmd": "state"}    {"cmd": "read", "device": "climate"}    {"cmd": "endpoints"}

The socket exists only while the simulator serves: once it answers, every bus,
the GPS and the pins are up (`cabinet sim-control --wait SECONDS state` waits for that).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from boards.sim.cabinet import SimCabinet
from boards.sim.commands import CommandError

MAX_LINE = 4096


class ControlServer:
    def __init__(self, cabinet: SimCabinet, path: Path) -> None:
        self.cabinet = cabinet
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(b'{"ok": false, "error": "line too long"}\n')
                    break
                if not line:
                    break
                writer.write(json.dumps(await self.handle(line)).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except ValueError as e:
            return {"ok": False, "error": f"not a JSON object: {e}"}
        try:
            extra = await self.cabinet.command(req)
            return {"ok": True, **extra, "state": self.cabinet.state()}
        except CommandError as e:
            return {"ok": False, "error": str(e)}
        except (ValueError, KeyError, TypeError, OSError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}


async def send(path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Client side: one request, one answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 20), timeout)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        return json.loads(await asyncio.wait_for(reader.readline(), timeout))
    finally:
        writer.close()
