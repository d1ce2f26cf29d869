"""The alarm framework's value types (re-exported by agent.control.alarms.manager, which
documents them): severities, the raw `Condition` every controller emits (climate
and lighting alike), the `Hysteresis` helper, an alarm's definition `AlarmDef`,
config overrides `AlarmOverride`, the `AlarmEvent` a transition produces, and
`as_condition`, which normalises the other condition shapes a source may report
(tuples, mappings, objects). Pure.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent.model import Quality, Reading

STATE_VERSION = 1


class Severity(str, enum.Enum):
    WARNING = "warning"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


SEVERITIES = tuple(s.value for s in Severity)
STATES = ("cleared", "active", "acknowledged", "latched")
SHOWN = ("active", "acknowledged", "latched")  # states in the active list


class Condition(NamedTuple):
    """A raw alarm condition as a controller sees it in one step (climate and lighting emit these)."""

    alarm_id: str
    source: str
    severity: str
    active: bool
    message: str = ""
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, keyed like the alarm list (`id`, not `alarm_id`)."""
        return {
            "id": self.alarm_id,
            "source": self.source,
            "severity": self.severity,
            "active": self.active,
            "message": self.message,
            "value": json_num(self.value),
        }


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """Switch on at `raise_at`, off at `clear_at`; the order of the two gives the direction."""

    raise_at: float
    clear_at: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.raise_at) and math.isfinite(self.clear_at)) or self.raise_at == self.clear_at:
            raise ValueError(
                f"hysteresis needs two different finite levels, got raise_at={self.raise_at}, clear_at={self.clear_at}"
            )

    @property
    def rising(self) -> bool:
        """True for a high alarm / a cooling thermostat (raise above, clear below)."""
        return self.raise_at > self.clear_at

    def next(self, active: bool, value: float) -> bool:
        """The new state for `value` given the current state `active`."""
        if self.raise_at > self.clear_at:
            return value > self.clear_at if active else value >= self.raise_at
        return value < self.clear_at if active else value <= self.raise_at


@dataclass(frozen=True)
class AlarmDef:
    id: str
    source: str = ""
    severity: str = "warning"
    raise_delay_s: float = 0.0
    clear_delay_s: float = 0.0
    latching: bool = False
    hysteresis: Hysteresis | None = None
    enabled: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"alarm id must be a non-empty string, got {self.id!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alarm {self.id}: severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        for key in ("raise_delay_s", "clear_delay_s"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"alarm {self.id}: {key} must be a finite number >= 0, got {v!r}")


@dataclass(frozen=True)
class AlarmOverride:
    """Changes from `[alarms."<id>"]`; None leaves the definition's value."""

    severity: str | None = None
    raise_delay_s: float | None = None
    clear_delay_s: float | None = None
    latching: bool | None = None
    enabled: bool | None = None

    def apply(self, d: AlarmDef) -> AlarmDef:
        changes = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(d, **changes) if changes else d


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    alarm_id: str
    source: str
    severity: str
    transition: str  # raised | acknowledged | cleared
    state: str  # active | acknowledged | latched | cleared (after the transition)
    message: str
    t: float  # wall time
    value: float | None = None
    count: int = 0
    by: str | None = None  # who acknowledged

    def to_dict(self) -> dict[str, Any]:
        d = {
            "alarm": self.alarm_id,
            "source": self.source,
            "severity": self.severity,
            "transition": self.transition,
            "state": self.state,
            "message": self.message,
            "t": self.t,
            "value": json_num(self.value),
            "count": self.count,
        }
        if self.by is not None:
            d["by"] = self.by
        return d

    def to_reading(self) -> Reading:
        """The event as an outbox Reading (put it with Priority.ALARM)."""
        return Reading(
            f"alarm.{self.alarm_id}",
            self.t,
            json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True),
            Quality.GOOD,
        )


def json_num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def as_condition(c: Any) -> Condition:
    """Normalise what a controller emitted into a Condition (see agent.control.alarms.manager)."""
    aid, source, severity, active, message, value = _fields(c)
    if not isinstance(aid, str) or not aid:
        raise ValueError(f"alarm condition without an alarm id: {c!r}")
    sev = severity.value if isinstance(severity, Severity) else severity
    if sev not in SEVERITIES:
        raise ValueError(f"alarm {aid}: severity must be one of {', '.join(SEVERITIES)}, got {sev!r}")
    if not isinstance(active, bool):
        raise ValueError(f"alarm {aid}: active must be true or false, got {active!r}")
    if isinstance(c, Condition) and sev is c.severity:
        return c
    return Condition(aid, source, sev, active, message, value)


def _fields(c: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(alarm_id, source, severity, active, message, value) of a condition in any accepted shape, unchecked."""
    if isinstance(c, tuple):  # a Condition, or a plain 4..6-tuple in its order
        if not 4 <= len(c) <= 6:
            raise ValueError(
                f"alarm condition tuple must be (alarm_id, source, severity, active[, message[, value]]), got {c!r}"
            )
        aid, source, severity, active, *rest = c
        return aid, source, severity, active, rest[0] if rest else "", rest[1] if len(rest) > 1 else None
    if isinstance(c, Mapping):
        return (
            c.get("alarm_id", c.get("id")),
            c.get("source", ""),
            c.get("severity", "warning"),
            c.get("active"),
            c.get("message", ""),
            c.get("value"),
        )
    aid = getattr(c, "alarm_id", None)
    if aid is None:
        aid = getattr(c, "id", None)
    source = getattr(c, "source", None) or getattr(c, "segment", None) or str(aid).split(".", 1)[0]
    return (
        aid,
        source,
        getattr(c, "severity", "warning"),
        getattr(c, "active", None),
        getattr(c, "message", "") or "",
        getattr(c, "value", None),
    )
