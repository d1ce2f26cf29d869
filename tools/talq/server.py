"""`cabinet talq serve`: the Gateway API over HTTP/1.1 (api.py answers, this carries bytes).

A threading http.server: bodies over MAX_BODY bytes get 413 before they are read, a token
(when set) is required in the `Authorization: Bearer <token>` header (401 otherwise), every
answer carries `talq-api-version`, and no request ever gets a traceback: an unexpected
failure is a 500 with TALQ's genericError and one line in the log.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools.talq.api import API_VERSION, Answer, Source, error, handle
from tools.talq.source import SourceError

MAX_BODY = 64 * 1024
MAX_LINE = 8 * 1024
TIMEOUT_S = 30.0  # a connection idle this long is closed
log = logging.getLogger("talq")


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], source: Source, token: str | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(address, Handler)
        self.source = source
        self.token = token
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake (a silent client holds only its thread)."""
        if self.tls is not None:
            request.settimeout(TIMEOUT_S)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                log.info("TLS handshake with %s failed: %s", client_address[0], e)
                request.close()
                return
        super().finish_request(request, client_address)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="talq-gateway", daemon=True)
        t.start()
        return t


class Handler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT_S
    server_version = "cabinet-talq"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, a: Answer) -> None:
        data = b"" if a.body is None else json.dumps(a.body).encode()
        self.send_response(a.status)
        self.send_header("talq-api-version", API_VERSION)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in a.headers:
            self.send_header(k, v)
        if a.status == 405:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _any(self) -> None:
        length = self.headers.get("Content-Length", "0")
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            return self._answer(error(400, "headerValueNotValid", f"Content-Length {length!r}: not a number"))
        if n < 0 or n > MAX_BODY or len(self.path) > MAX_LINE:
            self.close_connection = True
            return self._answer(error(413, "payloadError", f"request over {MAX_BODY} bytes"))
        if n:
            self.rfile.read(n)  # nothing this gateway serves takes a body yet; read it to keep the connection sane
        if self.server.token is not None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
                return self._answer(error(401, "headerValueNotValid", "missing or wrong Authorization token"))
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            a = handle(self.command, url.path, query, headers, self.server.source)
        except SourceError as e:
            log.error("%s", e)
            a = error(503, "genericError", "the ingest database cannot be read now; try again")
        except Exception:
            log.exception("%s %s", self.command, self.path)
            a = error(500, "genericError", "unexpected failure in the gateway")
        self._answer(a)

    do_GET = do_HEAD = _any

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any other method (POST, TRACE, QUERY, ...): 405 with TALQ's error
            return self._any
        raise AttributeError(name)
