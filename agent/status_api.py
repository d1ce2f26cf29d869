"""The agent's local read-only status API: HTTP/1.1 on a Unix socket in the data dir.

`GET /status` returns the whole snapshot as JSON, `GET /points` only the points,
`GET /health` a short liveness answer. Technicians use `cabinet status`, or
`curl --unix-socket <data-dir>/agent.sock http://cabinet/status`. Nothing can be
changed through it. Requests are bounded in size and time; a bad request gets 400.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Callable

SOCKET_NAME = "agent.sock"
_MAX_REQUEST = 8192


class StatusServer:
    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = Path(path)
        self.snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a stale socket from a crashed run
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(line) != 3 or line[0] != "GET":
                status, body = 400, {"error": "only GET /status, /points or /health"}
            else:
                status, body = self._route(line[1])
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, body = 400, {"error": "bad or incomplete request"}
        except Exception as e:  # noqa: BLE001 - never let one request kill the server
            status, body = 500, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(body, default=str).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}[status]
        try:
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _route(self, target: str) -> tuple[int, Any]:
        path = target.split("?", 1)[0]
        if path == "/status":
            return 200, self.snapshot()
        if path == "/points":
            return 200, {"points": self.snapshot()["points"]}
        if path == "/health":
            snap = self.snapshot()
            return 200, {"ok": True, "uptime_s": snap.get("agent", {}).get("uptime_s")}
        return 404, {"error": f"no such path {path}"}


async def fetch(path: Path, target: str = "/status", timeout: float = 5.0) -> dict[str, Any]:
    """Client side: GET `target` from the agent's socket. Raises OSError if no agent runs."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 24), timeout)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: cabinet\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    doc = json.loads(body or b"{}")
    if status != 200:
        raise OSError(f"agent answered {status}: {doc.get('error')}")
    return doc
