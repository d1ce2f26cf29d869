"""The agent's local API: HTTP/1.1 on a Unix socket in the data dir.

`GET /status` returns the whole snapshot as JSON, `GET /points` only the points,
`GET /health` a short liveness answer. Technicians use `cabinet status`, or
`curl --unix-socket <data-dir>/agent.sock http://cabinet/status`.
Clients: `fetch` (asyncio, for the doctor) and `request` (blocking, for the command-line
tools: no event loop to start, so `cabinet status` answers in a few milliseconds).
`POST /<action>` with a JSON object body runs a local action registered by the agent
(e.g. `/lighting/override`, `/alarms/ack`); who may connect is decided by the
socket's file permissions (0660: root and the agent's group — the technician on
site). Requests are bounded in size and time; a bad request gets 400 with the reason,
an action's refusal 409.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.remote.host import ActionError  # what a local action raises when it refuses

SOCKET_NAME = "agent.sock"
_MAX_REQUEST = 8192
_MAX_BODY = 65536

Action = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class AgentRefused(OSError):
    """The agent answered, with an error status (the message is its reason)."""


class StatusServer:
    def __init__(
        self, path: Path, snapshot: Callable[[], dict[str, Any]], actions: dict[str, Action] | None = None
    ) -> None:
        self.path = Path(path)
        self.snapshot = snapshot
        self.actions: dict[str, Action] = dict(actions or {})
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
            if len(line) == 3 and line[0] == "GET":
                status, body = self._route(line[1])
            elif len(line) == 3 and line[0] == "POST":
                status, body = await self._post(line[1], head, reader)
            else:
                status, body = 400, {"error": "only GET /status, /points, /health or POST /<action>"}
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, body = 400, {"error": "bad or incomplete request"}
        except Exception as e:  # noqa: BLE001 - never let one request kill the server
            status, body = 500, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(body, default=str).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}[
            status
        ]
        try:
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
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

    async def _post(self, target: str, head: bytes, reader: asyncio.StreamReader) -> tuple[int, Any]:
        action = self.actions.get(target.split("?", 1)[0])
        if action is None:
            return 404, {"error": f"no such action {target}; known: {', '.join(sorted(self.actions)) or 'none'}"}
        length = None
        for h in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip()) if value.strip().isdigit() else -1
        if length is None or not 0 <= length <= _MAX_BODY:
            return 400, {"error": f"a POST needs a Content-Length of 0..{_MAX_BODY}"}
        raw = await asyncio.wait_for(reader.readexactly(length), 5.0)
        try:
            args = json.loads(raw or b"{}")
        except ValueError as e:
            return 400, {"error": f"body is not JSON: {e}"}
        if not isinstance(args, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            return 200, await action(args)
        except ActionError as e:
            return 409, {"error": str(e)}


async def fetch(
    path: Path, target: str = "/status", timeout: float = 5.0, post: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Client side: GET `target` (or POST `post` as JSON) on the agent's socket. Raises
    OSError if no agent runs or it refused (the message says why)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 24), timeout)
    try:
        writer.write(_message(target, post))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return _answer(raw)


def _message(target: str, post: dict[str, Any] | None) -> bytes:
    if post is None:
        return f"GET {target} HTTP/1.1\r\nHost: cabinet\r\n\r\n".encode()
    data = json.dumps(post).encode()
    return (
        f"POST {target} HTTP/1.1\r\nHost: cabinet\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def _answer(raw: bytes) -> dict[str, Any]:
    if not raw:  # an agent starting or stopping: not an answer yet
        raise ConnectionResetError("the agent closed the connection without answering")
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split()[1]) if head else 0
        doc = json.loads(body or b"{}")
    except (ValueError, IndexError) as e:
        raise AgentRefused(f"not an answer of the agent ({e})") from None
    if status != 200:
        error = doc.get("error") if isinstance(doc, dict) else doc
        raise AgentRefused(f"the agent refused: {error}" if status == 409 else f"agent answered {status}: {error}")
    return doc


def request(
    path: Path, target: str = "/status", timeout: float = 5.0, post: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Blocking client: GET `target` (or POST `post` as JSON) on the agent's socket. Raises
    OSError (TimeoutError, FileNotFoundError, ConnectionRefusedError ...) if no agent answers,
    AgentRefused if it refused (the message says why)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(_message(target, post))
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    return _answer(b"".join(chunks))


def wait_for_agent(path: Path, seconds: float, target: str = "/status") -> dict[str, Any]:
    """`request(target)` until the agent answers or `seconds` have passed (then the last OSError)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return request(path, target, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        except AgentRefused:
            raise
        except OSError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.2)
