"""A small disk for the `disk` scenario: a tmpfs of a few MiB mounted as the agent's data
dir (needs root, as tests/test_outbox_disk.py's small_disk does), and a filler file that
takes every free byte of it until it is removed.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


class DiskUnavailable(RuntimeError):
    """The small disk could not be mounted (not root, no tmpfs): the scenario is skipped."""


class SmallDisk:
    def __init__(self, where: Path, size_mb: int) -> None:
        self.where = where
        self.size_mb = size_mb
        self.mounted = False
        self.filler = where / "chaos-filler"

    def mount(self) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.where)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise DiskUnavailable(f"cannot mount a {self.size_mb} MiB tmpfs (needs root): {r.stderr.strip()}")
        self.mounted = True

    def fill(self) -> int:
        """Take every free byte with the filler file; returns its size."""
        with open(self.filler, "ab", buffering=0) as f:
            for chunk in (2**20, 2**16, 2**12, 2**9):
                try:
                    while f.write(b"\1" * chunk):
                        pass
                except OSError:  # ENOSPC: on to smaller chunks
                    pass
        return self.filler.stat().st_size

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if not self.mounted:
            return
        for _ in range(50):
            if subprocess.run(["umount", str(self.where)], capture_output=True).returncode == 0:
                self.mounted = False
                return
            time.sleep(0.1)
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True)
        self.mounted = False
