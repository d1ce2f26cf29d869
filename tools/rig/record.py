"""A recorded rig run: everything the runner collects while a scenario plays, as typed data.

The runner fills a `RunRecord`; the expectations (tools.rig.expect), the JUnit file
(tools.rig.junit) and the report (tools.rig.report) read it and nothing else, so a
record saved as JSON (`save`, `load`) can be judged and drawn again later. Times are
wall time of the run's clock (UTC epoch seconds, simulated time at speed), values are
numbers or None (no usable value at that time).

Time series (`series`, name -> [(t, value)], sorted by t) under these names:

| name | what | unit |
|---|---|---|
| `sun.elevation` | solar elevation at the site (the agent's astro code) | deg |
| `lux` | daylight as the agent's photocell point read it | lx |
| `segment.<seg>.on` | the agent's commanded state, 1 on / 0 off | - |
| `segment.<seg>.level` | the agent's commanded level | % |
| `segment.<seg>.power_w` | measured power of the segment (its meter) | W |
| `segment.<seg>.energy_kwh` | the agent's energy accounting of the segment | kWh |
| `cabinet.temperature`, `cabinet.humidity`, `cabinet.dew_point` | cabinet air | °C, %RH, °C |
| `fan`, `heater` | the outputs, 1 on / 0 off | - |

Pure: no I/O except `save`/`load`, which read and write one JSON file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

FORMAT = 1  # the record's JSON format version
SUN, LUX = "sun.elevation", "lux"
TEMPERATURE, HUMIDITY, DEW_POINT = "cabinet.temperature", "cabinet.humidity", "cabinet.dew_point"
FAN, HEATER = "fan", "heater"
EXIT_STATUSES = ("stopped", "crashed", "hung")  # stopped by the rig at the end / exited on its own / killed

Sample = tuple[float, float | None]
T = TypeVar("T")


def segment_series(segment: str, what: str) -> str:
    """The series name of a segment's `on`, `level`, `power_w` or `energy_kwh`."""
    return f"segment.{segment}.{what}"


class RecordError(ValueError):
    """A record file that is not a run record; the message names the file and the field."""


@dataclass(frozen=True)
class RunSite:
    latitude: float
    longitude: float
    timezone: str


@dataclass(frozen=True)
class Decision:
    """A lighting decision of the agent; `reason` as the controller gives it (program:<name>, override ...)."""

    t: float
    segment: str
    on: bool
    level: float | None
    reason: str


@dataclass(frozen=True)
class AlarmInterval:
    """One alarm from raised to cleared (None: still active at the end); `acked` when acknowledged."""

    id: str
    severity: str
    raised: float
    cleared: float | None = None
    acked: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Event:
    t: float
    kind: str  # event.lighting.switched ..., as in the outbox
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Injected:
    """An action of the scenario's timeline as the runner carried it out (`outcome`: what happened)."""

    t: float
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = ""
    ok: bool = True


@dataclass(frozen=True)
class Delivery:
    """Readings of one point: produced by the agent, rows at the ingest (`delivered`, duplicates included)."""

    produced: int
    delivered: int
    duplicates: int = 0

    @property
    def missing(self) -> int:
        return max(0, self.produced - (self.delivered - self.duplicates))


@dataclass(frozen=True)
class AgentExit:
    """How the agent under test ended: `status` one of EXIT_STATUSES; `log_tail` its last log lines."""

    status: str = "stopped"
    code: int | None = 0
    message: str = ""
    log_tail: tuple[str, ...] = ()

    @property
    def crashed(self) -> bool:
        return self.status != "stopped"


