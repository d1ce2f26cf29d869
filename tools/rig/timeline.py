"""The agent's decisions and alarms as a timeline, and two timelines compared.

What makes a run at speed trustworthy is that it decides what a real-time run of the same
scenario decides, at the same simulated moments (issue 15). A timeline is what the agent
decided, read from its own outbox:

* every alarm transition (`alarm.<id>`: raise, clear, ack),
* every event (`event.*`: lighting switches, modes, door, flood, OTA ...),
* every change of a decision point: each lighting segment's commanded `on` and `level`, the
  climate outputs (fan, heater) and the relay outputs the agent drives; a value that holds
  less than `SETTLE_S` (a dimming fade's steps) is a passage, not a decision;
* every change of a field point's quality (good, stale, bad ...): what a rig at speed got
  wrong first (points going stale when a reply's wire time ran in the wrong clock).

Times are relative to the run's first good field reading (the simulated cabinet answering
for the first time): a real-time run spends wall seconds starting the simulator, a virtual
one none, and the plant's own timeline ([[sim.script]]) counts from the simulator's start.

`compare(reference, other, tolerance_s)` pairs entries with the same key (what happened,
to what, to which value) in time order and lists every difference: an entry one run has
and the other lacks, or a pair further apart than the tolerance. Two runs of one scenario
differ by the phase of the polls against the plant's events (a 5-s meter poll can see a
change up to 5 s later in one run than in the other), so the tolerance is about the
longest poll period involved.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.config import Config
from agent.model import Reading

SETTLE_S = 2.0
AGENT_PREFIXES = ("alarm.", "event.", "lighting.", "climate.", "agent.", "uplink.", "outbox.", "ota.")


@dataclass(frozen=True, order=True)
class Entry:
    t: float  # seconds after the first good field reading
    key: tuple[str, ...]  # ("alarm", id, transition) | ("event", point) | ("set", point, value)

    def __str__(self) -> str:
        return f"{self.t:9.1f} s  {' '.join(self.key)}"


def decision_points(config: Config) -> set[str]:
    """The points whose changes are the agent's decisions under `config`."""
    out = set(config.outputs)
    light = config.lighting
    if light is not None:
        for seg in light.segments:
            out.update({f"lighting.{seg.name}.on", f"lighting.{seg.name}.level"})
    return out


def _field_point(point: str, devices: Iterable[str]) -> bool:
    return not point.startswith(AGENT_PREFIXES) and point.split(".", 1)[0] in devices


def _alarm_key(r: Reading) -> tuple[str, ...] | None:
    try:
        doc = json.loads(r.value) if isinstance(r.value, str) else None
    except ValueError:
        return None
    if not isinstance(doc, dict) or "transition" not in doc:
        return None
    return ("alarm", str(doc.get("alarm", r.point[6:])), str(doc["transition"]))


def _value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return json.dumps(v)


def timeline(readings: Iterable[Reading], config: Config) -> list[Entry]:
    """The decisions and alarms among `readings` (an outbox's rows), in time order."""
    rows = sorted(readings, key=lambda r: r.t)
    devices = set(config.devices)
    t0 = next((r.t for r in rows if str(r.quality) == "good" and _field_point(r.point, devices)), None)
    if t0 is None:
        return []
    decided = decision_points(config)
    settled: dict[str, tuple[float, str]] = {}  # point -> (since, value) not yet in the timeline
    last: dict[str, str] = {}
    out: list[Entry] = []

    def settle(point: str, before: float) -> None:
        pending = settled.pop(point, None)
        if pending is not None and before - pending[0] >= SETTLE_S and last.get(point) != pending[1]:
            last[point] = pending[1]
            out.append(Entry(round(pending[0] - t0, 3), ("set", point, pending[1])))

    for r in rows:
        key: tuple[str, ...] | None = None
        quality = str(r.quality)
        if r.point.startswith("alarm."):
            key = _alarm_key(r)
        elif r.point.startswith("event."):
            key = ("event", r.point)
        elif r.point in decided:
            if quality == "good":
                settle(r.point, r.t)
                settled[r.point] = (r.t, _value(r.value))
        elif _field_point(r.point, devices) and last.get("quality " + r.point, "good") != quality:
            last["quality " + r.point] = quality
            key = ("quality", r.point, quality)
        if key is not None:
            out.append(Entry(round(r.t - t0, 3), key))
    for point in list(settled):
        settle(point, math.inf)
    return sorted(out)


def compare(reference: Sequence[Entry], other: Sequence[Entry], tolerance_s: float) -> list[str]:
    """Every difference between two timelines (empty: the same decisions), as readable lines."""
    times: dict[tuple[str, ...], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for e in reference:
        times[e.key][0].append(e.t)
    for e in other:
        times[e.key][1].append(e.t)
    diffs: list[tuple[float, str]] = []
    for key, (ref, oth) in times.items():
        what = " ".join(key)
        for a, b in zip(ref, oth, strict=False):
            if abs(a - b) > tolerance_s:
                here = f"{b:.1f} s here (tolerance {tolerance_s:g} s)"
                diffs.append((a, f"{what}: at {a:.1f} s in the reference, {here}"))
        for a in ref[len(oth) :]:
            diffs.append((a, f"{what}: at {a:.1f} s in the reference, missing here"))
        for b in oth[len(ref) :]:
            diffs.append((b, f"{what}: at {b:.1f} s here, not in the reference"))
    return [d for _, d in sorted(diffs)]


def until(entries: Sequence[Entry], end_s: float) -> list[Entry]:
    """The entries up to `end_s` (two runs stopped a little apart compare over the shorter)."""
    return [e for e in entries if e.t <= end_s]
