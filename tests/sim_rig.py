"""A rig for accelerated integration tests: the example cabinet's agent (in process)
against the simulated cabinet, on a ScaledClock starting at a chosen UTC time.

The RS-485 line is emulated in real time, so the rig runs it at 115200 Bd and
stretches every poll period by `poll_factor`: at `speed` x the line still keeps up."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.app import App, Endpoints
from agent.runtime.entry import board_infos
from boards.sim.cabinet import SimCabinet
from drivers.dio import FilePinsDIO


def rig_config(poll_factor: float = 5.0, extra: str = "") -> cfg.Config:
    text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", "baudrate = 115200", 1)
    text = re.sub(r"(?m)^poll_s = ([0-9.]+)", lambda m: f"poll_s = {float(m.group(1)) * poll_factor}", text)
    return cfg.loads(text + extra, str(cfg.EXAMPLE), board_infos())


class Rig:
    def __init__(self, config: cfg.Config, start_utc: str, speed: float, data_dir: Path) -> None:
        self.config = config
        self.clock = ScaledClock(speed, start=dt.datetime.fromisoformat(start_utc).timestamp())
        self.dir = data_dir
        self.sim = SimCabinet(config, data_dir / "sim", self.clock)
        self.app: App | None = None
        self.outbox_readings: list[tuple[int, Any]] = []

    async def start(self) -> Rig:
        ep = await self.sim.start()
        self.app = App(
            self.config,
            data_dir=self.dir / "agent",
            clock=self.clock,
            endpoints=Endpoints(
                buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep["gps"], dio=FilePinsDIO(ep["pins"])
            ),
        )
        await self.app.start()
        return self

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
        await self.sim.stop()

    def wall(self) -> float:
        return self.clock.now()

    def at(self, iso: str) -> float:
        return dt.datetime.fromisoformat(iso).timestamp()

    async def until(self, wall: float, every: float = 0.05, watch=None) -> None:
        """Let simulated time run to `wall`, calling `watch()` every `every` real seconds."""
        while self.clock.now() < wall:
            if watch is not None:
                watch()
            await asyncio.sleep(every)

    def segment(self, name: str) -> dict[str, Any]:
        assert self.app is not None, "Rig.segment: start() first"
        return self.app.controls.status()["lighting"]["segments"][name]

    def alarm_ids(self) -> set[str]:
        assert self.app is not None, "Rig.alarm_ids: start() first"
        return {a["id"] for a in self.app.controls.alarms.active()}

    def stored(self, prefix: str) -> list[tuple[str, dict]]:
        """Outbox rows (committed) whose point starts with `prefix`: (point, decoded JSON value)."""
        assert self.app is not None, "Rig.stored: start() first"
        out = []
        for _, r in self.app.outbox.peek(100_000):
            if r.point.startswith(prefix):
                out.append((r.point, json.loads(r.value) if isinstance(r.value, str) else r.value))
        return out