@dataclass
class RunRecord:
    scenario: str
    scenario_file: str
    config_id: str
    site: RunSite
    start: float
    end: float
    speed: float | None  # None: as fast as possible
    series: dict[str, list[Sample]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    alarms: list[AlarmInterval] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    actions: list[Injected] = field(default_factory=list)
    qualities: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # point -> quality changes
    deliveries: dict[str, Delivery] | None = None  # None: the scenario had no uplink
    agent_energy_kwh: dict[str, float] = field(default_factory=dict)  # segment -> kWh over the run
    plant_energy_kwh: dict[str, float] = field(default_factory=dict)  # segment -> kWh the plant drew
    photocell: tuple[float, float] | None = None  # (on_lux, off_lux) thresholds of the config
    segments: tuple[str, ...] = ()
    exit: AgentExit = field(default_factory=AgentExit)
    wall_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = FORMAT
        d["series"] = {k: [[t, v] for t, v in s] for k, s in self.series.items()}
        d["qualities"] = {k: [[t, q] for t, q in s] for k, s in self.qualities.items()}
        d["photocell"] = list(self.photocell) if self.photocell else None
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "record") -> RunRecord:
        """A record from its JSON form; RecordError naming the field that is wrong."""
        r = _Reader(where)
        m = r.table(d, "")
        if m.get("format") != FORMAT:
            raise RecordError(f"{where}: format: expected {FORMAT}, got {m.get('format')!r}")
        site = r.table(m.get("site"), "site")
        pc = m.get("photocell")
        deliveries = m.get("deliveries")
        ex = r.table(m.get("exit", {}), "exit")
        return cls(
            scenario=r.text(m.get("scenario"), "scenario"),
            scenario_file=r.text(m.get("scenario_file"), "scenario_file"),
            config_id=r.text(m.get("config_id"), "config_id"),
            site=RunSite(
                r.number(site.get("latitude"), "site.latitude"),
                r.number(site.get("longitude"), "site.longitude"),
                r.text(site.get("timezone"), "site.timezone"),
            ),
            start=r.number(m.get("start"), "start"),
            end=r.number(m.get("end"), "end"),
            speed=r.opt(m.get("speed"), "speed", r.number),
            series=r.timelines(m.get("series", {}), "series", lambda v, k: r.opt(v, k, r.number)),
            decisions=r.items(m.get("decisions", []), "decisions", r.decision),
            alarms=r.items(m.get("alarms", []), "alarms", r.alarm),
            events=r.items(m.get("events", []), "events", r.event),
            actions=r.items(m.get("actions", []), "actions", r.injected),
            qualities=r.timelines(m.get("qualities", {}), "qualities", r.text),
            deliveries=None if deliveries is None else r.deliveries(deliveries),
            agent_energy_kwh=r.numbers(m.get("agent_energy_kwh", {}), "agent_energy_kwh"),
            plant_energy_kwh=r.numbers(m.get("plant_energy_kwh", {}), "plant_energy_kwh"),
            photocell=None
            if pc is None
            else (r.number(r.pair(pc, "photocell")[0], "photocell"), r.number(pc[1], "photocell")),
            segments=tuple(r.text(s, "segments") for s in r.seq(m.get("segments", []), "segments")),
            exit=AgentExit(
                status=r.choice(ex.get("status", "stopped"), "exit.status", EXIT_STATUSES),
                code=r.opt(ex.get("code"), "exit.code", r.integer),
                message=r.text(ex.get("message", ""), "exit.message"),
                log_tail=tuple(r.text(s, "exit.log_tail") for s in r.seq(ex.get("log_tail", []), "exit.log_tail")),
            ),
            wall_s=r.opt(m.get("wall_s"), "wall_s", r.number),
        )

    def value_at(self, name: str, t: float) -> float | None:
        """The last sample of series `name` at or before `t` (None before the first, or no such series)."""
        last: float | None = None
        for ts, v in self.series.get(name, ()):
            if ts > t:
                break
            last = v
        return last


