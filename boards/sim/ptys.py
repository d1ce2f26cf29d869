"""Raw pseudo-terminals for the simulated RS-485 line (boards.sim.line) and its device
server (boards.sim.rtu_server): open one in raw mode with a non-blocking master side,
close one (reader removed, both sides closed), point a symlink at one (like socat's
`link=`)."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path


def open_raw_pty() -> tuple[int, int, str]:
    """A new pty, both sides raw, master non-blocking: (master fd, slave fd, slave name)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def close_pty(loop: asyncio.AbstractEventLoop | None, fd: int | None, keep: int | None) -> None:
    """Stop watching the master side `fd` (if a loop is given) and close both sides.
    Nothing happens when `fd` is None (not open)."""
    if fd is None:
        return
    if loop is not None:
        loop.remove_reader(fd)
    for f in (fd, keep):
        if f is not None:
            os.close(f)


def point_link(link: Path, target: str) -> None:
    """Point the symlink `link` at `target` atomically (refuses to replace a real file)."""
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink: not replacing it")
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)
