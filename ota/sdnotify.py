"""Minimal sd_notify: the client (datagrams to $NOTIFY_SOCKET) and a receiving NotifyServer.

Owns the notify protocol bits the launcher and the agent use: READY=1, WATCHDOG=1, STATUS=,
WATCHDOG_USEC. An address starting with '@' is in the abstract namespace. Without
NOTIFY_SOCKET every send is a no-op returning False. Stdlib only.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile


def _address(addr: str) -> str | bytes:
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(msg: str, sock_addr: str | None = None) -> bool:
    """Send one notify datagram; False when there is no socket or the send failed."""
    addr = sock_addr if sock_addr is not None else os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(_address(addr))
            s.sendall(msg.encode())
        return True
    except OSError:
        return False


def ready() -> bool:
    return notify("READY=1")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    return notify("STATUS=" + text.replace("\n", " "))


def watchdog_interval() -> float | None:
    """Seconds from WATCHDOG_USEC (None when unset, invalid, or meant for another pid)."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class NotifyServer:
    """A datagram socket in a private temp dir receiving notify messages (one per datagram)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="cabinet-boot-")
        self.path = os.path.join(self._dir, "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(self.path)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive(self, timeout: float = 0.0) -> list[str]:
        """Messages that arrived, waiting up to timeout seconds for the first one."""
        out: list[str] = []
        if timeout > 0:
            select.select([self._sock], [], [], timeout)
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return out
            out.append(data.decode("utf-8", "replace"))

    def close(self) -> None:
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NotifyServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
