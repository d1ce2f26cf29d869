"""A simulated Modbus TCP device or gateway: pymodbus behind a fault-injecting proxy.

`TcpEndpoint` runs a pymodbus `ModbusTcpServer` with all its devices on an internal
free loopback port, and listens on the public port (free, or the one given) with a
small asyncio proxy. The proxy parses MBAP frames (transaction id, protocol 0,
length, unit id), answers requests a device refuses from its store (`check_request`:
exact address/count checks), forwards the rest to pymodbus over one upstream
connection per client connection, and applies the faults of the `FaultTable` per
unit id:

========== =================================================================
SILENT     no reply (the request does not reach the device)
GARBAGE    random bytes of the length the genuine reply would have
CRC        the genuine reply with a wrong MBAP length field (+2: the client waits
           for bytes that never come)
WRONG_UNIT the genuine reply with another unit id in the header
SHORT      the first half of the genuine reply
SLOW       the genuine reply, `delay_ms` late
EXCEPTION  exception reply fc | 0x80 + `exception_code`
========== =================================================================

Unit ids not in `devices` get no reply (`unknown_unit="silent"`, a device that
ignores other ids) or exception 0x0B, gateway target failed to respond
(`unknown_unit="gateway"`). Requests on one connection are answered in order, one at
a time (as most devices and gateways do); several connections are served at once.

`refuse(True)` closes the public listener and drops every connection (clients then get
ECONNREFUSED); `refuse(False)` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import Mapping
from typing import Any

from boards.sim.faults import FaultCounter, FaultKind, FaultTable
from boards.sim.store import RegisterStore, check_request, quiet_pymodbus_server, sim_device

log = logging.getLogger(__name__)

_UPSTREAM_TIMEOUT = 2.0
GATEWAY_TARGET_FAILED = 0x0B


def _mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class TcpEndpoint:
    """Simulated Modbus TCP devices `{unit id: store}` behind one address."""

    def __init__(
        self,
        devices: Mapping[int, RegisterStore],
        *,
        faults: FaultTable | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        unknown_unit: str = "silent",
        seed: int | None = None,
    ) -> None:
        if unknown_unit not in ("silent", "gateway"):
            raise ValueError(f"unknown_unit {unknown_unit!r} must be 'silent' or 'gateway'")
        for unit in devices:
            if not 0 <= unit <= 255:
                raise ValueError(f"unit id {unit} not in 0..255")
        self.devices = dict(devices)
        self.faults = faults
        self.host = host
        self.port = port
        self.unknown_unit = unknown_unit
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "requests",
                "replies",
                "silent_unknown_unit",
                "faults_applied",
                "exceptions",
                "connections",
                "protocol_errors",
            ),
            0,
        )
        self._rng = random.Random(seed)
        self._counter = FaultCounter(faults)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._inner: tuple[str, int] | None = None
        self._lsock: socket.socket | None = None
        self._sessions: dict[asyncio.Task, asyncio.StreamWriter | None] = {}

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def listening(self) -> bool:
        return self._lsock is not None

    async def start(self) -> tuple[str, int]:
        if self._server is not None:
            raise RuntimeError("endpoint already started")
        from pymodbus import FramerType
        from pymodbus.server import ModbusTcpServer

        quiet_pymodbus_server()
        self._loop = asyncio.get_running_loop()
        server = ModbusTcpServer(
            [sim_device(u, s) for u, s in sorted(self.devices.items())],
            framer=FramerType.SOCKET,
            address=("127.0.0.1", 0),
        )
        await server.serve_forever(background=True)
        self._server = server
        listener = server.transport
        # pymodbus types its listener as a BaseTransport; for TCP it is loop.create_server's Server
        assert isinstance(listener, asyncio.Server)
        self._inner = listener.sockets[0].getsockname()[:2]
        try:
            self._listen()
        except BaseException:
            await self.stop()
            raise
        return self.address

    async def stop(self) -> None:
        self._unlisten()
        tasks = self._drop_sessions()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def __aenter__(self) -> TcpEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def refuse(self, on: bool) -> None:
        """on: close the listener and drop connections; off: listen again, same port."""
        if on:
            self._unlisten()
            self._drop_sessions()
        elif self._lsock is None:
            if self._server is None:
                raise RuntimeError("endpoint not started")
            self._listen()

    # ------------------------------------------------------------------ listener
    def _listen(self) -> None:
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._lsock = sock
        self._loop.add_reader(sock.fileno(), self._accept)

    def _unlisten(self) -> None:
        if self._lsock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._lsock.fileno())
            self._lsock.close()
            self._lsock = None

    def _accept(self) -> None:
        assert self._loop is not None
        while self._lsock is not None:
            try:
                conn, _ = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["connections"] += 1
            task = self._loop.create_task(self._session(conn))
            self._sessions[task] = None
            task.add_done_callback(self._session_done)

    def _session_done(self, task: asyncio.Task) -> None:
        self._sessions.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("TCP endpoint session failed", exc_info=task.exception())

    def _drop_sessions(self) -> list[asyncio.Task]:
        tasks = list(self._sessions)
        for task, writer in list(self._sessions.items()):
            if writer is not None:
                writer.transport.abort()
            task.cancel()
        return tasks

    # ------------------------------------------------------------------ one client
    async def _session(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except OSError:
            conn.close()
            return
        except BaseException:  # cancelled by refuse()/stop() before the session began
            conn.close()
            raise
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = writer
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                header = await reader.readexactly(7)
                tid, pid, length, unit = struct.unpack(">HHHB", header)
                if not 2 <= length <= 254:
                    self.stats["protocol_errors"] += 1
                    return  # cannot find the next frame: hang up, as devices do
                pdu = await reader.readexactly(length - 1)
                if pid != 0:
                    self.stats["protocol_errors"] += 1
                    continue
                self.stats["requests"] += 1
                upstream = await self._handle(writer, upstream, tid, unit, pdu)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            if upstream is not None:
                upstream[1].transport.abort()

    async def _handle(
        self,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
        tid: int,
        unit: int,
        pdu: bytes,
    ):
        fc = pdu[0]
        store = self.devices.get(unit)
        if store is None:
            if self.unknown_unit == "gateway":
                self.stats["exceptions"] += 1
                await self._send(writer, _mbap(tid, unit, bytes((fc | 0x80, GATEWAY_TARGET_FAILED))))
            else:
                self.stats["silent_unknown_unit"] += 1
            return upstream
        fault = self._counter.due(unit)
        if fault is not None:
            self.stats["faults_applied"] += 1
        if fault is not None and fault.kind is FaultKind.SILENT:
            return upstream
        if fault is not None and fault.kind is FaultKind.EXCEPTION:
            reply: bytes | None = _mbap(tid, unit, bytes(((fc | 0x80) & 0xFF, fault.exception_code)))
        else:
            code = check_request(store, pdu)
            if code is not None:
                reply = _mbap(tid, unit, bytes(((fc | 0x80) & 0xFF, code)))
            else:
                upstream, reply = await self._ask_device(upstream, tid, unit, pdu)
            if reply is not None and fault is not None:
                reply = self._spoil(reply, fault.kind)
        if reply is None:
            return upstream
        spoiled = fault is not None and fault.kind not in (FaultKind.SLOW, FaultKind.EXCEPTION)  # garbage, CRC, ...
        if not spoiled and len(reply) >= 8 and reply[7] & 0x80:
            self.stats["exceptions"] += 1
        if fault is not None and fault.delay_ms > 0:
            await asyncio.sleep(fault.delay_ms / 1000.0)
        await self._send(writer, reply)
        return upstream

    async def _send(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        writer.write(reply)
        await writer.drain()
        self.stats["replies"] += 1

    def _spoil(self, reply: bytes, kind: FaultKind) -> bytes:
        if kind is FaultKind.GARBAGE:
            return bytes(self._rng.getrandbits(8) for _ in range(len(reply)))
        if kind is FaultKind.CRC:
            (length,) = struct.unpack_from(">H", reply, 4)
            return reply[:4] + struct.pack(">H", length + 2) + reply[6:]
        if kind is FaultKind.WRONG_UNIT:
            other = (reply[6] + 1) % 256
            return reply[:6] + bytes((other,)) + reply[7:]
        if kind is FaultKind.SHORT:
            return reply[: max(1, len(reply) // 2)]
        return reply  # SLOW

    async def _ask_device(self, upstream, tid: int, unit: int, pdu: bytes):
        """Forward one request to pymodbus; (upstream connection, reply or None)."""
        assert self._inner is not None
        try:
            if upstream is None:
                upstream = await asyncio.wait_for(asyncio.open_connection(*self._inner), _UPSTREAM_TIMEOUT)
            reader, writer = upstream
            writer.write(_mbap(tid, unit, pdu))
            header = await asyncio.wait_for(reader.readexactly(7), _UPSTREAM_TIMEOUT)
            (length,) = struct.unpack_from(">H", header, 4)
            body = await asyncio.wait_for(reader.readexactly(length - 1), _UPSTREAM_TIMEOUT)
            return upstream, header + body
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            log.warning("TCP endpoint: device %d did not answer internally", unit)
            if upstream is not None:
                upstream[1].transport.abort()
            return None, None
