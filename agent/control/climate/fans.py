"""Fan-failure detection for the climate controller.

Two ways, both optional:

* a monitor per fan (tachometer in rpm or Hz, or a current in A): once the fan has
  run `monitor_spinup_s`, its monitor must stay inside `monitor_min..monitor_max`;
  outside for `monitor_confirm_s` = that fan failed (alarm climate.fan_failed.<fan>;
  the controller starts a healthy fan in its place). Cleared by a later good run.
  A monitor without a good value is not judged.
* the indirect check (alarm climate.fan_failed): when the fans start, the
  temperature must fall `fan_check.drop_k` below its start value within
  `fan_check.after_s`. One verdict per run; a later fall during the run or a later
  run that cools clears it. With an `ambient` point, no verdict is given while the
  cabinet is within `ambient_margin_k` of the outside air (fans cannot cool below it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.control.alarms.manager import Condition
from agent.control.climate.parts import Switch, good_value
from agent.control.climate.settings import ClimateSettings, FanSettings

INF = math.inf


@dataclass(slots=True)
class _Run:
    """One run of the fans for the indirect check."""

    start: float  # monotonic time the run started (or was restarted near ambient)
    t_start: float  # the temperature then
    cooled: bool | None = None  # the verdict: None until given


class FanWatch:
    def __init__(self, settings: ClimateSettings, switches: Sequence[Switch]) -> None:
        self.settings = settings
        self.switches = switches
        n = len(settings.fans)
        self.failed = [False] * n  # per fan, by its monitor
        self._out_since: list[float | None] = [None] * n
        self.indirect_failed = False
        self._run: _Run | None = None  # the fans' current run (None: not running, or not judged)
        self._fail_text = ""

    def update(self, now: float, t: float | None, snapshot: Mapping[str, Any], wake: list[float]) -> None:
        """`t`: the cabinet temperature when it can be trusted (None: no indirect judgement now)."""
        cooling = False
        for i, f in enumerate(self.settings.fans):
            sw = self.switches[i]
            cooling = cooling or bool(sw.on)
            if f.monitor:
                self._monitor(i, f, f.monitor, sw, now, snapshot, wake)
        if self.settings.fan_check.after_s > 0:
            if not cooling:
                self._run = None
            elif t is not None:
                self._judge_run(now, t, snapshot, wake)

    def _monitor(
        self,
        i: int,
        f: FanSettings,
        monitor: str,
        sw: Switch,
        now: float,
        snapshot: Mapping[str, Any],
        wake: list[float],
    ) -> None:
        """Judge fan `i` by its `monitor` point while it runs."""
        switched_at = sw.changed_at
        if not sw.on or switched_at is None:  # off (a switch that is on has switched)
            self._out_since[i] = None
            return
        if now - switched_at < f.monitor_spinup_s:
            self._out_since[i] = None
            wake.append(switched_at + f.monitor_spinup_s)
            return
        v = _num(snapshot.get(monitor), INF)
        if v is None:
            return
        if not ((f.monitor_min is not None and v < f.monitor_min) or (f.monitor_max is not None and v > f.monitor_max)):
            self._out_since[i] = None
            self.failed[i] = False
            return
        since = self._out_since[i]
        if since is None:
            since = self._out_since[i] = now
        if now - since >= f.monitor_confirm_s:
            self.failed[i] = True
        else:
            wake.append(since + f.monitor_confirm_s)

    def _judge_run(self, now: float, t: float, snapshot: Mapping[str, Any], wake: list[float]) -> None:
        s, fc, run = self.settings, self.settings.fan_check, self._run
        if run is None:
            self._run = _Run(now, t)
            wake.append(now + fc.after_s)
            return
        if run.cooled is not True and t <= run.t_start - fc.drop_k:
            run.cooled, self.indirect_failed = True, False
        elif run.cooled is None:
            if now - run.start < fc.after_s:
                wake.append(run.start + fc.after_s)
                return
            amb = _num(snapshot.get(s.ambient), s.sensor.max_age_s) if s.ambient else None
            if amb is not None and t - amb < fc.ambient_margin_k:
                self._run = _Run(now, t)  # near ambient: the fans cannot cool, judge later
                return
            run.cooled, self.indirect_failed = False, True
            self._fail_text = (
                f"temperature not falling {fc.after_s:g} s after the fans started ({run.t_start:.1f} -> {t:.1f} °C)"
            )

    def key(self) -> tuple[tuple[bool, ...], bool]:
        return tuple(self.failed), self.indirect_failed

    def conditions(self, messages: Mapping[str, str]) -> list[Condition]:
        s = self.settings
        out: list[Condition] = []
        for i, f in enumerate(s.fans):
            if f.monitor:
                aid = f"climate.fan_failed.{f.name}"
                out.append(
                    Condition(
                        aid,
                        f.monitor,
                        "warning",
                        self.failed[i],
                        f"fan {f.name}: {f.monitor} outside {_window(f)} while running"
                        if self.failed[i]
                        else messages[aid],
                    )
                )
        if s.fan_check.after_s > 0:
            out.append(
                Condition(
                    "climate.fan_failed",
                    "climate",
                    "warning",
                    self.indirect_failed,
                    self._fail_text if self.indirect_failed else messages["climate.fan_failed"],
                )
            )
        return out


def _num(entry: Any, max_age_s: float) -> float | None:
    v, why = good_value(entry, max_age_s)
    if why is not None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _window(f: FanSettings) -> str:
    lo = "-inf" if f.monitor_min is None else f"{f.monitor_min:g}"
    hi = "inf" if f.monitor_max is None else f"{f.monitor_max:g}"
    return f"{lo}..{hi}"
