"""The engine owns the framing of its pymodbus client: no reply can raise in asyncio.

pymodbus 3.16 parses replies inside its protocol's `data_received`
(`TransactionManager.callback_data` -> `framer.handleFrame` -> `DecodePDU.decode`). A
frame it cannot decode (a function code it does not know, a byte count beyond the
packet, an MBAP length shorter than the PDU) raises ModbusIOException right there:
asyncio logs "Fatal error: protocol.data_received() call failed" with a traceback
and drops the TCP connection; on a serial port the reader callback's traceback goes
to the loop's exception handler. Replies it does decode can still be the wrong one
(another function code, a short byte count).

`FrameGuard` swaps the client's framer (`client.ctx.framer`, the one object between
bytes and PDUs) for a subclass of the same framer that

* judges every frame addressed to the pending request (its unit id; on TCP its
  transaction id) against the reply that request asks for, before pymodbus decodes
  it (`replies.mbap_problem` on TCP, `replies.pdu_problem` on RTU after the CRC; on
  RTU also a CRC-valid frame with a function code pymodbus does not know);
* catches anything pymodbus raises while framing or decoding;
* on a bad frame: reports it with its `FrameProblem` (counted per unit, logged once
  per state change by `FrameHealth`), fails the pending request at once with
  `BadFrameError` (no waiting for the timeout), and discards every byte received
  until the next request. That is the resynchronisation: pymodbus clears its
  receive buffer when it sends a request and skips frames with another transaction
  id, so the connection stays up and the next reply frames cleanly.

Frames for another unit or transaction are left to pymodbus (it skips them; the
request then times out and `replies.classify_*` says why), and so are frames that
fail their CRC (RTU drops them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerBase, FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU

from drivers.modbus.health import FrameHealth
from drivers.modbus.replies import Expected, FrameProblem, crc_ok, expected_reply, mbap_problem, pdu_problem

log = logging.getLogger("drivers.modbus")


class BadFrameError(ModbusIOException):
    """The pending request got a bad frame: `problem` says what was wrong with it."""

    def __init__(self, problem: FrameProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Guarded(FramerBase):
    """handleFrame that never raises; the subclasses below add the checks to decode()."""

    def __init__(self, decoder: DecodePDU, guard: FrameGuard) -> None:
        super().__init__(decoder)
        self.guard = guard
        self.exp_devid = 0
        self.exp_tid = 0

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:
        guard = self.guard
        if guard.discarding:
            guard.discarded_bytes += len(data)
            return len(data), None
        self.exp_devid, self.exp_tid = exp_devid, exp_tid
        try:
            return super().handleFrame(data, exp_devid, exp_tid)
        except BadFrameError as e:
            problem = e.problem
        except Exception as e:  # noqa: BLE001 - whatever pymodbus raises on a frame must not reach asyncio
            problem = FrameProblem("undecodable", f"{len(data)} bytes: {e}")
        guard.bad(problem)
        guard.discarded_bytes += len(data)
        return len(data), None


class GuardedSocketFramer(_Guarded, FramerSocket):
    """Modbus TCP (MBAP) framing, judged before pymodbus decodes or waits for more."""

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        problem = mbap_problem(data, self.exp_tid, self.exp_devid, self.guard.expected)
        if problem is not None:
            raise BadFrameError(problem)
        return super().decode(data)


class GuardedRtuFramer(_Guarded, FramerRTU):
    """Modbus RTU framing; a frame whose CRC holds is judged before pymodbus decodes it.
    pymodbus hunts past a function code it does not know and waits for more: when all
    that came is one frame from the unit asked, with a good CRC and another function
    code, that is a bad frame now, not a timeout later."""

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        used, dev_id, tid, pdu = super().decode(data)
        exp = self.guard.expected
        if exp is None:
            return used, dev_id, tid, pdu
        if pdu and (not self.exp_devid or dev_id == self.exp_devid):
            problem = pdu_problem(pdu, exp, len(pdu))
            if problem is not None:
                raise BadFrameError(problem)
        elif (
            not pdu
            and len(data) >= 4
            and data[0] == self.exp_devid
            and data[1] not in (exp.fc, exp.fc | 0x80)
            and crc_ok(data)
        ):
            raise BadFrameError(FrameProblem("wrong function code", f"{data[1]}, asked {exp.fc}"))
        return used, dev_id, tid, pdu


_GUARDED: dict[type[FramerBase], type[_Guarded]] = {
    FramerSocket: GuardedSocketFramer,
    FramerRTU: GuardedRtuFramer,
}


class FrameGuard:
    """Installed on one pymodbus async client by its bus engine (see the module doc).

    The engine calls `expect()` before each request and `settle()` after it, `good()`
    when a unit's reply was a good frame, `reject()` for a problem it found itself in a
    decoded reply. `now` is the engine's monotonic clock."""

    def __init__(self, client: Any, bus: str, now: Callable[[], float], quiet_s: float = 60.0) -> None:
        ctx = client.ctx
        framer = ctx.framer
        cls = _GUARDED.get(type(framer))
        if cls is None:
            raise TypeError(f"no guarded framer for {type(framer).__name__}")
        ctx.framer = cls(framer.decoder, self)
        self._ctx = ctx
        self.bus = bus
        self._now = now
        self.quiet_s = quiet_s
        self.units: dict[int, FrameHealth] = {}
        self.expected: Expected | None = None
        self.unit = 0  # the unit last asked: bad frames are counted against it
        self.pending = False  # a request is waiting for its reply
        self.discarding = False
        self.total = 0
        self.discarded_bytes = 0

    def expect(self, unit: int, fc: int, count: int) -> None:
        """A request to `unit` with `fc` for `count` bits/registers is about to go out."""
        self.expected = expected_reply(fc, count)
        self.unit = unit
        self.pending = True
        self.discarding = False

    def settle(self) -> None:
        """The request is over (answered, failed or timed out)."""
        self.pending = False

    def bad(self, problem: FrameProblem) -> None:
        """A bad frame arrived (called from the framer, inside data_received)."""
        self.discarding = True
        try:
            self.reject(self.unit, problem)
        except Exception:
            log.exception("bus %s: recording a bad frame failed", self.bus)
        fut = self._ctx.response_future
        if self.pending and not fut.done():
            fut.set_exception(BadFrameError(problem))
            fut.exception()  # mark it retrieved: asyncio must not log it should the waiter be gone

    def reject(self, unit: int, problem: FrameProblem) -> None:
        """Count a bad frame from `unit`; log when the unit starts sending bad frames."""
        self.total += 1
        health = self.units.get(unit)
        if health is None:
            health = self.units[unit] = FrameHealth(self.quiet_s)
        if health.bad(self._now(), problem.kind, str(problem)):
            log.warning(
                "bus %s unit %d sent a bad frame (dropped): %s; more are counted in `cabinet status`, "
                "not logged, until none came for %g s",
                self.bus,
                unit,
                problem,
                self.quiet_s,
            )

    def good(self, unit: int) -> None:
        """`unit` sent a good frame; log when it is clean again."""
        health = self.units.get(unit)
        if health is not None and health.good(self._now()):
            log.info("bus %s unit %d: frames good again (%d bad frames dropped so far)", self.bus, unit, health.total)

    def snapshot(self, unit: int) -> dict[str, Any]:
        """The bad-frame counters of one unit (zeros when it never sent one)."""
        health = self.units.get(unit)
        if health is None:
            return FrameHealth(self.quiet_s).snapshot(0.0)
        return health.snapshot(self._now())
