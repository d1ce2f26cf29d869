"""The devices of a simulated RS-485 line, served by pymodbus on an internal pty.

Owns `DeviceServer`: a pymodbus `ModbusSerialServer` (RTU framer) serving every device
`{unit id: RegisterStore}` of one line on the slave side of an internal pty, and the
request→reply exchange with it on the master side of that pty. `ask(frame)` writes one
complete request frame (with CRC) and returns the reply frame, or None (no answer
within `_DEVICE_TIMEOUT`, or the server stopped). One request at a time (a lock); the
reply's end is found from its length (`reply_length`), or for layouts without one, a
quiet of `_UNKNOWN_REPLY_IDLE`. A reply that does not match the unit and function code
of the request in flight (late, for a cancelled request) is dropped. Wire timing,
faults and collisions are not here: boards.sim.line does them around `ask()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from boards.sim.ptys import close_pty, open_raw_pty
from boards.sim.rtu_frames import reply_length
from boards.sim.store import RegisterStore, quiet_pymodbus_server, sim_device

log = logging.getLogger(__name__)

_DEVICE_TIMEOUT = 1.0  # s the internal pymodbus server may take (it takes ~1 ms)
_UNKNOWN_REPLY_IDLE = 0.02  # s of quiet that ends a reply whose length is unknown


class DeviceServer:
    """pymodbus serving `devices` on an internal pty; `ask()` exchanges one frame with it.
    `label` names the line in log messages."""

    def __init__(
        self, devices: Mapping[int, RegisterStore], *, baudrate: int, parity: str, stopbits: int, label: Any = ""
    ) -> None:
        self.devices = devices
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.label = label
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._lock: asyncio.Lock | None = None
        self._fd: int | None = None  # master side of the internal pty
        self._keep: int | None = None  # its slave side, where pymodbus listens (kept open)
        self._buf = bytearray()
        self._expect = b"\x00\x00"  # unit and function code of the request in flight
        self._waiter: asyncio.Future | None = None
        self._idle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Open the internal pty and start pymodbus on it (in the background)."""
        if self._server is not None:
            raise RuntimeError("device server already started")
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer

        quiet_pymodbus_server()
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._fd, self._keep, name = open_raw_pty()
        self._loop.add_reader(self._fd, self._on_readable)
        server = ModbusSerialServer(
            [sim_device(u, s) for u, s in sorted(self.devices.items())],
            framer=FramerType.RTU,
            port=name,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            reconnect_delay=0.1,
        )
        try:
            await server.serve_forever(background=True)
        except BaseException:
            self._close()
            raise
        self._server = server

    async def stop(self) -> None:
        """Shut pymodbus down and close the internal pty (idempotent)."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()
        self._close()

    def _close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        close_pty(self._loop, self._fd, self._keep)
        self._fd = self._keep = None

    async def ask(self, frame: bytes) -> bytes | None:
        """Send one request frame to the internal pymodbus server; its reply or None."""
        assert self._loop is not None and self._lock is not None
        async with self._lock:
            if self._fd is None:
                return None
            self._buf.clear()
            waiter = self._loop.create_future()
            self._waiter = waiter
            self._expect = frame[:2]
            try:
                os.write(self._fd, frame)
                return await asyncio.wait_for(waiter, _DEVICE_TIMEOUT)
            except (TimeoutError, OSError):
                log.warning("%s: device %d did not answer internally", self.label, frame[0])
                return None
            finally:
                self._waiter = None
                if self._idle is not None:
                    self._idle.cancel()
                    self._idle = None

    def _on_readable(self) -> None:
        assert self._loop is not None and self._fd is not None
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody asked (a stray byte): dropped
        self._buf += data
        while self._buf:
            n = reply_length(self._buf)
            if n is None:  # more bytes to come, or a layout without a length
                if self._idle is not None:
                    self._idle.cancel()
                self._idle = self._loop.call_later(_UNKNOWN_REPLY_IDLE, self._on_idle)
                return
            if len(self._buf) < n:
                return
            reply = bytes(self._buf[:n])
            del self._buf[:n]
            if reply[0] == self._expect[0] and reply[1] & 0x7F == self._expect[1]:
                waiter.set_result(reply)
                return
            # else: a late reply to a request whose transaction was cancelled; dropped

    def _on_idle(self) -> None:
        self._idle = None
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._buf:
            waiter.set_result(bytes(self._buf))
