"""The app: wires config, clock, bus engines, pollers, GPS, digital I/O, the
process image, report-by-exception, the outbox, the uplink, self-telemetry and the
local status API, and runs them.

It never looks at boards or key files: the caller (the `cabinet run` command)
resolves where each bus, the GPS and the pins are (Endpoints) and loads the
cabinet's keys (UplinkWiring). Readings flow driver -> process image -> report
filter -> outbox (durable) -> uplink (signed batches) -> deleted on the ingest's ack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import agent
from agent.aio import cancel_all
from agent.clock import Clock, WallClock, clock_trusted
from agent.config import BoardInfo, Config
from agent.config.model import RtuBus, TcpBus
from agent.config.ota import OtaSettings
from agent.field.actuator import Actuator
from agent.field.image import ProcessImage
from agent.field.inputs import DioPoller, GpsPoints, gps_points
from agent.field.poller import BusPoller
from agent.field.report import ReportFilter
from agent.model import Point, Priority, Quality, Reading
from agent.outbox.writer import Outbox
from agent.remote import config_apply, ota_service
from agent.remote.builtins import Builtins
from agent.remote.config_apply import ConfigManager
from agent.remote.downlink import Downlink
from agent.remote.ota_service import OtaService, ota_root
from agent.runtime.control_loop import Controls, segment_points
from agent.runtime.status_api import SOCKET_NAME, StatusServer
from agent.runtime.watchdog import Watchdog
from agent.uplink.catalogue_source import from_config
from agent.uplink.selftel import POINTS as SELF_POINTS
from agent.uplink.selftel import SelfTelemetry
from agent.uplink.setup import UplinkWiring
from agent.wire.commands import Trust
from drivers.modbus.engine import BusEngine

if TYPE_CHECKING:
    from agent.uplink.client import Uplink

log = logging.getLogger("agent.app")


@dataclass
class Endpoints:
    """Where things are on this machine. `buses`: name -> ("rtu", path) or
    ("tcp", host, port); missing names keep the config's own port/host."""

    buses: dict[str, tuple] = field(default_factory=dict)
    gps_port: str | None = None
    dio: Any = None  # a drivers.dio.DigitalIO, or None when the cabinet has no inputs
    pins: dict[str, str] = field(default_factory=dict)  # board pin name -> backend pin name
    dio_error: str | None = None  # why there is no DigitalIO backend


def agent_points(config: Config, *, uplink: bool) -> list[Point]:
    """Every point the agent keeps for `config`, as App builds its process image: the devices',
    inputs' and outputs' (`config.points()`), the GPS's, the agent's own telemetry (`agent.*`;
    the uplink's only with an uplink) and the lighting segments'. `cabinet config check`
    counts these, so its count is the running agent's."""
    points = list(config.points())
    if config.gps:
        points += gps_points()
    points += [p for p in SELF_POINTS if uplink or not p.name.startswith("agent.uplink")]
    if config.lighting is not None:
        points += segment_points(config.lighting.segments)
    return points


