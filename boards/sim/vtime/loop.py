"""The asyncio event loop whose time is virtual, and the clock that reads it.

`install(path)` connects this process to the coordinator at `path` (a `Link`) and
sets an event loop policy whose loops are `VirtualEventLoop`s: `loop.time()` is the
shared virtual time, so asyncio.sleep, wait_for, call_later, pymodbus timeouts and
the line emulator's wire timing all run in virtual time with no change to them.

How a loop waits (`VirtualSelector.select(timeout)`): it polls its fds first; if
something is ready, or the loop has work (timeout 0), it returns at once: the process
is busy and time stands still. Otherwise it tells the coordinator IDLE(now + timeout)
and blocks on two things: its own fds (a byte arrived: BUSY, run) and the coordinator
(PROBE: poll again and answer; ADVANCE: the deadline has come, run the due timers).

Writes are counted (`count_writes`: os.write and every socket send of this process): an
IDLE after a busy spell that wrote nothing says so (QUIET), and the coordinator then
spares the others a probe round (coordinator.py).

Worker threads (`run_in_executor`, `asyncio.to_thread`: the outbox's SQLite writes,
getaddrinfo) keep the loop busy until their result is back in the loop, so time does
not jump while a thread works.

If the coordinator goes away, the process goes on in real time from the virtual time
it had (a warning on stderr), rather than hanging.
"""

from __future__ import annotations

import asyncio
import math
import mmap
import os
import select
import selectors
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from boards.sim.vtime import protocol as p

_real_monotonic = time.monotonic  # real time: after the coordinator is gone


class Writes:
    """How many writes this process made (os.write and socket sends), from any thread."""

    count = 1  # before the first IDLE: what happened before joining is not known


def count_writes() -> None:
    """Count every os.write and socket send from now on (once per process)."""
    if getattr(os.write, "vtime_counted", False):
        return

    def counted(f: Callable[..., Any]) -> Callable[..., Any]:
        def write(*args: Any, **kwargs: Any) -> Any:
            Writes.count += 1
            return f(*args, **kwargs)

        write.vtime_counted = True  # type: ignore[attr-defined]
        return write

    os.write = counted(os.write)
    for name in ("send", "sendall", "sendto", "sendmsg"):
        setattr(socket.socket, name, counted(getattr(socket.socket, name)))


