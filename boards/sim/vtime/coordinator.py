"""The coordinator: one virtual time for every participant process.

Time moves only when every participant is idle (its event loop has nothing to do
before a deadline) and that idleness is confirmed: then it jumps to the earliest
deadline and only the participants due at that instant are woken. While any
participant is busy, time stands still: computation takes no virtual time.

Confirmation (why bytes in flight are never skipped over): a participant polls its
fds (select 0) before it reports IDLE, but another participant may write to it after
that poll. So after any participant was busy, every *other* participant is probed:
the probe is sent after the busy one's IDLE arrived, hence after all its writes, and
answered after a fresh poll. Linux makes a written byte visible to such a poll at once
(loopback TCP delivers during send; a pty's poll flushes the pending flip buffer), so
no real grace period is needed. A participant that was the only busy one confirms
itself (nobody could write to it meanwhile). And a participant that was the only busy
one and wrote nothing (its IDLE says QUIET: no send, no write since its last IDLE)
cannot have put a byte in anyone's way: the others that were confirmed before it woke
stay confirmed, no probe round (a contact poll, a plant step, a timer that only computes).

A participant that disconnects (exits, is killed) is dropped and the others go on.
`speed` paces virtual time to at most `speed` x wall time; None: as fast as possible.

Run: `python -m boards.sim.vtime.coordinator --socket PATH [--participants N] [--speed S]`.
"""

from __future__ import annotations

import argparse
import logging
import math
import mmap
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from boards.sim.vtime import protocol as p

log = logging.getLogger("boards.sim.vtime")


@dataclass
class Member:
    sock: socket.socket
    pid: int = 0
    idle: bool = False
    deadline: float = math.inf
    confirmed: bool = False
    solo: bool = False  # busy, and nobody else was busy meanwhile
    probe: int | None = None  # number of the probe awaiting its answer
    held: bool = False  # confirmed idle when another became busy: still so if that one wrote nothing
    buf: bytearray = field(default_factory=bytearray)


@dataclass
class Stats:
    advances: int = 0
    probes: int = 0
    quiet: int = 0  # probes not needed: the busy one wrote nothing
    messages: int = 0
    joined: int = 0
    left: list[int] = field(default_factory=list)  # pids, in order


