"""What a simulated cabinet reports: its point catalogue and how often each point reports.

* `example`: the example cabinet (boards/sim/cabinet.toml) at its default report-by-exception
  policy: its real catalogue (agent/uplink/catalogue_source.py, the field points) plus the
  agent's own points, and for each point the number of readings it produced in a measured
  run (example_rates.json: 1,800 simulated seconds, 5.2 readings per second in all; the
  command that measured it is in the file);
* `w1`: the dense workload of the gateway comparison (10 units x 20 keys, half int16 and
  half float32, every value every second: 200 readings per second).

`Profile.readings(state, t0, t1)` gives one cabinet's readings in [t0, t1): each point at
its own interval from its own phase; values move like the real ones do between reports
(energy counters climb, measurements wander, contacts rarely change).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent.model import Quality, Reading
from agent.wire.catalogue import PointInfo

HERE = Path(__file__).resolve().parent
EXAMPLE_CONFIG = HERE.parents[1] / "boards" / "sim" / "cabinet.toml"
GOOD = Quality.GOOD


@dataclass(frozen=True)
class PointRate:
    info: PointInfo
    interval_s: float  # one reading every this many seconds


@dataclass(frozen=True)
class Profile:
    name: str
    points: tuple[PointRate, ...]  # sorted by name

    @property
    def readings_per_s(self) -> float:
        return sum(1.0 / p.interval_s for p in self.points)

    def catalogue_points(self) -> list[PointInfo]:
        return [p.info for p in self.points]

    def start(self, rng: random.Random) -> list[Any]:
        """A cabinet's state: per point its phase and current value."""
        return [[rng.uniform(0.0, p.interval_s), _initial(p.info, rng)] for p in self.points]

    def readings(self, state: list[Any], t0: float, t1: float, rng: random.Random) -> list[Reading]:
        """The readings of [t0, t1) (time order per point); `state` moves on."""
        out: list[Reading] = []
        for p, st in zip(self.points, state, strict=True):
            step = p.interval_s
            k = math.ceil((t0 - st[0]) / step)
            t = st[0] + k * step
            while t < t1:
                st[1] = _next(p.info, st[1], rng)
                out.append(Reading(p.info.name, round(t, 3), st[1], GOOD))
                t += step
        return out


def _initial(info: PointInfo, rng: random.Random) -> Any:
    if info.kind == "bool":
        return rng.random() < 0.5
    if info.kind == "int":
        return rng.randrange(0, 1000)
    if info.kind == "str" or info.name.startswith(("event.", "alarm.")):
        return '{"message": "simulated"}'
    return round(rng.uniform(0.0, 500.0), 2)


def _next(info: PointInfo, v: Any, rng: random.Random) -> Any:
    if isinstance(v, bool):
        return (not v) if rng.random() < 0.02 else v
    if isinstance(v, int):
        return v + rng.randrange(0, 3)
    if isinstance(v, str):
        return v
    d = info.decimals if info.decimals is not None else 2
    if "energy" in info.name or info.name.endswith(("_kwh", "_h")):
        return round(v + rng.uniform(0.0, 0.05), d)  # counters climb
    return round(v + rng.uniform(-1.0, 1.0), d)


@cache
def example() -> Profile:
    from agent.config import load
    from agent.uplink.catalogue_source import from_config

    config = load(EXAMPLE_CONFIG)
    measured = json.loads((HERE / "example_rates.json").read_text())
    seconds, counts = float(measured["seconds"]), measured["counts"]
    infos = {p.name: p for p in from_config(config, config.points()).points}
    points = []
    for name in sorted(counts):
        kind = "str" if name.startswith(("event.", "alarm.")) else ""
        info = infos.get(name) or PointInfo(name, kind=kind)
        points.append(PointRate(info, seconds / max(1, int(counts[name]))))
    return Profile("example", tuple(points))


@cache
def w1() -> Profile:
    points = []
    for unit in range(1, 11):
        for key in range(20):
            kind, decimals = ("int", None) if key % 2 == 0 else ("float", 2)
            name = f"unit{unit:02d}.k{key:02d}"
            points.append(PointRate(PointInfo(name, kind=kind, decimals=decimals, device=f"unit{unit:02d}"), 1.0))
    return Profile("w1", tuple(sorted(points, key=lambda p: p.info.name)))


PROFILES = {"example": example, "w1": w1}


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"profile {name!r}: known profiles are {', '.join(PROFILES)}")
    return PROFILES[name]()