class App:
    def __init__(
        self,
        config: Config,
        *,
        data_dir: Path,
        clock: Clock,
        endpoints: Endpoints | None = None,
        sinks: list[Callable[[list[Reading]], Awaitable[None]]] | None = None,
        uplink: UplinkWiring | None = None,
        selftel_period_s: float = 10.0,
        ota_wall: Clock | None = None,
        boards: dict[str, BoardInfo] | None = None,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.endpoints = endpoints or Endpoints()
        self.sinks = list(sinks or [])
        self.started_mono = clock.monotonic()
        self.image = ProcessImage(config.points())
        self.reporter = ReportFilter(config.points())
        self._field()
        self.outbox = self._outbox()
        self.uplink: Uplink | None = self._uplink(uplink) if uplink is not None else None
        self._stop: asyncio.Event | None = None
        self.selftel = SelfTelemetry(self.outbox, self.uplink, clock, self.ingest, selftel_period_s)
        self._add_points(self.selftel.points())
        self.sinks.insert(0, self._to_outbox)
        self.actuator = Actuator(config, self.pollers, self.dio, self.image, clock, self.ingest)
        self.controls = Controls(
            config,
            image=self.image,
            actuator=self.actuator,
            clock=clock,
            put=self.put,
            data_dir=self.data_dir,
            ingest=self.ingest,
        )
        self._add_points(self.controls.points)
        if self.uplink is not None:  # the point catalogue: every point the image knows (docs/batch-format.md §8)
            self.uplink.set_catalogue(from_config(config, self.image.points()), self.data_dir / "catalogues")
        self.config_manager = ConfigManager(self, boards)  # remote configuration: trial marker and health gate
        # over-the-air updates under the launcher; TUF checks expiry against the system clock,
        # so the OTA clock policy looks at that clock even on a simulated (scaled) cabinet
        self.ota = OtaService(self, config.ota or OtaSettings(), root=ota_root(), wall=ota_wall or WallClock())
        self.downlink = self._downlink(uplink) if uplink is not None else None
        self.status_server = StatusServer(
            self.data_dir / SOCKET_NAME, self.status, self.controls.actions() if self.controls.active else None
        )
        self._tasks: list[asyncio.Task] = []
        self.restarts: dict[str, int] = {}

    # ------------------------------------------------------------------ building the parts
    def _add_points(self, points: Iterable[Point]) -> None:
        """Points that come from the agent itself (GPS, self-telemetry, control decisions)."""
        for p in points:
            self.image.add_point(p)
            self.reporter.add_point(p)

    def _field(self) -> None:
        """A bus engine and a poller per bus, digital I/O and the GPS: every reading enters `ingest`."""
        config, clock = self.config, self.clock
        self.engines: dict[str, BusEngine] = {}
        self.pollers: dict[str, BusPoller] = {}
        for name, bus in config.buses.items():
            engine = self._engine(name, bus)
            self.engines[name] = engine
            devices = [d for d in config.devices.values() if d.bus == name]
            self.pollers[name] = BusPoller(engine, devices, clock, self.ingest, bus.backoff)
        self.dio = None
        if config.inputs or config.outputs:
            self.dio = DioPoller(
                config.inputs.values(),
                config.outputs.values(),
                self.endpoints.dio,
                clock,
                self.ingest,
                pins=self.endpoints.pins,
                no_dio_reason=self.endpoints.dio_error,
            )
        self.gps = None
        if config.gps:
            self.gps = GpsPoints(self.endpoints.gps_port or config.gps.port, config.gps, clock, self.ingest)
            self._add_points(self.gps.points)

    def _outbox(self) -> Outbox:
        ob = self.config.outbox
        return Outbox(
            self.data_dir / ob.path,
            clock=self.clock,
            max_bytes=int(ob.max_mb * 2**20),
            queue_max=ob.queue_max,
            commit_interval_s=ob.commit_interval_ms / 1000,
        )

    def _uplink(self, wiring: UplinkWiring) -> Uplink:
        from agent.uplink.client import Uplink  # deferred: heavy (aiomqtt, paho), only with an uplink

        return Uplink(
            wiring.settings,
            cabinet_id=self.config.cabinet_id,
            outbox=self.outbox,
            signing_key=wiring.signing_key,
            ingest_keys=wiring.ingest_keys,
            clock=self.clock,
            birth=self.birth,
            tls=wiring.tls,
        )

    def _downlink(self, wiring: UplinkWiring) -> Downlink:
        """Signed commands arrive over the uplink's session: the built-in commands, remote
        configuration and OTA offers, each handler given only what it needs."""
        assert self.uplink is not None  # built with the uplink
        dl = Downlink(
            cabinet=self.config.cabinet_id,
            prefix=wiring.settings.topic_prefix,
            tags=self.config.tags,
            trust=self.config.trust or Trust(),
            signing_key=wiring.signing_key,
            clock=self.clock,
            clock_trusted=lambda: clock_trusted(self.clock),
            data_dir=self.data_dir,
        )
        Builtins(dl, self).install()
        config_apply.install(dl, self.config_manager)
        ota_service.install(dl, self.ota)
        self.uplink.downlink = dl
        return dl

    def _engine(self, name: str, bus: RtuBus | TcpBus) -> BusEngine:
        where = self.endpoints.buses.get(name)
        if isinstance(bus, RtuBus):
            port = where[1] if where else bus.port
            return BusEngine.rtu(
                name,
                port,
                baudrate=bus.baudrate,
                parity=bus.parity,
                stopbits=bus.stopbits,
                bytesize=bus.bytesize,
                timeout_ms=bus.timeout_ms,
                retries=bus.retries,
                inter_frame_ms=bus.inter_frame_ms,
                rs485=bus.rs485,
            )
        host, port = (where[1], where[2]) if where else (bus.host, bus.port)
        return BusEngine.tcp(
            name, host, port, timeout_ms=bus.timeout_ms, retries=bus.retries, inter_frame_ms=bus.inter_frame_ms
        )

    def birth(self) -> dict[str, Any]:
        """What the retained "online" state message says about this agent."""
        cfg = self.config_manager.snapshot()
        cfg.pop("last_commit", None)
        if cfg["trial"]:
            cfg["trial"].pop("checks", None)
        return {
            "boot": self.outbox.boot_epoch,
            "version": agent.__version__,
            "config_sha256": self.config.sha256,
            "config": cfg,
            "tags": list(self.config.tags),
            "board": self.config.board,
            "t": self.clock.now(),
        }

    async def _to_outbox(self, readings: list[Reading]) -> None:
        await self.outbox.put(readings, Priority.TELEMETRY)  # waits while the outbox queue is full
        if self.uplink is not None:
            self.uplink.wake()

    async def put(self, readings: list[Reading], priority: Priority) -> None:
        """Events and alarms: straight to the outbox with their priority (no report filter)."""
        await self.outbox.put(readings, priority)
        if self.uplink is not None:
            self.uplink.wake()

    async def ingest(self, readings: list[Reading], mono: float) -> None:
        """Every reading enters here: the process image at once, then the reportable
        ones to the sinks (the outbox), which may make the caller wait (backpressure)."""
        self.image.update_many(readings, mono)
        reported = self.reporter.select(readings, mono)
        if reported:
            for sink in self.sinks:
                await sink(reported)

    def _spawn(self, name: str, factory: Callable[[], Any]) -> None:
        """Run a loop as a task; if it ever fails (a bug), restart it with backoff (1 s doubling
        to 60 s, on the app's clock) and report it: a log line with the traceback, `task_restarts` in status, and an
        `event.agent.task_failed` reading for the cloud at the 1st, 2nd, 4th, 8th... failure, so
        a task that keeps crashing is seen, not silently looped."""

        async def supervised() -> None:
            delay = 1.0
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    n = self.restarts[name] = self.restarts.get(name, 0) + 1
                    log.exception("task %s failed (%d times); restarting in %.0f s", name, n, delay)
                    if n & (n - 1) == 0:  # a power of two: the event rate falls as the failures go on
                        await self._task_failed(name, n, e)
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, 60.0)

        self._tasks.append(asyncio.create_task(supervised(), name=name))

    async def _task_failed(self, name: str, count: int, error: Exception) -> None:
        body = {"task": name, "failures": count, "error": f"{type(error).__name__}: {error}"[:500]}
        r = Reading("event.agent.task_failed", self.clock.now(), json.dumps(body, sort_keys=True), Quality.GOOD)
        try:
            self.outbox.put_nowait([r], Priority.EVENT)
        except Exception as e:  # noqa: BLE001 - the outbox itself may be what failed; the log has it
            log.warning("task failure event not queued: %s", e)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.outbox.start()
        self.config_manager.start()  # a pushed config on trial: the health gate runs from here
        self.ota.start()  # a new release on trial: its health gate and commit run from here
        await self.status_server.start()
        for name, poller in self.pollers.items():
            self._spawn(f"poll-{name}", poller.run)
        if self.dio:
            self._spawn("dio", self.dio.run)
        if self.gps:
            self._spawn("gps", self.gps.run)
        self._spawn("selftel", self.selftel.run)
        if self.controls.active:
            self._spawn("controls", self.controls.run)
        if self.uplink:
            self._spawn("uplink", self.uplink.run)
        if Watchdog.wanted():  # under the launcher or systemd: READY=1 and WATCHDOG=1 while healthy
            self.watchdog = Watchdog(self)
            self._spawn("watchdog", self.watchdog.run)
        log.info(
            "agent %s started: cabinet %s, %d buses, %d devices, %d points",
            agent.__version__,
            self.config.cabinet_id,
            len(self.engines),
            len(self.config.devices),
            len(self.image.points()),
        )

    def request_stop(self) -> None:
        """A graceful stop asked for by a command (`reboot`): run() returns, the service manager restarts us."""
        if self._stop is not None:
            self._stop.set()

    async def stop(self) -> None:
        await self.config_manager.close()
        await self.ota.close()
        await cancel_all(self._tasks)
        if self.downlink is not None:
            await self.downlink.close()
        self._tasks.clear()
        for engine in self.engines.values():
            await engine.close()
        if self.gps:
            self.gps.close()
        await self.outbox.close()
        await self.status_server.close()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = self._stop = stop if stop is not None else asyncio.Event()
        await self.start()
        try:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for t in self._tasks:
                if t.done() and not t.cancelled() and (error := t.exception()) is not None:
                    raise error
        finally:
            await self.stop()

    def brief(self) -> dict[str, Any]:
        """Counts for the `status` command: points in the process image, the outbox's stats."""
        return {"points": len(self.image.points()), "outbox": self.outbox.stats()}

    def status(self) -> dict[str, Any]:
        mono = self.clock.monotonic()
        buses = []
        for name, engine in self.engines.items():
            poller = self.pollers[name]
            buses.append(
                {**engine.snapshot(), "requests_per_cycle": poller.plan_size, "devices": poller.snapshot(mono)}
            )
        return {
            "cabinet": {
                "id": self.config.cabinet_id,
                "name": self.config.cabinet_name,
                "timezone": self.config.site.timezone,  # the site's local time, for people
            },
            "agent": {
                "version": agent.__version__,
                "uptime_s": round(mono - self.started_mono, 3),
                "config": self.config.source,
                "config_sha256": self.config.sha256,
                "board": self.config.board,
                "wall_time": self.clock.now(),
                "wall_time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock.now())),
                "clock_synced": self.clock.synced,
            },
            "points": self.image.snapshot(mono),
            "buses": buses,
            "dio": self.dio.snapshot() if self.dio else None,
            "gps": self.gps.snapshot(mono) if self.gps else None,
            "report": {"offered": self.reporter.offered, "reported": self.reporter.reported},
            "outbox": self.outbox.stats(),
            "uplink": self.uplink.snapshot() if self.uplink else None,
            "downlink": self.downlink.snapshot() if self.downlink is not None else None,
            "controls": self.controls.status() if self.controls.active else None,
            "task_restarts": dict(self.restarts),
            "config": self.config_manager.snapshot(),  # {sha256, version, trial, last_rollback, last_commit}
            "ota": self.ota.snapshot(),  # None unless under the launcher
        }