def save(record: RunRecord, path: str | Path) -> None:
    Path(path).write_text(json.dumps(record.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def load(path: str | Path) -> RunRecord:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise RecordError(f"{p}: cannot read: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{p}: not JSON: {e}") from None
    return RunRecord.from_dict(data, str(p))


class _Reader:
    """Typed reads of a JSON document; a wrong value raises RecordError naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, want: str, v: Any) -> RecordError:
        return RecordError(f"{self.where}: {key or 'top level'}: expected {want}, got {v!r}"[:300])

    def number(self, v: Any, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, "a number", v)
        return float(v)

    def integer(self, v: Any, key: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, "an integer", v)
        return v

    def text(self, v: Any, key: str) -> str:
        if not isinstance(v, str):
            raise self.fail(key, "a string", v)
        return v

    def flag(self, v: Any, key: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(key, "true or false", v)
        return v

    def choice(self, v: Any, key: str, allowed: tuple[str, ...]) -> str:
        if v not in allowed:
            raise self.fail(key, "one of " + ", ".join(allowed), v)
        return str(v)

    def opt(self, v: Any, key: str, read: Callable[[Any, str], T]) -> T | None:
        return None if v is None else read(v, key)

    def table(self, v: Any, key: str) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise self.fail(key, "an object", v)
        return dict(v)

    def seq(self, v: Any, key: str) -> list[Any]:
        if not isinstance(v, list):
            raise self.fail(key, "a list", v)
        return v

    def pair(self, v: Any, key: str) -> list[Any]:
        if not isinstance(v, list) or len(v) != 2:
            raise self.fail(key, "a pair [a, b]", v)
        return v

    def pairs(self, v: Any, key: str) -> list[list[Any]]:
        return [self.pair(p, key) for p in self.seq(v, key)]

    def items(self, v: Any, key: str, build: Callable[[dict[str, Any], str], T]) -> list[T]:
        return [build(self.table(x, f"{key}[{i}]"), f"{key}[{i}]") for i, x in enumerate(self.seq(v, key))]

    def timelines(self, v: Any, key: str, read: Callable[[Any, str], T]) -> dict[str, list[tuple[float, T]]]:
        out = {}
        for name, pts in self.table(v, key).items():
            k = f"{key}.{name}"
            out[name] = [(self.number(p[0], k), read(p[1], k)) for p in self.pairs(pts, k)]
        return out

    def numbers(self, v: Any, key: str) -> dict[str, float]:
        return {k: self.number(x, f"{key}.{k}") for k, x in self.table(v, key).items()}

    def decision(self, x: dict[str, Any], w: str) -> Decision:
        return Decision(
            self.number(x.get("t"), f"{w}.t"),
            self.text(x.get("segment"), f"{w}.segment"),
            self.flag(x.get("on"), f"{w}.on"),
            self.opt(x.get("level"), f"{w}.level", self.number),
            self.text(x.get("reason", ""), f"{w}.reason"),
        )

    def alarm(self, x: dict[str, Any], w: str) -> AlarmInterval:
        return AlarmInterval(
            self.text(x.get("id"), f"{w}.id"),
            self.text(x.get("severity", "warning"), f"{w}.severity"),
            self.number(x.get("raised"), f"{w}.raised"),
            self.opt(x.get("cleared"), f"{w}.cleared", self.number),
            self.opt(x.get("acked"), f"{w}.acked", self.number),
            self.text(x.get("message", ""), f"{w}.message"),
        )

    def event(self, x: dict[str, Any], w: str) -> Event:
        return Event(
            self.number(x.get("t"), f"{w}.t"),
            self.text(x.get("kind"), f"{w}.kind"),
            self.text(x.get("message", ""), f"{w}.message"),
            self.table(x.get("data", {}), f"{w}.data"),
        )

    def injected(self, x: dict[str, Any], w: str) -> Injected:
        return Injected(
            self.number(x.get("t"), f"{w}.t"),
            self.text(x.get("action"), f"{w}.action"),
            self.table(x.get("args", {}), f"{w}.args"),
            self.text(x.get("outcome", ""), f"{w}.outcome"),
            self.flag(x.get("ok", True), f"{w}.ok"),
        )

    def deliveries(self, v: Any) -> dict[str, Delivery]:
        out = {}
        for point, x in self.table(v, "deliveries").items():
            k, d = f"deliveries.{point}", self.table(x, f"deliveries.{point}")
            out[point] = Delivery(
                self.integer(d.get("produced"), f"{k}.produced"),
                self.integer(d.get("delivered"), f"{k}.delivered"),
                self.integer(d.get("duplicates", 0), f"{k}.duplicates"),
            )
        return out
