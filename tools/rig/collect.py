"""What the agent did, read back from its own outbox after a run, into a `RunRecord`.

Every reading the agent produced — field points, its lighting and climate points, lighting
events, alarm transitions (`alarm.<id>`, JSON), its own telemetry — is a row of its outbox
(`<data dir>/outbox.db`) until the cloud acknowledges it; a rig run without an uplink
keeps them all. Their timestamps are the agent's clock, the simulated time of the run, so
no second recorder runs inside the agent. Read-only: the file may still be held by a
stopping agent (WAL readers see committed rows only).

`fill` maps the config's points onto the record's series names (tools/rig/record.py): the
photocell's lux point, each segment's commanded state, level, energy and measured power,
the climate sensors and outputs; alarm transitions become intervals, `event.*` rows events,
and every point's quality changes are kept.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.control.lighting.astro import AstroClock
from agent.model import Reading
from agent.outbox.schema import ROW_COLUMNS, to_readings
from tools.rig import record as R
from tools.rig.fold import Series, alarm_intervals, quality_changes


class CollectError(Exception):
    """The outbox could not be read (names the file and why)."""


def readings(db: Path, table: str = "rows") -> list[Reading]:
    """Every reading in the outbox (sealed or not), in time order (file order for equal times);
    `table`: the outbox's rows, or another table of the same columns (tools/rig/tap.py's copy)."""
    if not db.is_file():
        raise CollectError(f"{db}: no outbox (did the agent start?)")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            names = dict(conn.execute("SELECT id, name FROM points"))
            rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM {table} ORDER BY t, id").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise CollectError(f"{db}: {e}") from None
    return to_readings(names, rows)


def series_names(config: Config) -> dict[str, str]:
    """The agent's point -> the record's series name, for this config."""
    out: dict[str, str] = {}
    light = config.lighting
    if light is not None:
        if light.photocell is not None:
            out[light.photocell.point] = R.LUX
        for seg in light.segments:
            for what in ("on", "level", "energy_kwh"):
                out[f"lighting.{seg.name}.{what}"] = R.segment_series(seg.name, what)
            if seg.power:
                out[seg.power] = R.segment_series(seg.name, "power_w")
    climate = config.climate
    if climate is not None:
        out[climate.temperature] = R.TEMPERATURE
        if climate.humidity:
            out[climate.humidity] = R.HUMIDITY
        for fan in climate.fans[:1]:
            out[fan.output] = R.FAN
        if climate.heater is not None:
            out[climate.heater.output] = R.HEATER
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _json(v: Any) -> dict[str, Any] | None:
    try:
        doc = json.loads(v) if isinstance(v, str) else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def sun_elevation(rec: R.RunRecord, config: Config, step_s: float = 300.0) -> list[R.Sample]:
    """The sun's elevation at the site over the run, by the agent's own astro code."""
    site = config.site
    astro = AstroClock(rec.site.latitude, rec.site.longitude, site.elevation, rec.site.timezone)
    n = max(1, math.ceil((rec.end - rec.start) / step_s))
    times = [rec.start + (rec.end - rec.start) * i / n for i in range(n + 1)]
    return [(t, round(astro.elevation(t), 3)) for t in times]


def fill(rec: R.RunRecord, rs: Iterable[Reading], config: Config) -> R.RunRecord:
    """The record with the agent's readings folded in (series, decisions, alarms, events, qualities)."""
    names = series_names(config)
    series: dict[str, Series] = {}
    transitions: list[dict[str, Any]] = []
    qualities: list[tuple[str, float, str]] = []
    seen = list(rs)
    for r in seen:
        if r.point.startswith("alarm."):
            doc = _json(r.value)
            if doc is not None and "transition" in doc:
                transitions.append({**doc, "alarm": doc.get("alarm", r.point[6:]), "t": r.t})
            continue
        if r.point.startswith("event."):
            doc = _json(r.value) or {}
            rec.events.append(R.Event(r.t, r.point, str(doc.get("message", "")), doc))
            data = doc.get("data")
            if r.point.startswith("event.lighting.") and isinstance(data, dict) and "on" in data:
                # a changed decision (switched, level, reason): {segment, data: {on, level, reason}}
                level = _number(data.get("level"))
                reason = str(data.get("reason", ""))
                rec.decisions.append(R.Decision(r.t, str(doc.get("segment")), bool(data["on"]), level, reason))
            continue
        qualities.append((r.point, r.t, str(r.quality)))
        name = names.get(r.point)
        if name is not None:
            value = _number(r.value) if str(r.quality) in ("good", "substituted") else None
            series.setdefault(name, Series()).add(r.t, value)
    last_t = max((r.t for r in seen), default=rec.start)
    for name, s in series.items():
        samples = s.samples
        if samples and samples[-1][0] < last_t:  # reported by exception: the value holds until the next
            samples = [*samples, (last_t, samples[-1][1])]
        rec.series[name] = samples
    rec.series[R.SUN] = sun_elevation(rec, config)
    rec.alarms.extend(alarm_intervals(transitions))
    rec.qualities.update(quality_changes(qualities))
    for seg in rec.segments:
        energy = [v for _, v in rec.series.get(R.segment_series(seg, "energy_kwh"), []) if v is not None]
        if energy:
            rec.agent_energy_kwh[seg] = energy[-1] - energy[0]
    return rec
