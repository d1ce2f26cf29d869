"""The process image: the latest Reading of every point, with its age and quality.

Control loops and `cabinet status` read from here. A good value older than its
point's `stale_after_s` reads as stale. Ages use the monotonic clock, so a wall
clock step (NTP, GPS) never makes values look fresh or old. Pure; `now` is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agent.model import Point, Quality, Reading


class ProcessImage:
    __slots__ = ("_latest", "_points", "updates")

    def __init__(self, points: Iterable[Point] = ()) -> None:
        self._points: dict[str, Point] = {p.name: p for p in points}
        self._latest: dict[str, tuple[Reading, float]] = {}
        self.updates = 0

    def add_point(self, point: Point) -> None:
        self._points[point.name] = point

    def points(self) -> list[Point]:
        return list(self._points.values())

    def update(self, reading: Reading, mono: float) -> None:
        """Store `reading` taken at monotonic time `mono`. Unknown points are refused."""
        if reading.point not in self._points:
            raise KeyError(f"unknown point {reading.point!r}")
        self._latest[reading.point] = (reading, mono)
        self.updates += 1

    def update_many(self, readings: Iterable[Reading], mono: float) -> None:
        latest = self._latest
        n = 0
        for r in readings:
            latest[r.point] = (r, mono)
            n += 1
        self.updates += n

    def get(self, name: str, mono: float) -> tuple[Reading | None, float | None]:
        """(reading as it stands now, age in seconds); quality turned stale if too old."""
        entry = self._latest.get(name)
        if entry is None:
            return None, None
        reading, at = entry
        age = max(0.0, mono - at)
        point = self._points.get(name)
        if point is not None and reading.quality is Quality.GOOD and age > point.stale_after_s:
            reading = reading._replace(quality=Quality.STALE, reason=f"no update for {age:.1f} s")
        return reading, age

    def value(self, name: str, mono: float, default: Any = None) -> Any:
        """The value if it is good, else `default`."""
        reading, _ = self.get(name, mono)
        return reading.value if reading is not None and reading.quality is Quality.GOOD else default

    def snapshot(self, mono: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, point in sorted(self._points.items()):
            reading, age = self.get(name, mono)
            if reading is None:
                out.append(
                    {
                        "name": name,
                        "value": None,
                        "unit": point.unit,
                        "quality": Quality.BAD.value,
                        "age_s": None,
                        "reason": "no value yet",
                        "t": None,
                    }
                )
            else:
                value = reading.value
                if isinstance(value, float) and not math.isfinite(value):
                    value = None  # not JSON; the reason says "not a number"
                out.append(
                    {
                        "name": name,
                        "value": value,
                        "unit": point.unit,
                        "quality": reading.quality.value,
                        "age_s": None if age is None else round(age, 3),
                        "reason": reading.reason,
                        "t": reading.t,
                    }
                )
        return out
