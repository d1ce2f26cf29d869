"""Digital I/O and the GPS as points.

DioPoller reads each configured contact (door, flood, UPS) through a DigitalIO
backend on its period, sets outputs (relays on pins) to their initial state,
writes them on request with a read-back check, and shows their read-back state.
GpsPoints runs the NMEA reader and turns its state into points once a second:
position (only from a valid fix), fix quality, satellites, whether GPS time is
valid, and the offset of GPS time against the agent's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from agent.clock import Clock
from agent.config.model import Gps, Input, Output
from agent.model import Point, Quality, Reading
from drivers import nmea
from drivers.gps import GpsReader

log = logging.getLogger("agent.inputs")

Sink = Callable[[list[Reading], float], Awaitable[None]]


class DioError(RuntimeError):
    pass


class DioPoller:
    OUTPUT_READBACK_S = 1.0
    COALESCE_S = 0.005  # items due this close together are read in one wake-up

    def __init__(
        self,
        inputs: Iterable[Input],
        outputs: Iterable[Output],
        dio: Any,
        clock: Clock,
        sink: Sink,
        *,
        pins: dict[str, str] | None = None,
        no_dio_reason: str | None = None,
    ) -> None:
        self.inputs = list(inputs)
        self.outputs = {o.name: o for o in outputs}
        self.dio = dio
        self.clock = clock
        self.sink = sink
        self.errors: dict[str, str] = {}
        pins = pins or {}
        every: list[Input | Output] = [*self.inputs, *self.outputs.values()]
        for item in every:
            try:
                if dio is None:
                    raise RuntimeError(no_dio_reason or "this board has no digital I/O backend")
                if isinstance(item, Output):
                    dio.setup_output(item.name, pins.get(item.pin, item.pin), initial=item.initial, invert=item.invert)
                else:
                    dio.setup_input(item.name, pins.get(item.pin, item.pin), pull=item.pull, invert=item.invert)
            except Exception as e:  # noqa: BLE001 - a bad pin must not stop the agent
                self.errors[item.name] = f"pin {item.pin}: {e}"
                log.error("%s: cannot set up pin %s: %s", item.name, item.pin, e)

    async def run(self) -> None:
        now = self.clock.monotonic()
        due: dict[str, float] = {i.name: now for i in self.inputs}
        period = {i.name: i.poll_s for i in self.inputs}
        items: dict[str, Input | Output] = {i.name: i for i in self.inputs}
        for o in self.outputs.values():
            due[o.name], period[o.name], items[o.name] = now, self.OUTPUT_READBACK_S, o
        if not due:
            return
        while True:
            now = self.clock.monotonic()
            # Read what is due and what would be within COALESCE_S: timers of different
            # periods drift apart by float rounding (0.2 s five times is not always 1 s)
            # and would each wake the loop a few nanoseconds apart.
            batch = [n for n, t in due.items() if t <= now + self.COALESCE_S]
            if batch:
                await self.sink([self._read(items[n]) for n in batch], now)
                for n in batch:
                    due[n] = max(due[n] + period[n], now)
            await self.clock.sleep_until(min(due.values()))

    def _read(self, item: Input | Output) -> Reading:
        t = self.clock.now()
        if item.name in self.errors:
            return Reading(item.point.name, t, None, Quality.BAD, self.errors[item.name])
        try:
            return Reading(item.point.name, t, bool(self.dio.read(item.name)), Quality.GOOD)
        except Exception as e:  # noqa: BLE001
            return Reading(item.point.name, t, None, Quality.BAD, f"read failed: {e}")

    async def write(self, name: str, value: bool) -> None:
        """Set an output and check it by reading it back. Raises KeyError, DioError."""
        out = self.outputs[name]
        if name in self.errors:
            raise DioError(f"output {name}: {self.errors[name]}")
        try:
            self.dio.write(name, bool(value))
            back = bool(self.dio.read(name))
        except Exception as e:
            raise DioError(f"output {name} (pin {out.pin}): {e}") from e
        reading = Reading(out.point.name, self.clock.now(), back, Quality.GOOD)
        await self.sink([reading], self.clock.monotonic())
        if back != bool(value):
            raise DioError(f"output {name} (pin {out.pin}): wrote {bool(value)}, reads back {back}")

    def snapshot(self) -> dict[str, Any]:
        out = {
            i.name: {"pin": i.pin, "kind": "input", "invert": i.invert, "error": self.errors.get(i.name)}
            for i in self.inputs
        }
        out.update(
            {
                o.name: {"pin": o.pin, "kind": "output", "invert": o.invert, "error": self.errors.get(o.name)}
                for o in self.outputs.values()
            }
        )
        return out


def gps_points(heartbeat_s: float = 3600.0) -> list[Point]:
    def p(key: str, unit: str = "", deadband: float = 0.0) -> Point:
        return Point(
            f"gps.{key}", unit=unit, source="gps", deadband=deadband, heartbeat_s=heartbeat_s, stale_after_s=10.0
        )

    return [
        p("latitude", "°", 0.0001),
        p("longitude", "°", 0.0001),
        p("altitude", "m", 5.0),
        p("fix_quality"),
        p("satellites"),
        p("hdop", "", 0.5),
        p("time_valid"),
        p("clock_offset_s", "s", 0.5),
    ]


class GpsPoints:
    def __init__(self, port: str, cfg: Gps, clock: Clock, sink: Sink) -> None:
        self.port = port
        self.clock = clock
        self.sink = sink
        self.points = gps_points()
        self.state = nmea.GpsState(stale_after_s=cfg.stale_s)
        self.last_error: str | None = None
        self.reader = GpsReader(
            port, cfg.baudrate, on_sentence=self._on_sentence, on_error=self._on_error, mono=clock.monotonic
        )

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
                await self.sink(self.readings(), self.clock.monotonic())
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
        out = [
            Reading("gps.fix_quality", t, fix.fix_quality, Quality.GOOD),
            Reading("gps.time_valid", t, fix.time_valid, Quality.GOOD),
        ]
        if fix.satellites is not None:
            out.append(Reading("gps.satellites", t, fix.satellites, Quality.GOOD))
        if fix.position_valid:
            out += [
                Reading("gps.latitude", t, fix.latitude, Quality.GOOD),
                Reading("gps.longitude", t, fix.longitude, Quality.GOOD),
                Reading("gps.hdop", t, fix.hdop, Quality.GOOD),
            ]
            if fix.altitude is not None:
                out.append(Reading("gps.altitude", t, fix.altitude, Quality.GOOD))
        elif fix.latitude is None:
            out += [
                Reading(f"gps.{k}", t, None, Quality.BAD, "no fix")
                for k in ("latitude", "longitude", "altitude", "hdop")
            ]
        if fix.time_valid and fix.time_utc is not None:
            out.append(Reading("gps.clock_offset_s", t, round(fix.time_utc.timestamp() - t, 3), Quality.GOOD))
        else:
            out.append(Reading("gps.clock_offset_s", t, None, Quality.BAD, "no valid GPS time"))
        return out

    def close(self) -> None:
        self.reader.stop()

    def snapshot(self, mono: float) -> dict[str, Any]:
        fix = self.state.snapshot(mono)
        return {
            "port": self.port,
            "open": self.reader.is_open,
            "lines_ok": self.reader.lines_ok,
            "lines_bad": self.reader.lines_bad,
            "reopens": self.reader.reopen_count,
            "last_error": self.last_error,
            "time_quality": fix.time_quality,
            "position_valid": fix.position_valid,
        }
