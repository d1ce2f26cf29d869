"""Digital inputs and the GPS as points.

InputPoller reads each configured contact (door, flood, UPS) through a DigitalIO
backend on its period. GpsPoints runs the NMEA reader and turns its state into
points once a second: position (only from a valid fix), fix quality, satellites,
whether GPS time is valid, and the offset of GPS time against the agent's clock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable

from agent.clock import Clock
from agent.config.model import Gps, Input
from agent.model import Point, Quality, Reading
from drivers import nmea
from drivers.gps import GpsReader

log = logging.getLogger("agent.inputs")

Sink = Callable[[list[Reading], float], None]


class InputPoller:
    def __init__(self, inputs: Iterable[Input], dio: Any, clock: Clock, sink: Sink, *,
                 pins: dict[str, str] | None = None, no_dio_reason: str | None = None) -> None:
        self.inputs = list(inputs)
        pins = pins or {}
        self.dio = dio
        self.clock = clock
        self.sink = sink
        self.errors: dict[str, str] = {}
        for inp in self.inputs:
            try:
                if dio is None:
                    raise RuntimeError(no_dio_reason or "this board has no digital I/O backend")
                dio.setup_input(inp.name, pins.get(inp.pin, inp.pin), pull=inp.pull, invert=inp.invert)
            except Exception as e:  # noqa: BLE001 - a bad pin must not stop the agent
                self.errors[inp.name] = f"pin {inp.pin}: {e}"
                log.error("input %s: cannot set up pin %s: %s", inp.name, inp.pin, e)

    async def run(self) -> None:
        due = {i.name: self.clock.monotonic() for i in self.inputs}
        while True:
            now = self.clock.monotonic()
            batch = [i for i in self.inputs if due[i.name] <= now]
            if batch:
                self.sink([self._read(i) for i in batch], now)
                for i in batch:
                    due[i.name] = max(due[i.name] + i.poll_s, now)
            await self.clock.sleep_until(min(due.values()))

    def _read(self, inp: Input) -> Reading:
        t = self.clock.now()
        if inp.name in self.errors:
            return Reading(inp.point.name, t, None, Quality.BAD, self.errors[inp.name])
        try:
            return Reading(inp.point.name, t, bool(self.dio.read(inp.name)), Quality.GOOD)
        except Exception as e:  # noqa: BLE001
            return Reading(inp.point.name, t, None, Quality.BAD, f"read failed: {e}")

    def snapshot(self) -> dict[str, Any]:
        return {i.name: {"pin": i.pin, "invert": i.invert, "error": self.errors.get(i.name)} for i in self.inputs}


def gps_points(heartbeat_s: float = 3600.0) -> list[Point]:
    def p(key: str, unit: str = "", deadband: float = 0.0) -> Point:
        return Point(f"gps.{key}", unit=unit, source="gps", deadband=deadband, heartbeat_s=heartbeat_s,
                     stale_after_s=10.0)

    return [p("latitude", "°", 0.0001), p("longitude", "°", 0.0001), p("altitude", "m", 5.0),
            p("fix_quality"), p("satellites"), p("hdop", "", 0.5), p("time_valid"), p("clock_offset_s", "s", 0.5)]


class GpsPoints:
    def __init__(self, port: str, cfg: Gps, clock: Clock, sink: Sink) -> None:
        self.port = port
        self.clock = clock
        self.sink = sink
        self.points = gps_points()
        self.state = nmea.GpsState(stale_after_s=cfg.stale_s)
        self.last_error: str | None = None
        self.reader = GpsReader(port, cfg.baudrate, on_sentence=self._on_sentence, on_error=self._on_error,
                                mono=clock.monotonic)

    def _on_sentence(self, sentence: nmea.Sentence) -> None:
        self.state.feed(sentence, self.clock.monotonic())

    def _on_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("gps: %s", message)
        self.last_error = message

    async def run(self) -> None:
        task = asyncio.create_task(self.reader.run(), name="gps-reader")
        try:
            while True:
                await self.clock.sleep(1.0)
                self.sink(self.readings(), self.clock.monotonic())
        finally:
            self.reader.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def readings(self) -> list[Reading]:
        fix = self.state.snapshot(self.clock.monotonic())
        t = self.clock.now()
        if not self.reader.is_open:
            reason = self.last_error or f"GPS port {self.port} not open"
            return [Reading(p.name, t, None, Quality.BAD, reason) for p in self.points]
        out = [Reading("gps.fix_quality", t, fix.fix_quality, Quality.GOOD),
               Reading("gps.time_valid", t, fix.time_valid, Quality.GOOD)]
        if fix.satellites is not None:
            out.append(Reading("gps.satellites", t, fix.satellites, Quality.GOOD))
        if fix.position_valid:
            out += [Reading("gps.latitude", t, fix.latitude, Quality.GOOD),
                    Reading("gps.longitude", t, fix.longitude, Quality.GOOD),
                    Reading("gps.hdop", t, fix.hdop, Quality.GOOD)]
            if fix.altitude is not None:
                out.append(Reading("gps.altitude", t, fix.altitude, Quality.GOOD))
        elif fix.latitude is None:
            out += [Reading(f"gps.{k}", t, None, Quality.BAD, "no fix") for k in ("latitude", "longitude", "altitude", "hdop")]
        if fix.time_valid and fix.time_utc is not None:
            out.append(Reading("gps.clock_offset_s", t, round(fix.time_utc.timestamp() - t, 3), Quality.GOOD))
        else:
            out.append(Reading("gps.clock_offset_s", t, None, Quality.BAD, "no valid GPS time"))
        return out

    def close(self) -> None:
        self.reader.stop()

    def snapshot(self, mono: float) -> dict[str, Any]:
        fix = self.state.snapshot(mono)
        return {"port": self.port, "open": self.reader.is_open, "lines_ok": self.reader.lines_ok,
                "lines_bad": self.reader.lines_bad, "reopens": self.reader.reopen_count,
                "last_error": self.last_error, "time_quality": fix.time_quality,
                "position_valid": fix.position_valid}
