"""Register stores: the memory of a simulated field device, served by pymodbus.

A `RegisterStore` holds the raw registers and bits of one device, built from its
`DeviceProfile`: the points and the device's configuration/identification registers
(`profile.config`: address, baud rate, firmware version ...), which the real devices
answer although the agent never polls them. For each table it serves the span from
the lowest to the highest point address (holes read as 0, like real meters) and one
span per group of configuration registers (registers at most CONFIG_GAP apart form
one group; a group that close to the points' span joins it). Addresses outside every
span and the profile's `limits.forbidden` ranges answer exception 2 (illegal data
address); a read longer than the device's `limits.max_registers` / `max_bits`, or
across two spans, answers exception 2 or 3 as real devices do (3 for the count).
Writes (coil and holding tables only) must fall on registers/bits of writable
points or configuration registers (`strict_writes=False`: anywhere in a span), else
exception 2; a write that leaves a configuration register outside its `valid` range
or enum answers exception 3 (illegal data value) and changes nothing.

The plant model and scenarios set and get values by key (`set`, `set_many`, `get`,
`values`, encoded with `drivers.modbus.codec`; `RegisterStore(profile, values)` sets
initial values; configuration registers start at their factory default, everything
else at 0 / False); `on_write(key, value)` reports what a master wrote (also by
broadcast), once per point or configuration register whose registers or bits
changed, with the decoded value; `set` never fires it.

`sim_device(unit, store)` wraps a store into a pymodbus `SimDevice` whose `action=`
callback serves every access from the store (reads copy into pymodbus' register list,
writes go into the store and fire `on_write`). pymodbus sees coil/discrete reads only
to 16-bit granularity, so the RTU line and TCP endpoint check every read exactly
(`check_request`) before it reaches pymodbus. `sim_device` also installs
`quiet_pymodbus_server()`: a filter on pymodbus' logger that drops its server modules'
records (a traceback per exception response / unknown id); the rest stays.

All calls are thread-safe; `on_write` runs outside the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boards.sim.rtu_frames import parse_request
from drivers.modbus import codec
from drivers.profiles.base import DeviceProfile, RegisterPoint, Table

if TYPE_CHECKING:  # pymodbus' server side is imported only when a device is served
    from pymodbus.simulator import SimData, SimDevice


class SimError(Exception):
    """A request the simulated device refuses; `code` is the Modbus exception code."""

    code = 4

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class IllegalAddress(SimError):
    code = 2  # ExcCodes.ILLEGAL_ADDRESS


class IllegalValue(SimError):
    code = 3  # ExcCodes.ILLEGAL_VALUE


CONFIG_GAP = 16  # configuration registers at most this far apart are served as one span


@dataclass
class _Span:
    table: Table
    start: int
    end: int  # exclusive
    data: list  # list[int] for registers, list[bool] for bits
    writable: bytearray  # 1 where a writable point covers the address


def _intervals(points: list[RegisterPoint], config: list[RegisterPoint]) -> list[tuple[int, int]]:
    """The served address ranges of one table: the points' span plus the config groups."""
    ranges = [(min(p.address for p in points), max(p.end for p in points))] if points else []
    ranges += [(p.address, p.end) for p in config]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + CONFIG_GAP:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class RegisterStore:
    """The registers and bits of one simulated device."""

    def __init__(
        self, profile: DeviceProfile, values: Mapping[str, Any] | None = None, *, strict_writes: bool = True
    ) -> None:
        self.profile = profile
        self.strict_writes = strict_writes
        self.on_write: Callable[[str, Any], None] | None = None
        self._lock = threading.RLock()
        config = {c.key: c.point for c in profile.config}
        # the device's own config register wins over a point at the same key (e.g.
        # xy-md02's read-only config points): writable as on the device
        self._points: dict[str, RegisterPoint] = {p.key: p for p in profile.points if p.key not in config}
        self._points.update(config)
        self._config = frozenset(config)
        self._spans: dict[Table, list[_Span]] = {}
        self._by_table: dict[Table, list[RegisterPoint]] = {t: [] for t in Table}
        for p in self._points.values():
            self._by_table[p.table].append(p)
        for table, pts in self._by_table.items():
            polled = [p for p in pts if p.key not in self._config]
            fill: Any = False if table.is_bits else 0
            spans = []
            for start, end in _intervals(polled, [p for p in pts if p.key in self._config]):
                span = _Span(table, start, end, [fill] * (end - start), bytearray(end - start))
                for p in pts:
                    if p.writable and start <= p.address < end:
                        span.writable[p.address - start : p.end - start] = b"\x01" * p.width
                spans.append(span)
            if spans:
                self._spans[table] = spans
        self._forbidden = [(Table(t), a, b) for t, a, b in profile.limits.forbidden]
        self.set_many({c.key: c.default for c in profile.config})
        if values:
            self.set_many(values)

    # ------------------------------------------------------------------ by key
    def set(self, key: str, value: Any) -> None:
        """Set a value (encoded into its registers); does not fire on_write."""
        p = self._point(key)
        with self._lock:
            span = self._span_of(p)
            off = p.address - span.start
            if p.bit is not None:
                mask = 1 << p.bit
                reg = span.data[off]
                span.data[off] = (reg | mask) if value else (reg & ~mask & 0xFFFF)
                return
            regs = codec.encode(p, value)
            span.data[off : off + p.width] = [bool(r) for r in regs] if p.table.is_bits else regs

    def set_many(self, values: Mapping[str, Any]) -> None:
        with self._lock:
            for key, value in values.items():
                self.set(key, value)

    def get(self, key: str) -> Any:
        """A value, decoded from its registers (scaled, enum label, bit)."""
        p = self._point(key)
        with self._lock:
            span = self._span_of(p)
            off = p.address - span.start
            return codec.decode(p, span.data[off : off + p.width])

    def values(self) -> dict[str, Any]:
        """All values by key: the points and the configuration registers."""
        with self._lock:
            return {k: self.get(k) for k in self._points}

    def keys(self) -> frozenset[str]:
        """Every key the store serves (points and configuration registers)."""
        return frozenset(self._points)

    def span(self, table: Table) -> tuple[int, int] | None:
        """(first address, end exclusive) of everything served in `table`, or None."""
        spans = self._spans.get(Table(table))
        return (spans[0].start, spans[-1].end) if spans else None

    def spans(self, table: Table) -> list[tuple[int, int]]:
        """Every served (start, end exclusive) range of `table`, in address order."""
        return [(s.start, s.end) for s in self._spans.get(Table(table), [])]

    # ------------------------------------------------------------------ wire side
    def check(self, table: Table, address: int, count: int, *, write: bool = False) -> None:
        """Raise IllegalAddress / IllegalValue if the device refuses this access."""
        table = Table(table)
        if write:
            if not table.writable:
                raise IllegalAddress(f"{table.value} table is read-only")
            if count < 1:
                raise IllegalValue(f"write of {count} values")
        elif not 1 <= count <= self.profile.limits.max_count(table):
            raise IllegalValue(
                f"read of {count} {table.value}s exceeds the device limit {self.profile.limits.max_count(table)}"
            )
        end = address + count
        span = self._find(table, address, end)
        if span is None:
            served = ", ".join(f"{a}..{b - 1}" for a, b in self.spans(table)) or "none"
            raise IllegalAddress(f"{table.value} {address}..{end - 1} outside the served spans ({served})")
        for t, a, b in self._forbidden:
            if t is table and address < b and a < end:
                raise IllegalAddress(f"{table.value} {address}..{end - 1} touches forbidden {a}..{b - 1}")
        if write and self.strict_writes:
            w = span.writable[address - span.start : end - span.start]
            if w.count(0):
                bad = address + w.index(0)
                raise IllegalAddress(f"{table.value} {bad} is not a writable point")

    def read(self, table: Table, address: int, count: int) -> list[int] | list[bool]:
        table = Table(table)
        with self._lock:
            self.check(table, address, count)
            span = self._find(table, address, address + count)
            assert span is not None  # check() passed
            return list(span.data[address - span.start : address - span.start + count])

    def write(self, table: Table, address: int, values: Sequence[int] | Sequence[bool]) -> None:
        table = Table(table)
        values = [bool(v) for v in values] if table.is_bits else [int(v) for v in values]
        if not table.is_bits and any(not 0 <= v <= 0xFFFF for v in values):
            raise IllegalValue("register value out of 0..65535")
        with self._lock:
            self.check(table, address, len(values), write=True)
            lo, hi = address, address + len(values)
            span = self._find(table, lo, hi)
            assert span is not None  # check() passed
            touched = [p for p in self._by_table[table] if p.address < hi and lo < p.end]
            before = [self._raw(span, p) for p in touched]
            saved = span.data[lo - span.start : hi - span.start]
            span.data[lo - span.start : hi - span.start] = values
            changed = []
            for p, old in zip(touched, before, strict=True):
                new = self._raw(span, p)
                if p.bit is not None:
                    if (old[0] >> p.bit) & 1 == (new[0] >> p.bit) & 1:
                        continue
                elif new == old:
                    continue
                value = codec.decode(p, new)
                if p.key in self._config and not _acceptable(p, value):
                    span.data[lo - span.start : hi - span.start] = saved
                    raise IllegalValue(f"{p.key}: {value!r} is not a value the device takes")
                changed.append((p.key, value))
        cb = self.on_write
        if cb is not None:
            for key, value in changed:
                cb(key, value)

    def words(self, table: Table, first_word: int, nwords: int) -> list[int]:
        """Bits of a bit table packed 16 per word (bit 0 = lowest address), as pymodbus
        keeps them; bits outside the spans read 0. For the SimDevice callback."""
        spans = self._spans.get(Table(table), [])
        out = []
        with self._lock:
            for w in range(first_word, first_word + nwords):
                reg = 0
                for i in range(16):
                    a = w * 16 + i
                    for span in spans:
                        if span.start <= a < span.end and span.data[a - span.start]:
                            reg |= 1 << i
                out.append(reg)
        return out

    # ------------------------------------------------------------------ helpers
    def _point(self, key: str) -> RegisterPoint:
        try:
            return self._points[key]
        except KeyError:
            raise KeyError(f"{self.profile.name}: no point {key!r}") from None

    def _find(self, table: Table, start: int, end: int) -> _Span | None:
        for span in self._spans.get(table, []):
            if span.start <= start and end <= span.end:
                return span
        return None

    def _span_of(self, p: RegisterPoint) -> _Span:
        span = self._find(p.table, p.address, p.end)
        assert span is not None  # every point lies in a span
        return span

    @staticmethod
    def _raw(span: _Span, p: RegisterPoint) -> list:
        off = p.address - span.start
        return span.data[off : off + p.width]


