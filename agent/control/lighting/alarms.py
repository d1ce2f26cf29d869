"""The lighting controller's alarm conditions: their ids, severities, sources and
messages, and which of them changed in a step.

Lighting emits the alarm framework's `Condition` (agent.control.alarms.model), as
climate does. Ids and sources:

| id | severity | source |
|---|---|---|
| lighting.lux_sensor | warning | lighting |
| lighting.clock | warning | lighting |
| lighting.failsafe | critical | lighting |
| lighting.boost.<program> | warning | lighting |
| lighting.<segment>.relay_failure / contactor_failure | critical | the segment |
| lighting.<segment>.dimming_failure | warning | the segment |
| lighting.<segment>.<failure kind> | lighting_monitor.SEVERITY | the segment |

A step reports a condition only when it appears active or its state flips; the
alarm layer holds the rest (debouncing beyond lighting's own delays, latching and
acknowledgement are the alarm layer's). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.control.alarms.model import Condition
from agent.control.lighting.monitor import SEVERITY, Monitor

SITE = "lighting"  # the source of the conditions that belong to no segment
NORMAL, CLOCK_UNKNOWN, BLIND = "normal", "failsafe:clock-unknown", "failsafe:no-clock-no-photocell"  # modes
READBACK_SEVERITY = {"relay_failure": "critical", "contactor_failure": "critical", "dimming_failure": "warning"}


class LightingConditions:
    """The last condition of each id; each method appends this step's changes to `changed`."""

    __slots__ = ("_last", "_segment")

    def __init__(self) -> None:
        self._last: dict[str, Condition] = {}
        self._segment: dict[str, str | None] = {}  # id -> its segment (None: the site's)

    def set(
        self, changed: list[Condition], cid: str, severity: str, active: bool, message: str, segment: str | None = None
    ) -> None:
        """Record a condition; a change (or a first active one) goes into `changed`."""
        old = self._last.get(cid)
        if old is None and not active:
            return
        if old is not None and old.active == active:
            return
        c = Condition(cid, SITE if segment is None else segment, severity, active, message)
        self._last[cid] = c
        self._segment[cid] = segment
        changed.append(c)

    def photocell(self, changed: list[Condition], message: str, fault: bool) -> None:
        self.set(changed, "lighting.lux_sensor", "warning", fault, message)

    def mode(self, changed: list[Condition], mode: str, clock_known: bool) -> None:
        """The clock and fail-safe conditions of a new mode."""
        if mode == CLOCK_UNKNOWN:
            clock = "clock unknown: lighting runs on the photocell"
        else:
            clock = "clock known" if clock_known else "clock unknown"
        self.set(changed, "lighting.clock", "warning", not clock_known, clock)
        self.set(
            changed,
            "lighting.failsafe",
            "critical",
            mode == BLIND,
            "no clock and no trusted photocell: all segments on" if mode == BLIND else "fail-safe left",
        )

    def boost(self, changed: list[Condition], program: str, point: str, max_s: float, capped: bool) -> None:
        self.set(
            changed,
            f"lighting.boost.{program}",
            "warning",
            capped,
            f"motion input {point} detecting for more than {max_s:g} s: boost ignored (sensor stuck?)"
            if capped
            else "motion input back to normal",
        )

    def readback(self, changed: list[Condition], segment: str, readback: Mapping[str, str | None]) -> None:
        """The read-back conditions of a segment (kind -> failure message, None when fine)."""
        for kind, msg in readback.items():
            self.set(
                changed,
                f"lighting.{segment}.{kind}",
                READBACK_SEVERITY[kind],
                msg is not None,
                msg or f"{kind.replace('_', ' ')} cleared",
                segment,
            )

    def judged(self, changed: list[Condition], segment: str, mon: Monitor, flipped: list[str]) -> None:
        """The failure-detection conditions whose check flipped."""
        for kind in flipped:
            chk = mon.checks[kind]
            self.set(
                changed,
                f"lighting.{segment}.{kind}",
                SEVERITY[kind],
                chk.active,
                chk.message if chk.active else f"{kind.replace('_', ' ')} cleared",
                segment,
            )

    def all(self) -> list[Condition]:
        return list(self._last.values())

    def shown(self) -> list[dict[str, Any]]:
        """The active conditions for the status: id, severity, active, message, segment."""
        out = []
        for cid, c in self._last.items():
            if c.active:
                segment = self._segment[cid]
                out.append(
                    {"id": cid, "severity": c.severity, "active": c.active, "message": c.message, "segment": segment}
                )
        return out
