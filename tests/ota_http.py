"""Test rig for OTA: a TUF repository served over real HTTP (tools.ota.serve on a free
port) with fault injection: cut the connection after N body bytes, ignore Range (200),
append bytes beyond the file (endless data); every request is recorded with its Range."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ota.client import UpdateClient
from ota.fetcher import HttpFetcher
from ota.repo import Repository, init_keys
from tools.ota.serve import RepoHandler, parse_range, start_server


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class Faults:
    """What the server does wrong, for paths starting with `match` (default: targets)."""

    match: str = "/targets/"
    cuts: list[int] = field(default_factory=list)  # per matching GET: cut after N body bytes
    ignore_range: bool = False
    extra: int = 0  # bytes appended beyond the file
    no_length: bool = False  # no Content-Length: body ends at close
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ranges(self, prefix: str | None = None) -> list[str | None]:
        """Range headers of the recorded GETs (of paths starting with `prefix`)."""
        prefix = self.match if prefix is None else prefix
        with self.lock:
            return [r.range for r in self.requests if r.method == "GET" and r.path.startswith(prefix)]

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]


class FaultyHandler(RepoHandler):
    @property
    def faults(self) -> Faults:
        fl: Faults = self.server.faults  # type: ignore[attr-defined]  # RepoRig puts it on its RepoServer
        return fl

    def _hit(self) -> bool:
        return self.path.startswith(self.faults.match)

    def handle_file(self, head: bool) -> None:
        fl = self.faults
        with fl.lock:
            fl.requests.append(Request(self.command, self.path, self.headers.get("Range")))
        super().handle_file(head)

    def choose_range(self, header, size):
        if self._hit() and self.faults.ignore_range:
            return None
        return parse_range(header, size)

    def extra_length(self, path: Path) -> int:
        return self.faults.extra if self._hit() else 0

    def length_header(self, path: Path, count: int) -> str | None:
        if self._hit() and self.faults.no_length:
            self.close_connection = True
            self.send_header("Connection", "close")
            return None
        return super().length_header(path, count)

    def send_body(self, path: Path, f, count: int) -> None:
        fl = self.faults
        cut = None
        if self._hit():
            with fl.lock:
                cut = fl.cuts.pop(0) if fl.cuts else None
        if cut is None:
            super().send_body(path, f, count)
            if self._hit() and fl.extra:
                self.wfile.write(b"\xa5" * fl.extra)
            return
        super().send_body(path, f, min(cut, count))
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class RepoRig:
    """A repository directory served by FaultyHandler; `.url`, `.faults`, `.close()`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.server, self.url = start_server(self.root, handler=FaultyHandler)
        self.faults = Faults()
        self.server.faults = self.faults  # type: ignore[attr-defined]  # read by FaultyHandler.faults

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- a whole test world


def utcnow() -> datetime:
    """The real wall clock (ngclient checks expiry against it), UTC, no microseconds."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class World:
    """Keys, a repository with one target, and the rig serving it."""

    tmp: Path
    keys: Path
    repo: Repository
    rig: RepoRig
    name: str
    payload: bytes

    def client(self, tag: str = "a", fetcher: HttpFetcher | None = None, **kw) -> UpdateClient:
        """A client with its own cache/download dirs (`tag`), bootstrapped with root v1."""
        return UpdateClient(
            cache_dir=self.tmp / tag / "tuf",
            download_dir=self.tmp / tag / "dl",
            repository_url=self.rig.url,
            bootstrap_root=self.repo.root_bytes(1),
            fetcher=fetcher or fast_fetcher(),
            **kw,
        )

    def target_path(self, name: str | None = None) -> Path:
        info = self.repo.targets()[name or self.name]
        return self.repo.targets_dir / f"{info['sha256']}.{name or self.name}"


def fast_fetcher(**kw) -> HttpFetcher:
    """A fetcher with short timeouts, no backoff waits, no retries unless asked."""
    kw.setdefault("retries", 0)
    kw.setdefault("min_progress", 0)
    return HttpFetcher(connect_timeout_s=5, read_timeout_s=5, backoff=lambda n: 0.0, sleep=lambda s: None, **kw)


def build_world(tmp: Path, size: int = 300_000, name: str = "cabinet-agent-1.0.0.bundle") -> World:
    keys = tmp / "keys"
    init_keys(keys)
    repo = Repository.create(tmp / "repo", keys)
    payload = os.urandom(size)
    src = tmp / "src.bin"
    src.write_bytes(payload)
    repo.add_target(src, name, {"version": "1.0.0", "counter": 1}, keys)
    return World(tmp, keys, repo, RepoRig(tmp / "repo"), name, payload)