def _acceptable(p: RegisterPoint, value: Any) -> bool:
    """Whether a configuration register may hold `value` (its enum, its valid range)."""
    if p.enum is not None:
        return isinstance(value, str)
    return codec.check(p, value) is None


_TABLE_OF = {"coil": Table.COIL, "discrete": Table.DISCRETE, "holding": Table.HOLDING, "input": Table.INPUT}


def check_request(store: RegisterStore, pdu: bytes | bytearray) -> int | None:
    """The exception code the device answers to this request PDU without reaching
    pymodbus (malformed quantity → 3; refused address or count → 2/3), or None to
    let the request through. Exact also for coil/discrete reads."""
    req = parse_request(pdu)
    if req is None:
        return None
    if isinstance(req, int):
        return req
    try:
        store.check(_TABLE_OF[req.table], req.address, req.count, write=req.write)
    except SimError as exc:
        return exc.code
    return None


# ---------------------------------------------------------------------- pymodbus
class _ServerNoise(logging.Filter):
    """Drops pymodbus' own records from its server modules (the error log and frame
    dump of exception responses and unknown device ids); client-side records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/pymodbus/server/" not in record.pathname.replace("\\", "/")


_noise_filter = _ServerNoise()


def quiet_pymodbus_server() -> None:
    """Install that filter on pymodbus' logger (idempotent; the root logger and the
    logger's level stay as they are)."""
    logger = logging.getLogger("pymodbus.logging")
    if _noise_filter not in logger.filters:
        logger.addFilter(_noise_filter)


