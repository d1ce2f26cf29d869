"""A simulated RS-485 line: pymodbus RTU devices behind a pseudo-terminal, with wire
timing, collisions and fault injection.

Owns `RtuLine`, the bus: the master (the agent, a test client) opens `link`, a
symlink to the slave side of a pty, exactly as it opens /dev/ttyUSB0 (like socat's
`link=`). The emulator owns the master side of that pty and, between it and the
devices (a `DeviceServer`, boards.sim.rtu_server: pymodbus on an internal pty),
behaves like the bus:

* Framing: request length from the function code (FC 1-6, 8 → 8 bytes; 15/16 → 9 +
  byte count; ...), otherwise the end of a frame is a silence of t3.5.
* Bad CRC → silence (counted). Unknown unit id → silence (a real bus has nobody to
  answer; pymodbus would answer exception 4). Unit 0 → broadcast: write requests
  reach every device, nobody answers.
* Timing: bytes are put on a virtual wire at the baud rate (11 bits a character).
  The reply reaches the master no earlier than first request byte + wire time of the
  request + turnaround (max(t3.5, turnaround_ms)) + wire time of the reply; it is
  written at once at that instant: never earlier, typically 0.02-0.15 ms later
  (sleep to just before the deadline, then yield to the loop). Deadlines are absolute
  loop times computed from the frame's first byte: no drift. The character is 11
  bits whatever `parity`/`stopbits` say (Modbus RTU's nominal character).
* Collisions: a request whose first character is on the wire before the previous
  transaction is over (its reply fully out plus t3.5; without a reply, its request
  plus t3.5) is counted and dropped. The reply of the previous transaction still
  goes out. So a master must keep t3.5 of silence after every reply.
* Line settings: when the master's pty is set to another baud rate than the line's
  (read back with tcgetattr), the devices see garbage: silence, counted in
  `baud_mismatch` (check_baud=False turns this off). Parity cannot be read back
  from a Linux pty and is not checked.
* Faults per unit id from a `FaultTable` (see boards.sim.faults).
* Requests a device refuses (address outside its span, forbidden range, count
  beyond its limits, malformed quantity) get an exception reply made here from the
  store (`check_request`); everything else is answered by pymodbus.

`vanish()` is the USB adapter unplugged (pty closed, symlink removed); `restore()`
plugs it back (new pty, symlink re-pointed). `transactions` keeps the timing of the
last 256 transactions to known units; `trace(direction, data)` (if set) sees every
frame the master sent ("rx") and every reply sent to it ("tx").

`stats`: requests (every frame the master sent), replies (frames or cut-off frames
sent back), silent_unknown_unit, crc_errors_in_requests, collisions, faults_applied,
broadcasts, exceptions (exception replies, from a device, the store check or an
EXCEPTION fault), baud_mismatch, bytes_in, bytes_out, dropped_bytes (reply bytes the
pty would not take: nobody reading).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import termios
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boards.sim.faults import Fault, FaultCounter, FaultKind, FaultTable
from boards.sim.ptys import close_pty, open_raw_pty, point_link
from boards.sim.rtu_frames import Frame, RequestFramer, crc_ok, exception_frame, t35, wire_time, with_crc
from boards.sim.rtu_server import DeviceServer
from boards.sim.store import RegisterStore, check_request

log = logging.getLogger(__name__)

WRITE_FCS = frozenset((5, 6, 15, 16, 22, 23))
_EPS = 1e-6
_SPIN_MIN, _SPIN_MAX = 0.0003, 0.003  # s before a deadline where the reply writer stops sleeping
STATS = (  # the counters of `RtuLine.stats` (module doc)
    "requests",
    "replies",
    "silent_unknown_unit",
    "crc_errors_in_requests",
    "collisions",
    "faults_applied",
    "broadcasts",
    "exceptions",
    "baud_mismatch",
    "bytes_in",
    "bytes_out",
    "dropped_bytes",
)


def _check_settings(devices: Mapping[int, RegisterStore], parity: str, stopbits: int) -> None:
    for unit in devices:
        if not 1 <= unit <= 247:
            raise ValueError(f"unit id {unit} not in 1..247")
    if parity not in ("N", "E", "O"):
        raise ValueError(f"parity {parity!r} not one of N, E, O")
    if stopbits not in (1, 2):
        raise ValueError(f"stopbits {stopbits} not 1 or 2")


@dataclass
class Transaction:
    """Wire timing of one request to a known unit (loop time, seconds)."""

    unit: int
    fc: int
    request: bytes = field(repr=False)
    request_start: float
    request_end: float
    reply: bytes | None = field(default=None, repr=False)
    reply_start: float | None = None
    reply_end: float | None = None
    written_at: float | None = None
    fault: FaultKind | None = None


class RtuLine:
    """One simulated RS-485 line with the devices `{unit id: store}`."""

    def __init__(
        self,
        link: str | os.PathLike,
        devices: Mapping[int, RegisterStore],
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        faults: FaultTable | None = None,
        turnaround_ms: float = 2.0,
        check_baud: bool = True,
        seed: int | None = None,
        nodes: Mapping[int, Callable[[bytes], bytes | None]] | None = None,
    ) -> None:
        _check_settings(devices, parity, stopbits)
        self.nodes = dict(nodes or {})  # unit -> a device that is its own frame handler (boards/sim/poles.py)
        self.link = Path(link)
        self.devices = dict(devices)
        self.baudrate = int(baudrate)
        self.parity = parity
        self.stopbits = stopbits
        self.faults = faults
        self.turnaround = max(t35(self.baudrate), turnaround_ms / 1000.0)
        self.t35 = t35(self.baudrate)
        self.check_baud = check_baud
        self.trace: Callable[[str, bytes], None] | None = None
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        self.transactions: collections.deque[Transaction] = collections.deque(maxlen=256)
        self._rng = random.Random(seed)
        self._counter = FaultCounter(faults)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._device = DeviceServer(
            self.devices, baudrate=self.baudrate, parity=parity, stopbits=stopbits, label=self.link
        )
        self._framer = RequestFramer(self.baudrate)
        self._m_fd: int | None = None  # master side of the public pty (ours)
        self._m_keep: int | None = None  # its slave, kept open (no EIO when the client closes)
        self._m_name: str | None = None
        self._silence: asyncio.TimerHandle | None = None
        self._busy_until = float("-inf")
        self._active = False
        self._tasks: set[asyncio.Task] = set()
        self._speed = getattr(termios, f"B{self.baudrate}", None)
        self._warned_baud = False
        self._oversleep = 0.0015

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> str:
        return str(self.link)

    @property
    def running(self) -> bool:
        return self._device.running

    async def start(self) -> None:
        if self._device.running:
            raise RuntimeError("line already started")
        self._loop = asyncio.get_running_loop()
        await self._device.start()
        try:
            self._open_master()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_master(remove_link=True)
        await self._device.stop()

    async def __aenter__(self) -> RtuLine:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def vanish(self) -> None:
        """The USB adapter is unplugged: the pty goes away with the symlink."""
        for task in list(self._tasks):
            task.cancel()
        self._close_master(remove_link=True)

    async def restore(self) -> None:
        """Plugged back in: a new pty, the symlink re-pointed at it."""
        if not self._device.running:
            raise RuntimeError("line not started")
        if self._m_fd is not None:
            return
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._open_master()

    def _open_master(self) -> None:
        assert self._loop is not None
        self._m_fd, self._m_keep, self._m_name = open_raw_pty()
        self._framer.reset()
        self._busy_until = float("-inf")
        self._active = False
        self._loop.add_reader(self._m_fd, self._on_master)
        point_link(self.link, self._m_name)

    def _close_master(self, remove_link: bool) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        close_pty(self._loop, self._m_fd, self._m_keep)
        self._m_fd = self._m_keep = None
        if remove_link and self._m_name is not None:
            try:
                if os.readlink(self.link) == self._m_name:
                    self.link.unlink()
            except OSError:
                pass
        self._active = False
        self._framer.reset()

    # ------------------------------------------------------------------ master side
    def _on_master(self) -> None:
        assert self._loop is not None and self._m_fd is not None
        try:
            data = os.read(self._m_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not data:
            return
        now = self._loop.time()
        self.stats["bytes_in"] += len(data)
        mismatch = self._baud_mismatch()
        for frame in self._framer.feed(data, now):
            self._on_frame(frame, mismatch)
        self._arm_silence(mismatch)

    def _arm_silence(self, mismatch: bool) -> None:
        assert self._loop is not None
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        deadline = self._framer.deadline()
        if deadline is not None:
            self._silence = self._loop.call_at(deadline + _EPS, self._on_silence, mismatch)

    def _on_silence(self, mismatch: bool) -> None:
        assert self._loop is not None
        self._silence = None
        frame = self._framer.flush(self._loop.time())
        if frame is not None:
            self._on_frame(frame, mismatch)
        else:
            self._arm_silence(mismatch)

    def _baud_mismatch(self) -> bool:
        if not self.check_baud or self._speed is None or self._m_fd is None:
            return False
        try:
            speed = termios.tcgetattr(self._m_fd)[5]  # ospeed: what the master sends at
        except termios.error:
            return False
        if speed == self._speed:
            return False
        if not self._warned_baud:
            self._warned_baud = True
            log.warning("%s: master's serial port is not set to %d baud: devices see garbage", self.link, self.baudrate)
        return True

    def _on_frame(self, frame: Frame, mismatch: bool) -> None:
        self.stats["requests"] += 1
        if self.trace is not None:
            self.trace("rx", frame.data)
        if self._active or frame.start < self._busy_until - _EPS:
            self.stats["collisions"] += 1
            self._busy_until = max(self._busy_until, frame.end + self.t35)
            return
        self._busy_until = frame.end + self.t35
        if mismatch:
            self.stats["baud_mismatch"] += 1
            return
        data = frame.data
        if not crc_ok(data):
            self.stats["crc_errors_in_requests"] += 1
            return
        unit = data[0]
        if unit == 0:
            self.stats["broadcasts"] += 1
            if data[1] in WRITE_FCS:
                self._spawn(self._broadcast(data))
            return
        if unit not in self.devices and unit not in self.nodes:
            self.stats["silent_unknown_unit"] += 1
            return
        self._active = True
        self._spawn(self._transact(frame))

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: line emulation failed", self.link, exc_info=task.exception())

    async def _broadcast(self, data: bytes) -> None:
        for unit in sorted(self.devices):
            code = check_request(self.devices[unit], data[1:-2])
            if code is None:
                await self._device.ask(with_crc(bytes((unit,)) + data[1:-2]))
        for node in self.nodes.values():
            node(data)

    async def _transact(self, frame: Frame) -> None:
        assert self._loop is not None
        data = frame.data
        unit, fc, pdu = data[0], data[1], data[1:-2]
        tx = Transaction(unit, fc, data, frame.start, frame.end)
        self.transactions.append(tx)
        try:
            fault = self._counter.due(unit)
            if fault is not None:
                self.stats["faults_applied"] += 1
                tx.fault = fault.kind
            reply: bytes | None
            if fault is not None and fault.kind is FaultKind.SILENT:
                reply = None
            elif fault is not None and fault.kind is FaultKind.EXCEPTION:
                reply = exception_frame(unit, fc, fault.exception_code)
            elif unit in self.nodes:
                reply = self.nodes[unit](data)
            else:
                code = check_request(self.devices[unit], pdu)
                if code is not None:
                    reply = exception_frame(unit, fc, code)
                else:
                    reply = await self._device.ask(data)
                if reply is not None and fault is not None:
                    reply = self._spoil(reply, fault)
            if reply is None:
                return
            spoiled = fault is not None and fault.kind not in (FaultKind.SLOW, FaultKind.EXCEPTION)
            if len(reply) >= 2 and reply[1] & 0x80 and not spoiled:
                self.stats["exceptions"] += 1
            delay = fault.delay_ms / 1000.0 if fault is not None else 0.0
            start = max(frame.end + self.turnaround + delay, self._loop.time())
            end = start + wire_time(len(reply), self.baudrate)
            tx.reply, tx.reply_start, tx.reply_end = reply, start, end
            self._busy_until = max(self._busy_until, end + self.t35)
            await self._sleep_until(end)
            self._write_master(reply)
            tx.written_at = self._loop.time()
            self.stats["replies"] += 1
            if self.trace is not None:
                self.trace("tx", reply)
        finally:
            self._active = False

    def _spoil(self, reply: bytes, fault: Fault) -> bytes:
        kind = fault.kind
        if kind is FaultKind.GARBAGE:
            junk = bytes(self._rng.getrandbits(8) for _ in range(len(reply)))
            if crc_ok(junk):
                junk = junk[:-1] + bytes((junk[-1] ^ 0x55,))
            return junk
        if kind is FaultKind.CRC:
            return reply[:-2] + bytes((reply[-2] ^ 0xFF, reply[-1] ^ 0xFF))
        if kind is FaultKind.WRONG_UNIT:
            other = reply[0] + 1 if reply[0] < 247 else 1
            return with_crc(bytes((other,)) + reply[1:-2])
        if kind is FaultKind.SHORT:
            return reply[: max(1, len(reply) // 2)]
        return reply  # SLOW: only the delay

    async def _sleep_until(self, deadline: float) -> None:
        """Never early, late by ~0.1 ms. asyncio's timers wake up to ~2 ms late (the
        selector rounds timeouts up to whole milliseconds, sometimes twice), so sleep
        until `_oversleep` before the deadline, then yield to the loop until it has
        passed (other tasks keep running). `_oversleep` follows the lateness seen:
        up at once, down slowly."""
        loop = self._loop
        assert loop is not None
        if getattr(loop, "virtual_time", False):  # boards/sim/vtime: a virtual timer is exact,
            await asyncio.sleep(max(0.0, deadline - loop.time()))  # and spinning would never end
            return
        while (left := deadline - loop.time()) > 0:
            if left <= self._oversleep + 2e-4:
                await asyncio.sleep(0)
                continue
            nap = left - self._oversleep - 2e-4
            t = loop.time()
            await asyncio.sleep(nap)
            late = loop.time() - t - nap
            est = late if late > self._oversleep else 0.9 * self._oversleep + 0.1 * late
            self._oversleep = min(max(est, _SPIN_MIN), _SPIN_MAX)

    def _write_master(self, data: bytes) -> None:
        if self._m_fd is None:
            return
        try:
            n = os.write(self._m_fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            return
        self.stats["bytes_out"] += n
        self.stats["dropped_bytes"] += len(data) - n
