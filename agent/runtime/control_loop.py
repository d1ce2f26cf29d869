"""The control loop task: the pure lighting and climate controllers and the alarm
framework, wired to the process image, the outputs, the outbox and state files.

Each step (every `period_s`, sooner when the climate controller asks): a snapshot of
the points the controllers read, `LightingController.step` and `ClimateController.step`,
their alarm conditions through one `AlarmManager`, the outputs written through the
Actuator (read back; shed loads held off), lighting events (Priority.EVENT) and alarm
transitions (Priority.ALARM) into the outbox, state files saved when they changed
(`<data>/state/{overrides,lighting,alarms}.json`, atomic). Local actions (the agent's
socket): lighting override / cancel, alarm acknowledge.

The wall clock is trusted for calendars and the astronomical clock only when the clock
does not say it is unset and reads after TRUSTED_AFTER: a controller that boots at
1970 (no RTC, no NTP yet) runs the lighting fail-safe instead of a wrong calendar.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent import statefile
from agent.clock import Clock, clock_trusted
from agent.config import Config
from agent.control.alarms.manager import AlarmManager
from agent.control.climate.controller import ClimateController
from agent.control.lighting.controller import LightingController
from agent.field.actuator import Actuator
from agent.field.image import ProcessImage
from agent.model import Point, Priority, Quality, Reading
from agent.remote.host import ActionError

log = logging.getLogger(__name__)

SAVE_PERIOD_S = 300.0
GPS_REFINE_S = 3600.0

Put = Callable[[list[Reading], Priority], Awaitable[None]]
Ingest = Callable[[list[Reading], float], Awaitable[None]]

# per segment: key -> (unit, deadband, heartbeat_s); into the process image and the telemetry
SEGMENT_POINTS = {
    "on": ("", 0.0, 3600.0),
    "level": ("%", 0.0, 3600.0),
    "burning_h": ("h", 0.01, 3600.0),
    "switches": ("", 0.0, 3600.0),
    "energy_kwh": ("kWh", 0.01, 3600.0),
    "saved_kwh": ("kWh", 0.01, 3600.0),
}


def segment_points(segments: list[Any]) -> list[Point]:
    """Points of the lighting segments (`level` only where a segment dims)."""
    return [
        Point(
            f"lighting.{s.name}.{key}",
            unit=unit,
            source="lighting",
            deadband=db,
            heartbeat_s=hb,
            stale_after_s=float("inf"),
            description=f"segment {s.name}: {key}",
        )
        for s in segments
        for key, (unit, db, hb) in SEGMENT_POINTS.items()
        if key != "level" or s.dim
    ]


class Controls:
    def __init__(
        self,
        config: Config,
        *,
        image: ProcessImage,
        actuator: Actuator,
        clock: Clock,
        put: Put,
        data_dir: Path,
        ingest: Ingest | None = None,
        period_s: float = 1.0,
    ) -> None:
        self.image = image
        self.actuator = actuator
        self.clock = clock
        self.put = put
        self.ingest = ingest
        self.period_s = period_s
        self.late: deque[float] = deque(maxlen=60)  # how late the last 60 steps started, s (step_late_ms)
        self.dir = Path(data_dir) / "state"
        self.lighting: LightingController | None = None
        self.climate: ClimateController | None = None
        defs = []
        if config.lighting is not None:
            self.lighting = LightingController.from_config(config)
        if config.climate is not None:
            self.climate = ClimateController(config.climate)
            defs = self.climate.definitions()
        self._alarm_defs, self._alarm_overrides = defs, dict(config.alarms or {})
        self.alarms = AlarmManager(defs, self._alarm_overrides)
        self._points = sorted(
            set(self.lighting.points() if self.lighting else ())
            | set(self.climate.inputs if self.climate else ())
            | set(self.climate.outputs if self.climate else ())
        )
        self._overrides_seen = -1
        self._saved_at = float("-inf")
        self.steps = 0
        self.last_failed: dict[str, str] = {}
        self.mode: str | None = None
        self._next_refine = float("-inf")
        self.points = segment_points(config.lighting.segments) if self.lighting else []
        self._names = {p.name for p in self.points}

    @property
    def active(self) -> bool:
        return self.lighting is not None or self.climate is not None

    # -- state files -------------------------------------------------------------------------------
    def restore(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        utc = self._utc()
        if self.lighting is not None:
            data = statefile.load(self.dir / "overrides.json")
            if isinstance(data, dict):
                self.lighting.restore_overrides(data, utc)  # what it drops is an event: logged by step()
            data = statefile.load(self.dir / "lighting.json")
            if isinstance(data, dict):
                self.lighting.restore(data)
            self._overrides_seen = self.lighting.overrides.changed
        data = statefile.load(self.dir / "alarms.json")
        if isinstance(data, dict):
            try:
                self.alarms = AlarmManager.from_dict(data, self._alarm_defs, self._alarm_overrides)
            except (ValueError, TypeError, KeyError) as e:
                log.error("alarm state file unusable (%s); starting with no active alarms", e)

    def save(self, what: str = "all") -> None:
        try:
            if self.lighting is not None and what in ("all", "overrides"):
                statefile.save(self.dir / "overrides.json", self.lighting.overrides.to_dict())
                self._overrides_seen = self.lighting.overrides.changed
            if self.lighting is not None and what in ("all", "lighting"):
                statefile.save(self.dir / "lighting.json", self.lighting.state())
            if what in ("all", "alarms"):
                statefile.save(self.dir / "alarms.json", self.alarms.to_dict())
        except OSError as e:  # a full or read-only disk must not stop the lights
            log.error("could not save control state (%s): %s", what, e)

    # -- the loop ----------------------------------------------------------------------------------
    def _utc(self) -> float | None:
        return self.clock.now() if clock_trusted(self.clock) else None

    def snapshot(self, mono: float) -> dict[str, tuple[Any, Quality, float] | None]:
        out: dict[str, tuple[Any, Quality, float] | None] = {}
        for p in self._points:
            reading, age = self.image.get(p, mono)
            out[p] = None if reading is None or age is None else (reading.value, reading.quality, age)
        return out

    async def run(self) -> None:
        self.restore()
        while True:
            wake = await self.step()
            await self.clock.sleep_until(wake)
            self.late.append(max(0.0, self.clock.monotonic() - wake))

    async def step(self) -> float:
        """One control step; returns the monotonic time of the next one."""
        mono, wall = self.clock.monotonic(), self.clock.now()
        utc = self._utc()
        snap = self.snapshot(mono)
        conditions: list[Any] = []
        events: list[Reading] = []
        writes: dict[str, Any] = {}
        shed: dict[str, str] = {}
        wake = mono + self.period_s
        if self.climate is not None:
            cs = self.climate.step(mono, snap)
            shed = dict(cs.shed)
            conditions += cs.conditions
            for d in cs.outputs:
                writes[d.point] = d.on
            wake = min(wake, max(cs.wake_at, mono + 0.05))
        switched = False
        if self.lighting is not None:
            ls = self.lighting.step(mono, utc, snap)
            self.mode = ls.mode
            conditions += ls.conditions
            for w in ls.writes:
                if w.point in shed:
                    continue
                reason = await self.actuator.write(w.point, w.value)
                if reason is not None:
                    self.last_failed[w.point] = reason
                else:
                    self.last_failed.pop(w.point, None)
            for e in ls.events:
                switched = switched or e.kind == "switched"
                if e.kind == "override":  # set, cancelled, expired or dropped: every change passes here
                    log.info("lighting %s", e.message)
                events.append(
                    Reading(
                        f"event.lighting.{e.kind}",
                        wall,
                        json.dumps(e.to_dict(), separators=(",", ":"), sort_keys=True, default=str),
                        Quality.GOOD,
                    )
                )
        for point in shed:
            writes[point] = False
        failed = await self.actuator.apply(writes)
        self.last_failed.update(failed)
        for p in [p for p in self.last_failed if p in writes and p not in failed]:
            del self.last_failed[p]
        alarm_events = self.alarms.update(mono, conditions, wall=wall)
        due = self.alarms.next_due()
        if due is not None:
            wake = min(wake, max(due, mono + 0.05))
        if alarm_events:
            await self._alarm_events(alarm_events)
        if events:
            await self.put(events, Priority.EVENT)
        if self.lighting is not None:
            await self._lighting_telemetry(self.lighting, mono, wall)
            if self.lighting.overrides.changed != self._overrides_seen:
                self.save("overrides")
            if switched or mono - self._saved_at >= SAVE_PERIOD_S:
                self.save("lighting")
                self._saved_at = mono
        self.steps += 1
        return wake

    async def _lighting_telemetry(self, lighting: LightingController, mono: float, wall: float) -> None:
        """Decisions and accounting per segment into the image and (by exception) the telemetry;
        the site refined from a good GPS position now and then."""
        if mono >= self._next_refine:
            lat, lon = self.image.value("gps.latitude", mono), self.image.value("gps.longitude", mono)
            self._next_refine = mono + (GPS_REFINE_S if lat is not None and lon is not None else 60.0)
            if lat is not None and lon is not None:
                fix = _Fix(lat, lon, self.image.value("gps.altitude", mono))
                if lighting.refine_site(fix):
                    log.info("lighting site refined by GPS: %s", lighting.astro.refine_note or fix)
        if self.ingest is None:
            return
        segs = lighting.status(None)["segments"]
        readings = [
            Reading(name, wall, _json_value(st.get(key)), Quality.GOOD)
            for seg, st in segs.items()
            for key in SEGMENT_POINTS
            if st.get(key) is not None and (name := f"lighting.{seg}.{key}") in self._names
        ]
        await self.ingest(readings, mono)

    # -- local actions (agent socket) --------------------------------------------------------------
    async def override(self, args: dict[str, Any]) -> dict[str, Any]:
        """{"on": bool, "level": 0..100?, "segments": [..]?, "minutes": n? | "until": epoch? | "forever": true?}"""
        if self.lighting is None:
            raise ActionError("this cabinet has no [lighting] section")
        if not isinstance(args.get("on"), bool):
            raise ActionError('"on" must be true or false')
        minutes = args.get("minutes")
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0):
            raise ActionError('"minutes" must be a positive number')
        try:
            ov = self.lighting.set_override(
                on=args["on"],
                mono=self.clock.monotonic(),
                utc=self._utc(),
                level=args.get("level"),
                segments=args.get("segments"),
                expires=args.get("until"),
                duration_s=None if minutes is None else float(minutes) * 60,
                forever=bool(args.get("forever")),
                source=str(args.get("source") or "local"),
                note=str(args.get("note") or ""),
            )
        except (ValueError, TypeError) as e:
            raise ActionError(str(e)) from None
        self.save("overrides")
        await self.step()
        return {"override": ov.to_dict(), "lighting": self.lighting.status(self._utc())}

    async def cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.lighting is None:
            raise ActionError("this cabinet has no [lighting] section")
        try:
            gone = self.lighting.cancel_override(args.get("segments"), source=str(args.get("source") or "local"))
        except (ValueError, TypeError) as e:
            raise ActionError(str(e)) from None
        self.save("overrides")
        await self.step()
        return {"cancelled": gone}

    async def acknowledge(self, args: dict[str, Any]) -> dict[str, Any]:
        alarm_id = args.get("id")
        if not isinstance(alarm_id, str):
            raise ActionError('"id" must be an alarm id (see cabinet status)')
        ev = self.alarms.acknowledge(
            alarm_id, self.clock.monotonic(), wall=self.clock.now(), by=str(args.get("by") or "local")
        )
        if ev is None:
            raise ActionError(f"alarm {alarm_id} is not active or latched")
        await self._alarm_events([ev])
        return {"event": ev.to_dict()}

    async def _alarm_events(self, events: list[Any]) -> None:
        """Every alarm transition (raised, cleared, acknowledged) passes here: a log line each
        (WARNING when raised, INFO otherwise), then the outbox (Priority.ALARM) and the state file."""
        for ev in events:
            if ev.transition == "raised":
                log.warning("alarm %s raised (%s): %s", ev.alarm_id, ev.severity, ev.message or ev.source)
            else:
                log.info(
                    "alarm %s %s%s, now %s",
                    ev.alarm_id,
                    ev.transition,
                    f" by {ev.by}" if ev.by else "",
                    ev.state,
                )
        await self.put([ev.to_reading() for ev in events], Priority.ALARM)
        self.save("alarms")

    def actions(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {"/lighting/override": self.override, "/lighting/cancel": self.cancel, "/alarms/ack": self.acknowledge}

    def status(self) -> dict[str, Any]:
        utc = self._utc()
        return {
            "clock_trusted": utc is not None,
            "lighting": self.lighting.status(utc) if self.lighting else None,
            "climate": self.climate.status() if self.climate else None,
            "alarms": self.alarms.active(),
            "outputs": self.actuator.snapshot(),
            "output_failures": dict(self.last_failed),
            "steps": self.steps,
            "step_late_ms": _late_ms(self.late),  # the loop's jitter (docs/benchmarks.md, console)
        }


class _Fix:
    __slots__ = ("altitude", "latitude", "longitude")

    def __init__(self, latitude: float, longitude: float, altitude: float | None) -> None:
        self.latitude, self.longitude, self.altitude = latitude, longitude, altitude

    def __repr__(self) -> str:
        return f"({self.latitude:.5f}, {self.longitude:.5f})"


def _late_ms(late: deque[float]) -> dict[str, float | int] | None:
    if not late:
        return None
    ms = sorted(x * 1000.0 for x in late)
    p50, p99 = (round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) for q in (0.5, 0.99))
    return {"n": len(ms), "p50": p50, "p99": p99, "max": round(ms[-1], 2)}


def _json_value(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v
