"""Lighting controller benchmark: the cost of one step and a year of decisions.

`step_us`: median cost of LightingController.step (microseconds) for the example
cabinet ([lighting] of boards/sim/cabinet.toml: three segments, photocell, meters),
stepped once a second through an evening with a plausible process image.
`year_s`: time spent in the controller computing a whole year of decisions for that
site at `year_step_s` steps (default 60 s) in accelerated time, the plant answering
with the power of the commanded level and daylight from the astronomical clock
(`year_wall_s` includes that small plant).
Figures are measured, not asserted; the target for `year_s` is <= 10 s.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any

from agent import config as cfg
from agent.control.lighting.controller import LightingController
from agent.runtime.entry import board_infos

UTC = dt.UTC


def controller() -> LightingController:
    return LightingController.from_config(cfg.load(cfg.EXAMPLE, board_infos()))


class Plant:
    """Just enough plant: relays read back, power and energy follow the decision, lux the sun."""

    def __init__(self, ctl: LightingController) -> None:
        self.ctl = ctl
        self.image: dict[str, tuple] = {}
        self.kwh = {s.name: 1000.0 for s in ctl.settings.segments}

    def fill(self, t: float, dt_s: float, decisions: dict) -> dict:
        img, night = self.image, self.ctl.astro.night_at(t)
        if self.ctl.settings.photocell:
            img[self.ctl.settings.photocell.point] = (1.0 if night.dark(t) else 800.0, "good", 1.0)
        for s in self.ctl.settings.segments:
            d = decisions.get(s.name)
            level = (d.level if d.level is not None else 100.0) if d is not None and d.on else 0.0
            p = s.expected_at(level) if level > 0 else 0.0
            self.kwh[s.name] += p * dt_s / 3.6e6
            if s.power:
                img[s.power] = (p, "good", 1.0)
            if s.energy:
                img[s.energy] = (round(self.kwh[s.name], 2), "good", 1.0)
            if s.voltage:
                img[s.voltage] = (230.0, "good", 1.0)
        return img

    def apply(self, writes: list) -> None:
        for w in writes:
            self.image[w.point] = (w.value, "good", 0.5)


def measure_step(steps: int = 20000) -> float:
    ctl = controller()
    plant = Plant(ctl)
    t = dt.datetime(2025, 1, 15, 15, 0, tzinfo=UTC).timestamp()  # through dusk into the evening
    decisions: dict = {}
    costs = []
    for i in range(steps):
        img = plant.fill(t + i, 1.0, decisions)
        t0 = time.perf_counter_ns()
        r = ctl.step(float(i), t + i, img)
        costs.append(time.perf_counter_ns() - t0)
        decisions = r.decisions
        plant.apply(r.writes)
    return statistics.median(costs) / 1000.0


def measure_year(days: float = 365.0, step_s: float = 60.0) -> dict[str, Any]:
    ctl = controller()
    plant = Plant(ctl)
    t0 = dt.datetime(2025, 1, 1, 0, 0, tzinfo=UTC).timestamp()
    n = int(days * 86400 / step_s)
    decisions: dict = {}
    events = 0
    in_step = 0
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in range(n):
        t = t0 + i * step_s
        img = plant.fill(t, step_s, decisions)
        c0 = clock()
        r = ctl.step(i * step_s, t, img)
        in_step += clock() - c0
        decisions = r.decisions
        if r.writes:
            plant.apply(r.writes)
        events += len(r.events)
    wall = time.perf_counter() - start
    seg = ctl.state()["segments"]
    first = next(iter(seg.values()))
    return {
        "year_s": round(in_step / 1e9, 3),
        "year_wall_s": round(wall, 3),
        "year_steps": n,
        "year_step_s": step_s,
        "year_days": days,
        "year_events": events,
        "burning_h": round(first["burning_h"], 1),
        "switches": first["switches"],
    }


def run(steps: int = 20000, days: float = 365.0, step_s: float = 60.0) -> dict[str, Any]:
    ctl = controller()
    out: dict[str, Any] = {
        "step_us": round(measure_step(steps), 2),
        "segments": len(ctl.settings.segments),
        "site": ctl.astro.timezone,
    }
    out.update(measure_year(days, step_s))
    if days >= 365:
        out["met"] = {"year_s<=10": out["year_s"] <= 10.0}
    return out
