"""A small, bounded HTTP/1.1 over asyncio streams: one request per connection (the answer
closes it), a head of at most MAX_HEAD bytes read within HEAD_TIMEOUT_S, a body only with a
Content-Length of at most MAX_BODY (no chunked uploads), and security headers on every answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

MAX_HEAD = 8192
MAX_BODY = 16384
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0

REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    peer: str
    query: dict[str, str] = field(default_factory=dict)  # ?a=1&b=2 (a repeated name keeps its last value)

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (HttpError 415/400 otherwise)."""
        if self.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise HttpError(415, "the body must be JSON (Content-Type: application/json)")
        try:
            doc = json.loads(self.body or b"{}")
        except ValueError as e:
            raise HttpError(400, f"the body is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise HttpError(400, "the body must be a JSON object")
        return doc


async def read_head(reader: asyncio.StreamReader, peer: str) -> Request:
    """The request line and headers (body not yet read)."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head larger than {MAX_HEAD} bytes") from None
    except (TimeoutError, asyncio.IncompleteReadError):
        raise HttpError(400, "incomplete request") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise HttpError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        headers[name.lower()] = value.strip()
    target, _, qs = parts[1].partition("?")
    try:
        query = dict(parse_qsl(qs, max_num_fields=20))
    except ValueError:
        raise HttpError(400, "bad query string") from None
    return Request(parts[0], unquote(target), headers, b"", peer, query)


async def read_body(reader: asyncio.StreamReader, req: Request, limit: int = MAX_BODY) -> None:
    if "transfer-encoding" in req.headers:
        raise HttpError(411, "send the body with a Content-Length (no chunked uploads)")
    raw = req.headers.get("content-length", "0")
    if not raw.isdigit():
        raise HttpError(400, "bad Content-Length")
    length = int(raw)
    if length > limit:
        raise HttpError(413, f"body of {length} bytes; at most {limit}")
    try:
        req.body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT_S)
    except (TimeoutError, asyncio.IncompleteReadError):
        raise HttpError(400, "incomplete body") from None


def response(
    status: int, body: bytes, content_type: str = "application/json", headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in (*SECURITY_HEADERS, *headers)]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def json_response(status: int, doc: Any, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    return response(status, json.dumps(doc, default=str).encode(), "application/json", headers)


def stream_head() -> bytes:
    """The head of a server-sent event stream (no length: it runs until one side closes)."""
    lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in SECURITY_HEADERS]
    lines += ["X-Accel-Buffering: no", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")
