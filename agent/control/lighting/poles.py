"""Per-pole monitoring of a segment with pole nodes (docs/pole-node.md), from each node's
status register and the segment's meter.

A segment's `poles` are pole_node devices in cable order from the cabinet. Each step:

* per pole, from its status bits (the node has already held each condition for 30 s):
  `lighting.<segment>.<pole>.lamp_failure`, `.driver_fault`, `.day_burner` (warnings),
  `.tilt` (critical: a pole knocked down), `.door` (warning: pole-base door open).
  A silent pole keeps its conditions as they were (it cannot be judged).
* a cable cut, told apart from lamp failures: the poles from some k to the end of the
  line all silent (at least two, or all of them), the segment's supply present (its
  voltage, when configured, at or above `supply_min_v`), and the segment's meter power
  below what the answering poles account for (expected × (1 − half the silent share)),
  while the segment is on at steady state; held for `confirm_s` ->
  ONE `lighting.<segment>.cable_cut` (critical) naming the section ("between pole4 and
  pole5"), not a lamp failure per silent pole; while such a silent run lasts, the
  segment meter's own lamp_failure (lighting/monitor.py) is not raised (the controller).
* cable theft: a pole-base door seen open (within the last `DOOR_MEMORY_S`: the pole may
  have gone silent since) while the segment is on and its meter power dropped below
  expected by more than `tolerance` -> `lighting.<segment>.cable_theft` (critical), at once.

Silence: the status point is missing, not of good quality, or older than `max_age_s`.
Pure: `mono` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.control.lighting.model import FailureDetection, Segment
from agent.control.lighting.monitor import FailureCheck

# status bits of input register 16 (docs/pole-node.md; boards/pole_node/regmap.py)
BITS = {"lamp_failure": 0x0001, "day_burner": 0x0002, "driver_fault": 0x0008, "tilt": 0x0010, "door": 0x0020}
SEVERITY = {"lamp_failure": "warning", "day_burner": "warning", "driver_fault": "warning", "tilt": "critical"}
SEVERITY["door"] = "warning"
MESSAGES = {
    "lamp_failure": "lamp failure (driven on, supply present, no current)",
    "day_burner": "day burner (burning while driven off or in daylight)",
    "driver_fault": "driver fault (current drawn, little power)",
    "tilt": "pole tilted beyond its alarm angle (knocked down?)",
    "door": "pole-base door open",
}
DOOR_MEMORY_S = 600.0
Change = tuple[str, str, bool, str]  # (condition id, severity, active, message)


def _status(sample: Any, max_age: float) -> int | None:
    """The status word of a good, fresh sample; None: the pole is silent."""
    if not (isinstance(sample, tuple) and len(sample) == 3):
        return None
    value, quality, age = sample
    quality = getattr(quality, "value", quality)
    if quality != "good" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not isinstance(age, (int, float)) or age > max_age:
        return None
    return int(value)


def _number(sample: Any, max_age: float) -> float | None:
    v = _status(sample, max_age) if isinstance(sample, tuple) else None
    return None if v is None else float(sample[0])


class PoleWatch:
    def __init__(self, segment: Segment, failure: FailureDetection) -> None:
        self.seg, self.f = segment, failure
        self.state: dict[str, dict[str, bool]] = {p: dict.fromkeys(BITS, False) for p in segment.poles}
        self.silent: list[str] = []
        self.tail: int | None = None  # first pole of a silent run to the end of the line (a cut?)
        self.cut = FailureCheck()
        self.theft = False
        self._door_seen: dict[str, float] = {}

    def judge(
        self, mono: float, on: bool, steady: bool, image: Mapping[str, Any], power: float | None, expected: float
    ) -> list[Change]:
        """Update every pole and the segment's cable checks; the conditions that changed."""
        seg, f = self.seg, self.f
        out: list[Change] = []
        silent = []
        for pole in seg.poles:
            word = _status(image.get(f"{pole}.status"), f.max_age_s)
            if word is None:
                silent.append(pole)
                continue
            last = self.state[pole]
            for kind, bit in BITS.items():
                now = bool(word & bit)
                if now != last[kind]:
                    last[kind] = now
                    cid = f"lighting.{seg.name}.{pole}.{kind}"
                    msg = f"{pole}: {MESSAGES[kind]}" if now else f"{pole}: {kind.replace('_', ' ')} cleared"
                    out.append((cid, SEVERITY[kind], now, msg))
            if last["door"]:
                self._door_seen[pole] = mono
        self.silent = silent
        first = self.tail = self._tail(silent)
        dropped = on and steady and power is not None and expected > 0
        volts = _number(image.get(seg.voltage), f.max_age_s) if seg.voltage else None
        supply = volts is None if not seg.voltage else volts is not None and volts >= f.supply_min_v
        cause: bool | None = None
        if first is not None and dropped and supply:
            share = (len(seg.poles) - first) / len(seg.poles)
            assert power is not None
            cause = power < expected * (1.0 - 0.5 * share)
        elif first is None:
            cause = False
        if self.cut.update(mono, cause, f.confirm_s):
            out.append(self._cut_change(first, power, expected, volts))
        doors = [p for p, t in self._door_seen.items() if mono - t <= DOOR_MEMORY_S]
        theft = bool(doors) and dropped and power is not None and power < expected * (1.0 - f.tolerance)
        if theft != self.theft:
            self.theft = theft
            msg = (
                f"cable theft suspected: pole-base door of {', '.join(doors)} opened while lit and the "
                f"segment's power dropped to {power:.0f} W of {expected:.0f} W"
                if theft
                else "cable theft suspicion cleared"
            )
            out.append((f"lighting.{seg.name}.cable_theft", "critical", theft, msg))
        return out

    def _tail(self, silent: list[str]) -> int | None:
        """Index of the first pole of a silent run reaching the end of the line (at least
        two poles, or all of them); None if there is none."""
        poles = self.seg.poles
        k = len(poles)
        while k > 0 and poles[k - 1] in silent:
            k -= 1
        run = len(poles) - k
        return k if run >= 2 or (run and k == 0) else None

    def _cut_change(self, first: int | None, power: float | None, expected: float, volts: float | None) -> Change:
        cid = f"lighting.{self.seg.name}.cable_cut"
        if not self.cut.active or first is None:
            return (cid, "critical", False, "cable cut cleared: every pole answers")
        poles = self.seg.poles
        where = f"between {poles[first - 1]} and {poles[first]}" if first else f"between the cabinet and {poles[0]}"
        supply = f", supply present ({volts:.0f} V)" if volts is not None else ""
        msg = (
            f"cable cut {where}: {poles[first]}..{poles[-1]} silent ({len(poles) - first} of {len(poles)} poles)"
            f"{supply}, power {power or 0:.0f} W of {expected:.0f} W expected"
        )
        return (cid, "critical", True, msg)
