"""Fault injection for the simulated field devices, per unit id.

A `FaultTable` is shared by the transports of the simulated cabinet (an `RtuLine`, a
`TcpEndpoint`) and by scenarios, which flip faults while the servers run. The
transports look the fault up for every request addressed to a known unit id.

What each kind does (on an RTU line; the TCP endpoint does the same on MBAP frames):

========== =================================================================
SILENT     no reply; the request does not reach the device (a dead device)
GARBAGE    random bytes of the length the genuine reply would have
CRC        the genuine reply with a broken CRC (TCP: a wrong MBAP length)
WRONG_UNIT the genuine reply under another unit id, with a valid CRC
SHORT      the genuine reply cut off (the first half of its bytes)
SLOW       the genuine reply, `delay_ms` late
EXCEPTION  an exception reply (function code | 0x80, `exception_code`); the
           request does not reach the device
========== =================================================================

`delay_ms` delays the reply for every kind that sends something (SLOW is the kind
that does nothing else). `every=n` applies the fault to every n-th request to that
unit (1 = all); the transports count per unit and restart the count when the fault
for the unit is set again. For GARBAGE, CRC, WRONG_UNIT, SHORT and SLOW the request
does reach the device (a write takes effect); only the reply is spoiled.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass


class FaultKind(str, enum.Enum):
    SILENT = "silent"
    GARBAGE = "garbage"
    CRC = "crc"
    WRONG_UNIT = "wrong_unit"
    SHORT = "short"
    SLOW = "slow"
    EXCEPTION = "exception"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    exception_code: int = 4
    delay_ms: float = 0.0
    every: int = 1  # apply to every n-th request (1 = all)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if not 1 <= int(self.exception_code) <= 255:
            raise ValueError(f"fault exception_code {self.exception_code} not in 1..255")
        if self.delay_ms < 0:
            raise ValueError(f"fault delay_ms {self.delay_ms} must be >= 0")
        if int(self.every) < 1:
            raise ValueError(f"fault every={self.every} must be >= 1")


class FaultTable:
    """Faults per unit id; mutable at run time, safe to change from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[int, Fault] = {}
        self._generation: dict[int, int] = {}

    def set(self, unit: int, fault: Fault) -> None:
        if not 0 <= unit <= 255:
            raise ValueError(f"unit id {unit} not in 0..255")
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {fault!r}")
        with self._lock:
            self._faults[unit] = fault
            self._generation[unit] = self._generation.get(unit, 0) + 1

    def clear(self, unit: int | None = None) -> None:
        """Clear the fault of `unit`, or all faults."""
        with self._lock:
            if unit is None:
                for u in self._faults:
                    self._generation[u] = self._generation.get(u, 0) + 1
                self._faults.clear()
            elif self._faults.pop(unit, None) is not None:
                self._generation[unit] = self._generation.get(unit, 0) + 1

    def get(self, unit: int) -> Fault | None:
        return self._faults.get(unit)

    def snapshot(self) -> dict[int, Fault]:
        with self._lock:
            return dict(self._faults)

    def generation(self, unit: int) -> int:
        """Changes whenever the fault of `unit` is set or cleared (restarts `every`)."""
        return self._generation.get(unit, 0)


class FaultCounter:
    """Per-transport `every` bookkeeping: `due(unit)` returns the fault to apply to
    this request to `unit`, or None."""

    def __init__(self, table: FaultTable | None) -> None:
        self.table = table
        self._count: dict[int, tuple[int, int]] = {}  # unit -> (generation, requests seen)

    def due(self, unit: int) -> Fault | None:
        if self.table is None:
            return None
        fault = self.table.get(unit)
        if fault is None:
            return None
        gen = self.table.generation(unit)
        seen_gen, n = self._count.get(unit, (gen, 0))
        if seen_gen != gen:
            n = 0
        n += 1
        self._count[unit] = (gen, n)
        return fault if n % fault.every == 0 else None