class Coordinator:
    def __init__(
        self, path: str | os.PathLike, *, participants: int = 1, speed: float | None = None, epoch: float | None = None
    ) -> None:
        self.path = str(path)
        self.expect = participants
        self.speed = speed
        self.epoch = time.time() if epoch is None else epoch
        self.now = p.START
        self.stats = Stats()
        self.members: dict[int, Member] = {}  # fd -> member
        self._probe_seq = 0
        self._sel = selectors.DefaultSelector()
        self._stop_r, self._stop_w = os.pipe()
        Path(self.path).unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(64)
        self._server.setblocking(False)
        self._sel.register(self._server, selectors.EVENT_READ)
        self._sel.register(self._stop_r, selectors.EVENT_READ)
        tf = p.time_file(self.path)
        with open(tf, "wb") as f:
            f.write(p.TIME.pack(self.now))
        self._tfd = os.open(tf, os.O_RDWR)
        self._time = mmap.mmap(self._tfd, p.TIME.size)
        self._wall0: float | None = None  # wall time when the first advance was possible

    # the run ---------------------------------------------------------------------
    def stop(self) -> None:
        """From another thread or a signal handler: make `serve` return."""
        os.write(self._stop_w, b"x")

    def serve(self) -> Stats:
        """Until every expected participant has joined and all have left (or `stop`)."""
        try:
            while self.stats.joined < self.expect or self.members:
                timeout = self._step()
                for key, _ in self._sel.select(timeout):
                    if key.fileobj is self._server:
                        self._accept()
                    elif key.fileobj == self._stop_r:
                        return self.stats
                    else:
                        self._read(key.fileobj)  # type: ignore[arg-type]
            return self.stats
        finally:
            self.close()

    def close(self) -> None:
        for m in list(self.members.values()):
            self._drop(m)
        self._sel.close()
        self._server.close()
        Path(self.path).unlink(missing_ok=True)
        self._time.close()
        os.close(self._tfd)
        Path(p.time_file(self.path)).unlink(missing_ok=True)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)

    def _step(self) -> float | None:
        """Probe or advance if every member is idle; the select timeout (pacing) or None."""
        if self.stats.joined < self.expect or not self.members:
            return None
        members = self.members.values()
        if not all(m.idle for m in members):
            return None
        waiting = [m for m in members if not m.confirmed]
        if waiting:
            for m in waiting:
                if m.probe is None:
                    self._probe_seq += 1
                    m.probe = self._probe_seq
                    self._send(m, p.PROBE, m.probe)
                    self.stats.probes += 1
            return None
        target = max(self.now, min(m.deadline for m in members))
        if math.isinf(target):
            return None  # everyone waits for an fd: only something outside can help
        if self.speed:
            if self._wall0 is None:
                self._wall0 = time.monotonic()
            wait = self._wall0 + (target - p.START) / self.speed - time.monotonic()
            if wait > 0:
                return wait
        self._advance(target)
        return 0

    def _advance(self, target: float) -> None:
        self.now = target
        self._time[0 : p.TIME.size] = p.TIME.pack(target)
        self.stats.advances += 1
        due = [m for m in self.members.values() if m.deadline <= target]
        for m in due:
            self._busy(m)
        for m in due:
            self._send(m, p.ADVANCE, 0, target)

    # members ---------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            conn, _ = self._server.accept()
        except BlockingIOError:
            return
        conn.setblocking(True)
        m = Member(conn)
        self.members[conn.fileno()] = m
        self._sel.register(conn, selectors.EVENT_READ)
        self.stats.joined += 1
        self._busy(m)  # busy until its first IDLE
        self._send(m, p.WELCOME, 0, self.epoch)

    def _busy(self, m: Member) -> None:
        others_busy = False
        for o in self.members.values():
            if o is m:
                continue
            o.held = o.idle and o.confirmed and o.probe is None
            o.confirmed = False
            o.probe = None  # an answer to an older probe no longer counts
            if not o.idle:
                o.solo = False
                others_busy = True
        m.idle = False
        m.confirmed = False
        m.probe = None
        m.held = False
        m.solo = not others_busy

    def _read(self, sock: socket.socket) -> None:
        m = self.members.get(sock.fileno())
        if m is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(m)
            return
        m.buf += data
        for kind, seq, value in p.unpack_all(m.buf):
            self.stats.messages += 1
            if kind == p.HELLO:
                m.pid = seq
            elif kind == p.IDLE:
                m.idle = True
                m.deadline = value
                m.confirmed = m.solo
                m.probe = None
                if m.solo and seq == p.QUIET:
                    self._quiet(m)
            elif kind == p.BUSY:
                if m.idle:
                    self._busy(m)
            elif kind == p.OK and m.idle and m.probe == seq:
                m.confirmed = True
                m.probe = None

    def _quiet(self, m: Member) -> None:
        """`m`, the only one busy, wrote nothing: who was confirmed before still is."""
        for o in self.members.values():
            if o is not m and o.idle and o.held:
                o.confirmed = True
                o.probe = None
                self.stats.quiet += 1

    def _drop(self, m: Member) -> None:
        fd = m.sock.fileno()
        if fd in self.members:
            del self.members[fd]
            try:
                self._sel.unregister(m.sock)
            except (KeyError, ValueError):
                pass
        m.sock.close()
        self.stats.left.append(m.pid)
        log.info("participant %d left at virtual %.3f s", m.pid, self.now - p.START)
        for o in self.members.values():  # it may have written before it went
            o.confirmed = False
            o.probe = None

    def _send(self, m: Member, kind: int, seq: int = 0, value: float = 0.0) -> None:
        try:
            m.sock.sendall(p.pack(kind, seq, value))
        except OSError:
            self._drop(m)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.sim.vtime.coordinator", description=__doc__.split("\n")[0])
    ap.add_argument("--socket", required=True, help="Unix socket path participants connect to ($VTIME_SOCKET)")
    ap.add_argument("--participants", type=int, default=1, help="do not start time before this many joined")
    ap.add_argument("--speed", type=float, help="at most this many virtual seconds per wall second (default: no limit)")
    ap.add_argument("--epoch", type=float, help="wall time (s since 1970) at the start (default: now)")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    coord = Coordinator(args.socket, participants=args.participants, speed=args.speed, epoch=args.epoch)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: coord.stop())
    stats = coord.serve()
    print(
        f"virtual {coord.now - p.START:.3f} s, {stats.advances} advances, {stats.probes} probes "
        f"({stats.quiet} spared), {stats.messages} messages",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
