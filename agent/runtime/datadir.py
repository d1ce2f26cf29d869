"""The agent's data directory and its lock: one agent per data dir.

A second agent on the same data dir would fight over the buses, replace the
simulator's ptys and the status socket; the lock (flock on `agent.lock`, which
holds the owner's pid) refuses it with a clear message. The kernel drops the lock
when the process dies, so a kill -9 leaves nothing stale behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirBusy(RuntimeError):
    pass


class DataDirLock:
    def __init__(self, data_dir: Path, name: str = "agent") -> None:
        self.name = name
        self.path = Path(data_dir) / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirBusy(
                f"another {self.name} (pid {other}) is running with data dir {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
