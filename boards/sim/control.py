"""The simulated cabinet's control socket, for rigs and scenarios in other processes.

JSON lines over a Unix socket (`<sim dir>/control.sock`): one request object per
line, one answer per line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.

    {"cmd": "fault", "device": "meter_main", "kind": "silent"}        (also delay_ms, exception_code, every)
    {"cmd": "clear", "device": "meter_main"}
    {"cmd": "vanish", "bus": "rs485"}      {"cmd": "restore", "bus": "rs485"}
    {"cmd": "refuse", "bus": "dali", "on": true}
    {"cmd": "set", "input": "door_open", "value": true}
    {"cmd": "gps", "mode": "no_fix"}
    {"cmd": "state"}
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from boards.sim.cabinet import SimCabinet

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
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            await self.cabinet.command(req)
            return {"ok": True, "state": self.cabinet.state()}
        except (ValueError, KeyError, TypeError) as e:
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