_FC_TABLE = {
    1: Table.COIL,
    5: Table.COIL,
    15: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    22: Table.HOLDING,
    23: Table.HOLDING,
    4: Table.INPUT,
}


def _simdata(store: RegisterStore, table: Table) -> list[SimData]:
    from pymodbus.simulator import DataType, SimData

    spans = store.spans(table)
    kind = DataType.BITS if table.is_bits else DataType.REGISTERS
    fill: bool | int = False if table.is_bits else 0
    if not spans:
        return [SimData(0, count=16 if table.is_bits else 1, values=fill, datatype=kind)]
    return [SimData(start, count=end - start, values=fill, datatype=kind) for start, end in spans]


def sim_device(unit: int, store: RegisterStore) -> SimDevice:
    """A pymodbus SimDevice for `unit` that serves `store` through its action= callback."""
    from pymodbus.constants import ExcCodes
    from pymodbus.simulator import SimDevice

    quiet_pymodbus_server()

    async def action(
        fc: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> Any:
        table = _FC_TABLE.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            if set_values is not None:
                store.write(table, address, list(set_values))
                return None
            if table.is_bits:
                # pymodbus passes the bit address and the number of 16-bit words.
                store.check(table, address, 1)
                first = address // 16
                registers[first - start_address : first - start_address + count] = store.words(table, first, count)
            else:
                registers[address - start_address : address - start_address + count] = store.read(table, address, count)
        except SimError as exc:
            try:
                return ExcCodes(exc.code)
            except ValueError:
                return ExcCodes.DEVICE_FAILURE
        return None

    simdata = (  # pymodbus' non-shared order
        _simdata(store, Table.COIL),
        _simdata(store, Table.DISCRETE),
        _simdata(store, Table.HOLDING),
        _simdata(store, Table.INPUT),
    )
    return SimDevice(id=unit, simdata=simdata, action=action)
