"""Report-by-exception with deadband and heartbeat, pure.

A reading is reported (sent on toward the outbox) when it is the point's first,
its quality changed, its value moved by more than the point's deadband since the
last reported value (any change when the deadband is 0), or the heartbeat period
passed since the last report. Everything else is only kept in the process image.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.model import Point, Reading


class ReportFilter:
    __slots__ = ("_last", "_rules", "offered", "reported")

    def __init__(self, points: Iterable[Point] = ()) -> None:
        self._rules: dict[str, tuple[float, float]] = {}
        self._last: dict[str, tuple[Reading, float]] = {}
        self.offered = 0
        self.reported = 0
        for p in points:
            self.add_point(p)

    def add_point(self, point: Point) -> None:
        self._rules[point.name] = (point.deadband, point.heartbeat_s)

    def offer(self, reading: Reading, mono: float) -> bool:
        """True when `reading` must be reported; remembers it as the last reported."""
        self.offered += 1
        last = self._last.get(reading.point)
        if last is not None and not self._due(reading, last, mono):
            return False
        self._last[reading.point] = (reading, mono)
        self.reported += 1
        return True

    def _due(self, r: Reading, last: tuple[Reading, float], mono: float) -> bool:
        prev, at = last
        deadband, heartbeat = self._rules.get(r.point, (0.0, 300.0))
        if mono - at >= heartbeat or r.quality is not prev.quality or r.reason != prev.reason:
            return True
        v, pv = r.value, prev.value
        if v == pv:
            return False
        numeric = (int, float)
        if isinstance(v, numeric) and isinstance(pv, numeric) and not isinstance(v, bool) and not isinstance(pv, bool):
            return abs(v - pv) > deadband if deadband > 0 else True
        return True

    def select(self, readings: Iterable[Reading], mono: float) -> list[Reading]:
        return [r for r in readings if self.offer(r, mono)]