class Link:
    """This process's connection to the coordinator: the one per process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = bytearray()
        fd = os.open(p.time_file(path), os.O_RDONLY)
        try:
            self._time = mmap.mmap(fd, p.TIME.size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.floor = p.START  # never less than the deadline we were woken for
        self.detached_at: tuple[float, float] | None = None  # (virtual, real) when the coordinator went
        self._sendall = self.sock.sendall  # bound before count_writes wraps the class's method
        self.sock.sendall(p.pack(p.HELLO, os.getpid()))
        kind, _, epoch = self._next()
        if kind != p.WELCOME:
            raise RuntimeError(f"virtual time: {path} answered {p.NAMES.get(kind, kind)}, not WELCOME")
        self.epoch = epoch
        self.idle_waits = 0
        self._pollers: dict[int, select.poll] = {}

    def time(self) -> float:
        if self.detached_at is not None:
            v, r = self.detached_at
            return v + _real_monotonic() - r
        t = p.TIME.unpack_from(self._time, 0)[0]
        return t if t > self.floor else self.floor

    def wall(self) -> float:
        """Wall time (s since 1970) at the current virtual time."""
        return self.epoch + self.time() - p.START

    def _next(self) -> tuple[int, int, float]:
        while len(self.buf) < p.SIZE:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("the coordinator closed the connection")
            self.buf += data
        msg = p.FORMAT.unpack_from(self.buf, 0)
        del self.buf[: p.SIZE]
        return msg

    def _send(self, kind: int, seq: int = 0, value: float = 0.0) -> None:
        self._sendall(p.pack(kind, seq, value))  # not counted: not a byte to another participant

    def _detach(self, why: object) -> None:
        if self.detached_at is None:
            self.detached_at = (self.time(), _real_monotonic())
            print(f"virtual time: lost the coordinator ({why}); going on in real time", file=sys.stderr)

    def wait(self, timeout: float | None, poll_fds: Callable[[], list[Any]], selector_fd: int) -> list[Any]:
        """Idle until an fd is ready or the coordinator lets time reach now + timeout."""
        if self.detached_at is not None:
            return poll_fds_blocking(selector_fd, timeout, poll_fds)
        deadline = math.inf if timeout is None else self.time() + timeout
        self.idle_waits += 1
        quiet = Writes.count == 0
        Writes.count = 0
        try:
            self._send(p.IDLE, p.QUIET if quiet else 0, deadline)
            poller = self._pollers.get(selector_fd)
            if poller is None:  # one per event loop (by its epoll fd)
                poller = self._pollers[selector_fd] = select.poll()
                poller.register(selector_fd, select.POLLIN)
                poller.register(self.sock.fileno(), select.POLLIN)
            while True:
                while len(self.buf) >= p.SIZE:  # one at a time: what follows a return stays for later
                    kind, seq, value = p.FORMAT.unpack_from(self.buf, 0)
                    del self.buf[: p.SIZE]
                    if kind == p.PROBE:
                        ready = poll_fds()
                        if ready:
                            self._send(p.BUSY)
                            return ready
                        self._send(p.OK, seq)
                    elif kind == p.ADVANCE and value >= deadline:
                        self.floor = max(self.floor, value, deadline)
                        return poll_fds()
                for fd, _ in poller.poll():
                    if fd == selector_fd:
                        ready = poll_fds()
                        if ready:
                            self._send(p.BUSY)
                            return ready
                    else:
                        data = self.sock.recv(65536)
                        if not data:
                            raise ConnectionError("the coordinator closed the connection")
                        self.buf += data
        except (ConnectionError, OSError) as e:
            self._detach(e)
            return poll_fds()


def poll_fds_blocking(selector_fd: int, timeout: float | None, poll_fds: Callable[[], list[Any]]) -> list[Any]:
    poller = select.poll()
    poller.register(selector_fd, select.POLLIN)
    poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
    return poll_fds()


class VirtualSelector(selectors.EpollSelector):
    """An epoll selector that waits in virtual time (module doc).

    Before it reports idle and when probed, it polls its fds with poll(2), not only
    epoll: epoll_wait(0) only looks at fds whose driver already signalled them, while
    poll(2) asks each driver, and a pty's poll then delivers bytes still queued in the
    kernel (its flip buffer, moved by a work queue otherwise). Without this a byte
    written by another participant an instant earlier can be missed."""

    def __init__(self, link: Link, busy: Callable[[], bool]) -> None:
        super().__init__()
        self.link = link
        self.busy = busy
        self._mirror = select.poll()

    @staticmethod
    def _mask(events: int) -> int:
        return (select.POLLIN if events & selectors.EVENT_READ else 0) | (
            select.POLLOUT if events & selectors.EVENT_WRITE else 0
        )

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        self._mirror.register(key.fd, self._mask(events))
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        try:
            self._mirror.unregister(key.fd)
        except KeyError:
            pass
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().modify(fileobj, events, data)
        self._mirror.modify(key.fd, self._mask(events))
        return key

    def _poll(self) -> list[tuple[selectors.SelectorKey, int]]:
        try:
            self._mirror.poll(0)  # each driver's poll: flushes what is in flight (class doc)
        except OSError:
            pass
        return super().select(0)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        ready = self._poll()
        if ready:
            return ready
        if self.busy():  # a worker thread: its result comes through the self-pipe
            return super().select(None)
        return self.link.wait(timeout, self._poll, self.fileno())


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop on the coordinator's virtual time."""

    virtual_time = True  # what code that must behave differently in virtual time looks for

    def __init__(self, link: Link) -> None:
        self.link = link
        self.threads = 0  # executor jobs whose result has not reached the loop yet
        super().__init__(VirtualSelector(link, lambda: self.threads > 0))

    def time(self) -> float:
        return self.link.time()

    def call_later(  # type: ignore[override] # same call, looser types
        self, delay: float, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        """A positive delay is a timer in the future, however small: in real time the
        clock moves on while a program re-checks a deadline that float rounding put an
        ulp ahead of `now`; in virtual time it only moves when the loop waits."""
        now = self.time()
        when = now + delay
        if delay > 0 and when <= now:
            when = math.nextafter(now, math.inf)
        return self.call_at(when, callback, *args, context=context)

    def run_in_executor(  # type: ignore[override] # same call, looser types
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        fut = super().run_in_executor(executor, func, *args)
        self.threads += 1
        fut.add_done_callback(self._thread_done)
        return fut

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self.threads -= 1


class VirtualPolicy(asyncio.DefaultEventLoopPolicy):
    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return VirtualEventLoop(self.link)


class VirtualClock:
    """agent/clock.py's Clock protocol on the virtual time: monotonic() is the loop's
    time, now() the coordinator's epoch plus the virtual time elapsed."""

    def __init__(self, link: Link, synced: bool | None = True) -> None:
        self.link = link
        self.synced = synced

    def monotonic(self) -> float:
        return self.link.time()

    def now(self) -> float:
        return self.link.wall()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.link.time()))


_link: Link | None = None


def install(path: str | None = None) -> Link:
    """Join the coordinator at `path` (default $VTIME_SOCKET) and make every new event
    loop of this process virtual. Once per process; later calls return the same link."""
    global _link
    if _link is None:
        where = path or os.environ.get("VTIME_SOCKET")
        if not where:
            raise RuntimeError("virtual time: no coordinator socket (set VTIME_SOCKET)")
        _link = Link(where)
        count_writes()
        asyncio.set_event_loop_policy(VirtualPolicy(_link))
    return _link


def link() -> Link | None:
    """This process's link, if it joined."""
    return _link
