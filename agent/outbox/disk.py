"""The outbox's filesystem, for `agent.outbox.store`: what the disk has free, what the
outbox's own files hold, and the reserve file.

The reserve is a file beside the database (`<db>-reserve`, plain zeros, allocated for
real, never synced) that holds disk space the outbox may need when the disk is full:
SQLite in WAL mode cannot free space without first writing (a checkpoint copies WAL
frames into the database file, which grows for pages that were new; the DELETE of an
eviction is itself a transaction appended to the WAL). `release()` gives the space
back to the filesystem for exactly that; `hold()` takes it again once the disk has
room. The store also releases it when it starts on a (nearly) full disk (a WAL database
cannot even be read without room for its 32 KiB index), and takes it again when the disk
has room, or on close from the room the WAL leaves. How big it is comes from the pure
`agent.outbox.policy.DiskPolicy`.

Runs in the outbox's worker thread (blocking calls). No decisions here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

SUFFIXES = ("", "-wal", "-shm", "-reserve")  # the outbox's own files: database, WAL, WAL index, reserve
CHUNK = 64 * 1024


def used_bytes(path: Path) -> int:
    """Bytes a file takes on its filesystem (allocated blocks; 0 when it does not exist)."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def own_bytes(db: Path) -> int:
    """Bytes the outbox's files take on the disk."""
    return sum(used_bytes(Path(f"{db}{s}")) for s in SUFFIXES)


def free_bytes(directory: Path) -> int:
    """Bytes available to this process on the filesystem of `directory`."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


class Reserve:
    """The reserve file: `hold(n)` allocates it (best effort: False when the disk has no
    room, nothing left half-made), `release()` deletes it. `held` is its size now."""

    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}-reserve")
        self.held = 0

    def hold(self, size: int) -> bool:
        if size <= 0:
            self.release()
            return True
        if self.held == size and used_bytes(self.path) >= size:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return False
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            _allocate(fd, size)
        except OSError as e:
            os.close(fd)
            self._unlink()
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            return False
        os.close(fd)
        self.held = size
        return True

    def release(self) -> int:
        """Delete the reserve; returns the bytes given back to the filesystem."""
        freed = used_bytes(self.path)
        self._unlink()
        return freed

    def _unlink(self) -> None:
        self.held = 0
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _allocate(fd: int, size: int) -> None:
    """Allocate `size` bytes for real (not a sparse hole): posix_fallocate, or zeros where
    the filesystem cannot (EOPNOTSUPP/EINVAL)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    zeros = bytes(CHUNK)
    done = 0
    while done < size:
        done += os.write(fd, zeros[: min(CHUNK, size - done)])
