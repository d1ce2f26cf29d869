"""Output writes for the control loops: a point name -> the driver path that sets it.

Owns what was commanded per output point and the outcome of the last write. Writes are
verified by read-back (the bus engine reads Modbus coils/registers back, the DIO poller
reads pins back) and the verified value goes into the process image at once.
`apply(desired)` writes what changed, re-asserts an output when a good reading shows
the device holding another value (after an outage, or switched by hand), and retries
a failed write at most every `retry_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.clock import Clock
from agent.config import Config
from agent.field.image import ProcessImage
from agent.field.inputs import DioPoller
from agent.field.poller import BusPoller
from agent.model import Quality, Reading

log = logging.getLogger(__name__)


@dataclass
class WriteState:
    desired: Any = None
    ok: bool | None = None  # None: never written
    reason: str | None = None
    at: float = float("-inf")  # monotonic time of the last attempt
    writes: int = 0
    failures: int = 0


class Actuator:
    def __init__(
        self,
        config: Config,
        pollers: Mapping[str, BusPoller],
        dio: DioPoller | None,
        image: ProcessImage,
        clock: Clock,
        ingest: Callable[[list[Reading], float], Awaitable[None]],
        retry_s: float = 5.0,
    ) -> None:
        self.image = image
        self.clock = clock
        self.ingest = ingest
        self.retry_s = retry_s
        self._routes: dict[str, tuple[Any, ...]] = {}
        for dev in config.devices.values():
            for key, p in dev.points.items():
                if p.writable:
                    self._routes[p.name] = ("modbus", pollers[dev.bus], dev.name, key)
        for out in config.outputs.values():
            if dio is not None:
                self._routes[out.point.name] = ("dio", dio, out.name)
        self.state: dict[str, WriteState] = {}

    def writable(self, point: str) -> bool:
        return point in self._routes

    async def write(self, point: str, value: Any) -> str | None:
        """Write now; None when verified, else the reason it failed."""
        route = self._routes.get(point)
        if route is None:
            return f"{point} is not a writable point"
        st = self.state.setdefault(point, WriteState())
        st.desired, st.at, st.writes = value, self.clock.monotonic(), st.writes + 1
        try:
            if route[0] == "dio":
                await route[1].write(route[2], bool(value))  # feeds the read-back value to the image
            else:
                await route[1].write(route[2], route[3], value)
                await self.ingest([Reading(point, self.clock.now(), value, Quality.GOOD)], self.clock.monotonic())
        except Exception as e:  # noqa: BLE001 - any driver failure is this output's failure
            reason = f"{type(e).__name__}: {e}" if not str(e).startswith(point) else str(e)
            if st.ok is not False or st.reason != reason:
                log.warning("output %s: write %r failed: %s", point, value, reason)
            st.ok, st.reason, st.failures = False, reason, st.failures + 1
            return reason
        if st.ok is False:
            log.info("output %s: write %r verified again", point, value)
        st.ok, st.reason = True, None
        return None

    def differs(self, point: str, value: Any) -> bool:
        """Does the process image say, with a good reading, that the device holds another value?"""
        reading, _ = self.image.get(point, self.clock.monotonic())
        return reading is not None and reading.quality is Quality.GOOD and reading.value != value

    async def apply(self, desired: Mapping[str, Any]) -> dict[str, str]:
        """Bring every output to its desired value; returns {point: reason} of failed writes.

        Writes when the desired value changed; again after `retry_s` when the last write
        failed, or when a good reading shows the device holding something else (it was
        switched by hand, or came back from an outage in its default state). A stale or
        bad reading after a verified write is no reason to write: the device is away."""
        failed: dict[str, str] = {}
        now = self.clock.monotonic()
        for point, value in desired.items():
            if value is None or not self.writable(point):
                continue
            st = self.state.get(point)
            if st is not None and st.desired == value:
                if st.ok and not self.differs(point, value):
                    continue
                if now - st.at < self.retry_s:
                    if st.ok is False:
                        failed[point] = st.reason or "write failed"
                    continue
            reason = await self.write(point, value)
            if reason is not None:
                failed[point] = reason
        return failed

    def snapshot(self) -> dict[str, Any]:
        return {
            p: {"desired": s.desired, "ok": s.ok, "reason": s.reason, "writes": s.writes, "failures": s.failures}
            for p, s in sorted(self.state.items())
        }
