"""The agent's own telemetry: outbox depth, bytes, oldest unsent age, evictions,
uplink state, publish rate, reconnects and acks, as points `agent.*` that travel in
the same batches as the field readings (so the cloud sees a cabinet struggling)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent.model import Point, Quality, Reading

Sink = Callable[[list[Reading], float], Awaitable[None]]


def _p(key: str, unit: str = "", deadband: float = 0.0) -> Point:
    return Point(f"agent.{key}", unit=unit, source="agent", deadband=deadband, heartbeat_s=900.0, stale_after_s=60.0)


POINTS = [
    _p("outbox_rows", "", 500),
    _p("outbox_bytes", "B", 256 * 1024),
    _p("outbox_oldest_age_s", "s", 60),
    _p("outbox_evicted_rows"),
    _p("outbox_batches_unacked", "", 10),
    _p("uplink_connected"),
    _p("uplink_reconnects"),
    _p("uplink_batches_sent", "", 100),
    _p("uplink_batches_acked", "", 100),
    _p("uplink_acks_rejected"),
    _p("uplink_publish_per_min", "1/min", 5),
]


class SelfTelemetry:
    def __init__(self, outbox: Any, uplink: Any, clock: Any, sink: Sink, period_s: float = 10.0) -> None:
        self.outbox = outbox
        self.uplink = uplink
        self.clock = clock
        self.sink = sink
        self.period_s = period_s
        self._last_sent: tuple[float, int] | None = None

    def readings(self) -> list[Reading]:
        t = self.clock.now()
        mono = self.clock.monotonic()
        st = self.outbox.stats()
        oldest = st.get("oldest_unsent_t")
        values: dict[str, Any] = {
            "outbox_rows": st["rows_pending"] + st["rows_sealed"],
            "outbox_bytes": st["bytes"],
            "outbox_oldest_age_s": round(max(0.0, t - oldest), 1) if oldest is not None else 0.0,
            "outbox_evicted_rows": sum(st["evicted_rows"].values()),
            "outbox_batches_unacked": st["batches_unacked"],
        }
        if self.uplink is not None:
            u = self.uplink.stats
            sent = u["batches_sent"]
            rate = 0.0
            if self._last_sent is not None and mono > self._last_sent[0]:
                rate = (sent - self._last_sent[1]) * 60.0 / (mono - self._last_sent[0])
            self._last_sent = (mono, sent)
            values.update(
                {
                    "uplink_connected": self.uplink.state == "connected",
                    "uplink_reconnects": u["reconnects"],
                    "uplink_batches_sent": sent,
                    "uplink_batches_acked": u["batches_acked"],
                    "uplink_acks_rejected": u["acks_rejected"],
                    "uplink_publish_per_min": round(rate, 1),
                }
            )
        return [Reading(f"agent.{k}", t, v, Quality.GOOD) for k, v in values.items()]

    def points(self) -> list[Point]:
        return [p for p in POINTS if self.uplink is not None or not p.name.startswith("agent.uplink")]

    async def run(self) -> None:
        while True:
            await self.sink(self.readings(), self.clock.monotonic())
            await self.clock.sleep(self.period_s)
