"""The Modbus bus engine: one owner per bus, on pymodbus 3.16.

A BusEngine owns one transport: an RS-485 line (RTU over a serial port) or one
Modbus TCP endpoint. Every transaction on it goes through one lock, so requests
never overlap, and on RTU the inter-frame silence (3.5 characters, or the
configured delay) is kept between frames. Timeouts are in milliseconds and are
the device's answer allowance; the wire time of request and reply at the line's
baud rate is added.

Every failure becomes a ModbusFault with a kind and a readable reason: no
response, CRC error, reply from the wrong unit id, short or garbled reply, an
exception code, the port gone, the connection refused, or a bad frame. The engine
owns the framing of its replies (drivers.modbus.framing): a frame addressed to the
request that is not its reply (wrong function code, byte count or length) fails
the request at once as `bad_frame: ...`, is counted per unit and never raises inside
asyncio. Writes are verified by reading back. The bus reconnects by itself with
backoff when its port vanishes or its endpoint refuses; `state`/`reason` say why it
is down.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from drivers.modbus import replies
from drivers.modbus.framing import BadFrameError, FrameGuard
from drivers.modbus.health import DeviceHealth
from drivers.modbus.replies import FrameProblem

log = logging.getLogger("drivers.modbus")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log per state change ourselves


class ModbusFault(Exception):
    """A failed transaction. `device_level` faults (no/garbled reply) count toward a
    device's backoff; an exception reply means the device is alive."""

    def __init__(self, kind: str, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.code = code

    @property
    def device_level(self) -> bool:
        return self.kind not in ("exception", "verify")

    @property
    def bus_level(self) -> bool:
        return self.kind == "bus_down"


_TABLE_READ = {
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}


class BusEngine:
    def __init__(
        self,
        name: str,
        client: Any,
        *,
        kind: str,
        timeout_s: float,
        retries: int,
        inter_frame_s: float,
        baudrate: int | None = None,
        target: str = "",
        rs485: bool = False,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.target = target
        self.timeout_s = timeout_s
        self.retries = retries
        self.inter_frame_s = inter_frame_s
        self.baudrate = baudrate
        self.rs485 = rs485
        self._client = client
        self._lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._line_free_at = 0.0
        self._rx = b""
        self._link = DeviceHealth(reconnect_initial_s, reconnect_max_s, seed=name)
        self.state = "closed"  # closed | up | down
        self.reason: str | None = None
        self.stats = {
            "transactions": 0,
            "completed": 0,
            "failures": 0,
            "reconnects": 0,
            "busy_s": 0.0,
            "bytes_out": 0,
            "bytes_in": 0,
        }
        client.ctx.trace_packet = self._trace
        self.frames = FrameGuard(client, name, self._now)

    # construction ---------------------------------------------------------------
    @classmethod
    def rtu(
        cls,
        name: str,
        port: str,
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout_ms: float = 300,
        retries: int = 0,
        inter_frame_ms: float | None = None,
        rs485: bool = False,
        **kw: Any,
    ) -> BusEngine:
        client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            timeout=timeout_ms / 1000,
            retries=retries,
            reconnect_delay=0,
            name=name,
        )
        gap = replies.t35(baudrate) if inter_frame_ms is None else inter_frame_ms / 1000
        return cls(
            name,
            client,
            kind="rtu",
            timeout_s=timeout_ms / 1000,
            retries=retries,
            inter_frame_s=gap,
            baudrate=baudrate,
            target=port,
            rs485=rs485,
            **kw,
        )

    @classmethod
    def tcp(
        cls,
        name: str,
        host: str,
        port: int = 502,
        *,
        timeout_ms: float = 1000,
        retries: int = 0,
        inter_frame_ms: float = 0.0,
        **kw: Any,
    ) -> BusEngine:
        client = AsyncModbusTcpClient(
            host,
            port=port,
            framer=FramerType.SOCKET,
            timeout=timeout_ms / 1000,
            retries=retries,
            reconnect_delay=0,
            name=name,
        )
        return cls(
            name,
            client,
            kind="tcp",
            timeout_s=timeout_ms / 1000,
            retries=retries,
            inter_frame_s=inter_frame_ms / 1000,
            target=f"{host}:{port}",
            **kw,
        )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.stats["bytes_out"] += len(data)
        elif len(data) > len(self._rx):
            self._rx = bytes(data)
        return data

    # connection -----------------------------------------------------------------
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def connect(self) -> bool:
        """Make sure the transport is open; respects the reconnect backoff."""
        async with self._connect_lock:
            return await self._connect()

    async def _connect(self) -> bool:
        if self._client.connected:
            return True
        now = self._now()
        if not self._link.ready(now):
            return False
        ok = await self._client.connect()
        if ok:
            if self.rs485:
                self._enable_rs485()
            if self._link.successes:
                self.stats["reconnects"] += 1
            if self.state in ("closed", "down"):
                self.state = "connecting"  # "up" (and its log line) once a transaction succeeds
            return True
        reason = await self._why_not_connected()
        self._link.failure(now, reason)
        self._set_state("down", reason)
        return False

    async def _why_not_connected(self) -> str:
        if self.kind == "rtu":
            if not os.path.exists(self.target):
                return f"port missing: {self.target}"
            return f"cannot open port {self.target}"
        host, _, port = self.target.rpartition(":")
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), self.timeout_s)
            w.close()
            return f"connect to {self.target} failed"
        except ConnectionRefusedError:
            return f"connection refused by {self.target}"
        except TimeoutError:
            return f"connect to {self.target} timed out"
        except OSError as e:
            return f"cannot connect to {self.target}: {e.strerror or e}"

    def _enable_rs485(self) -> None:
        try:
            import serial.rs485

            self._client.ctx.transport.sync_serial.rs485_mode = serial.rs485.RS485Settings()
        except Exception as e:  # noqa: BLE001 - the port stays usable without it
            log.warning("bus %s: RS-485 mode not available on %s: %s", self.name, self.target, e)
            self.rs485 = False

    def _set_state(self, state: str, reason: str | None) -> None:
        if (state, reason) != (self.state, self.reason):
            if state == "up":
                log.info("bus %s up (%s)", self.name, self.target)
            elif state == "down":
                log.warning("bus %s down: %s", self.name, reason)
        self.state, self.reason = state, reason

    def _answered(self) -> None:
        """A device answered: the transport works."""
        self._link.success(self._now())
        if self.state != "up":
            self._set_state("up", None)

    def _lost(self, reason: str) -> ModbusFault:
        self._client.close()
        self._link.failure(self._now(), reason)
        self._set_state("down", reason)
        return ModbusFault("bus_down", reason)

    async def close(self) -> None:
        self._client.close()
        self.state = "closed"

    # transactions ---------------------------------------------------------------
    def _timeout_for(self, request_len: int, reply_len: int) -> float:
        if self.kind == "rtu" and self.baudrate:
            return self.timeout_s + replies.wire_time(request_len + reply_len, self.baudrate) + self.inter_frame_s
        return self.timeout_s

    async def _transact(
        self, unit: int, fc: int, count: int, call: Callable[[], Awaitable[Any]], lengths: tuple[int, int]
    ) -> Any:
        if not self._client.connected and not await self.connect():
            raise ModbusFault("bus_down", f"bus down: {self.reason}")
        bad: FrameProblem | None = None
        async with self._lock:
            wait = self._line_free_at - self._now()
            if wait > 0:
                await asyncio.sleep(wait)
            self._rx = b""
            self._client.ctx.comm_params.timeout_connect = self._timeout_for(*lengths)
            started = self._now()
            self.stats["transactions"] += 1
            self.frames.expect(unit, fc, count)
            try:
                resp = await call()
            except BadFrameError as e:  # counted and logged by the guard
                self.stats["failures"] += 1
                bad = e.problem
            except ModbusIOException:
                self.stats["failures"] += 1
                if not self._client.connected and self.kind == "rtu":
                    raise self._lost(self._gone_reason()) from None
                # TCP: pymodbus hangs up after several timeouts in a row; that is the
                # device not answering (its backoff handles it), the next request reconnects
                if self.kind == "rtu":
                    reason = replies.classify_rtu(self._rx, unit, fc, lengths[1])
                else:
                    reason = replies.classify_tcp(self._rx, unit, fc)
                raise ModbusFault("timeout" if reason == "no response" else "garbled", reason) from None
            except ConnectionException:
                self.stats["failures"] += 1
                raise self._lost(self._gone_reason()) from None
            except (ModbusException, OSError) as e:
                self.stats["failures"] += 1
                raise ModbusFault("garbled", f"transport error: {e}") from None
            finally:
                self.frames.settle()
                end = self._now()
                self.stats["completed"] += 1
                self.stats["busy_s"] += end - started
                self.stats["bytes_in"] += len(self._rx)
                self._line_free_at = end + self.inter_frame_s
        self._answered()  # bytes came back: the transport works
        if bad is not None:
            raise ModbusFault("bad_frame", str(bad))
        if resp.function_code not in (fc, fc | 0x80):  # the guard checked; a second line
            raise self._reject(unit, FrameProblem("wrong function code", f"{resp.function_code}, asked {fc}"))
        self.frames.good(unit)
        if resp.isError():
            code = getattr(resp, "exception_code", 0)
            raise ModbusFault("exception", replies.exception_text(code), code)
        return resp

    def _reject(self, unit: int, problem: FrameProblem) -> ModbusFault:
        """A decoded reply that is still not the one asked for: a bad frame."""
        self.stats["failures"] += 1
        self.frames.reject(unit, problem)
        return ModbusFault("bad_frame", str(problem))

    def _gone_reason(self) -> str:
        if self.kind == "rtu" and not os.path.exists(self.target):
            return f"port missing: {self.target}"
        return f"connection lost to {self.target}"

    async def read(self, unit: int, table: str, address: int, count: int) -> list[Any]:
        """Read `count` registers or bits. Raises ModbusFault."""
        fc = replies.READ_FC[table]
        method = getattr(self._client, _TABLE_READ[table])
        lengths = (8, replies.read_reply_len(fc, count))
        resp = await self._transact(unit, fc, count, lambda: method(address, count=count, device_id=unit), lengths)
        bits = fc in (1, 2)
        values = resp.bits[:count] if bits else resp.registers
        if len(values) != count:  # the guard checked the byte count; a second line
            raise self._reject(unit, FrameProblem("byte count", f"{len(values)} values, asked {count}"))
        return [bool(b) for b in values] if bits else list(values)

    async def write(self, unit: int, table: str, address: int, values: Sequence[Any], *, verify: bool = True) -> None:
        """Write coils or holding registers, then read them back. Raises ModbusFault
        (kind "verify" when the device kept other values than written)."""
        n = len(values)
        vals: list[bool] | list[int]
        if table == "coil":
            vals = [bool(v) for v in values]
            fc = 5 if n == 1 else 15
            call = (
                (lambda: self._client.write_coil(address, vals[0], device_id=unit))
                if n == 1
                else (lambda: self._client.write_coils(address, vals, device_id=unit))
            )
        elif table == "holding":
            vals = [int(v) for v in values]
            if any(not 0 <= v <= 0xFFFF for v in vals):
                raise ValueError(f"register values must be 0..65535, got {vals}")
            fc = 6 if n == 1 else 16
            call = (
                (lambda: self._client.write_register(address, vals[0], device_id=unit))
                if n == 1
                else (lambda: self._client.write_registers(address, vals, device_id=unit))
            )
        else:
            raise ValueError(f"table {table!r} is read-only")
        await self._transact(unit, fc, n, call, replies.write_lengths(fc, n))
        if verify:
            back = await self.read(unit, table, address, n)
            if list(back) != vals:
                raise ModbusFault("verify", f"write not verified: wrote {vals} at {table} {address}, read back {back}")

    def frame_snapshot(self, unit: int) -> dict[str, Any]:
        """Bad frames from one unit: total, by kind, the last one's reason and age."""
        return self.frames.snapshot(unit)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "reason": self.reason,
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.stats.items()},
            "bad_frames": self.frames.total,
            "bad_frames_by_unit": {unit: self.frames.snapshot(unit) for unit in sorted(self.frames.units)},
        }
