"""`cabinet ota serve DIR`: a small threaded static HTTP server for a TUF repository.

GET and HEAD of regular files under DIR/metadata/ and DIR/targets/ (nothing else: keys or
notes left in DIR stay private) with single-range support (206 with
Content-Range, 416 with `bytes */<size>`), Content-Length always, HTTP/1.1 keep-alive;
no directory listings, no dot files, no path traversal (paths are resolved and must stay
under DIR). Good for a lab, a test rig or a depot LAN; put a real web server or CDN in
front for a fleet. `start_server` runs it in a thread (tests, tools); `serve_main` is the CLI.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
SERVED = ("metadata", "targets")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end inclusive) for a satisfiable single range, None to send the whole file
    (no header, several ranges or bad syntax: RFC 9110 lets us ignore it), "unsatisfiable"."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    a, b = m.group(1), m.group(2)
    if not a:  # suffix: the last b bytes
        n = int(b)
        if n == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1) if size else "unsatisfiable"
    start = int(a)
    end = min(int(b), size - 1) if b else size - 1
    if b and int(b) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


class RepoHandler(BaseHTTPRequestHandler):
    """Static files under `server.root`; subclasses may override `send_body`."""

    protocol_version = "HTTP/1.1"
    server_version = "cabinet-ota-serve/1"
    quiet = True
    server: RepoServer

    def log_message(self, format: str, *args: Any) -> None:
        if not getattr(self.server, "quiet", True):
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def resolve(self) -> Path | None:
        """The file for the request path, or None (after sending the error)."""
        raw = urlsplit(self.path).path
        parts = unquote(raw).split("/")
        if not raw.startswith("/") or any(
            p in (".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts[1:]
        ):
            self.send_error(HTTPStatus.FORBIDDEN, "path refused")
            return None
        if len(parts) < 3 or parts[1] not in SERVED:
            self.send_error(HTTPStatus.NOT_FOUND)  # only metadata/ and targets/ files
            return None
        root: Path = self.server.root
        try:
            p = (root / "/".join(x for x in parts if x)).resolve(strict=True)
        except (OSError, RuntimeError):
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        if not p.is_relative_to(root):
            self.send_error(HTTPStatus.FORBIDDEN, "path refused")
            return None
        if not p.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)  # directories: no listing
            return None
        return p

    def do_HEAD(self) -> None:
        self.handle_file(head=True)

    def do_GET(self) -> None:
        self.handle_file(head=False)

    def handle_file(self, head: bool) -> None:
        p = self.resolve()
        if p is None:
            return
        try:
            f = open(p, "rb")  # noqa: SIM115 - `with f` below: only open() errors become a 404
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            rng = self.choose_range(self.headers.get("Range"), size)
            if rng == "unsatisfiable":
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if rng is None:
                start, count = 0, size
                self.send_response(HTTPStatus.OK)
            else:
                start, count = rng[0], rng[1] - rng[0] + 1
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {rng[0]}-{rng[1]}/{size}")
            self.send_header("Content-Type", "application/json" if p.suffix == ".json" else "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            length = self.length_header(p, count)
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if not head:
                f.seek(start)
                self.send_body(p, f, count)

    # ---- hooks (tests/ota_http.py injects faults through these)

    def choose_range(self, header: str | None, size: int):
        return parse_range(header, size)

    def extra_length(self, path: Path) -> int:
        return 0

    def length_header(self, path: Path, count: int) -> str | None:
        return str(count + self.extra_length(path))

    def send_body(self, path: Path, f, count: int) -> None:
        while count > 0:
            chunk = f.read(min(CHUNK, count))
            if not chunk:
                break
            self.wfile.write(chunk)
            count -= len(chunk)


class RepoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, addr: tuple[str, int], handler=RepoHandler, quiet: bool = True):
        self.root = Path(root).resolve()
        self.quiet = quiet
        super().__init__(addr, handler)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away: normal
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # an AF_INET(6) server's address is (host, port, ...)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


def start_server(
    root: Path, host: str = "127.0.0.1", port: int = 0, *, handler=RepoHandler, quiet: bool = True
) -> tuple[RepoServer, str]:
    """Serve `root` from a daemon thread; returns (server, base URL). Stop with
    `server.shutdown(); server.server_close()`. Port 0 picks a free port."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    server = RepoServer(root, (host, port), handler, quiet=quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="ota-serve", daemon=True).start()
    return server, server.url


def add_serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="repository directory (holds metadata/ and targets/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def serve_main(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    if not (d / "metadata").is_dir():
        print(f"cabinet ota serve: {d}: not a repository (no metadata/ directory)", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"cabinet ota serve: --port {args.port}: give 0..65535", file=sys.stderr)
        return 2
    try:
        server = RepoServer(d, (args.host, args.port), quiet=not args.verbose)
    except OSError as e:
        print(f"cabinet ota serve: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"serving {d} at {server.url}/ (metadata/, targets/); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="cabinet ota serve", description=__doc__.splitlines()[0])
    add_serve_args(_p)
    sys.exit(serve_main(_p.parse_args()))
