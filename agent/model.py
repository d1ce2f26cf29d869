"""The pure data model every part of the agent speaks: Point, Reading, Quality.

A Reading is what a driver produced for one point at one time; a Point is the
configured description of a value (name, unit, reporting rules). QUALITY_CODES and
QUALITY_OF_CODE are the one table of a quality's number in the batch body
(docs/batch-format.md) and in the outbox's rows (agent/outbox/schema.py). Nothing
here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple


class Quality(str, enum.Enum):
    """How far a value can be trusted (names from DESIGN.md)."""

    GOOD = "good"  # read from the device just now, plausible
    STALE = "stale"  # last good value, but older than the point allows
    BAD = "bad"  # no usable value; `reason` says why
    SUBSTITUTED = "substituted"  # a value put in place of a failed one (fallback, manual)

    def __str__(self) -> str:  # "good", not "Quality.GOOD", in logs and JSON
        return self.value


# A quality's code on the wire (batch bodies) and on disk (outbox rows): never renumber.
# Keyed by Quality, which is a str enum, so "good" etc. find their code too.
QUALITY_CODES: Final[Mapping[Quality, int]] = {
    Quality.GOOD: 0,
    Quality.STALE: 1,
    Quality.BAD: 2,
    Quality.SUBSTITUTED: 3,
}
QUALITY_OF_CODE: Final[tuple[Quality, ...]] = tuple(sorted(QUALITY_CODES, key=QUALITY_CODES.__getitem__))


class Priority(enum.IntEnum):
    """Outbox priority classes: lower numbers are sent first and evicted last."""

    ALARM = 0
    EVENT = 1
    TELEMETRY = 2


class Reading(NamedTuple):
    """One value of one point at one time. `t` is wall-clock seconds since the epoch (UTC)."""

    point: str
    t: float
    value: Any
    quality: Quality
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Point:
    """A configured point: what the process image and the reporting rules know of a value.

    `name` is "<device>.<key>" for device points (e.g. "meter1.voltage_l1").
    `deadband` is an absolute change that must be exceeded before a new value is
    reported (0 = report every change); `heartbeat_s` forces a report at least that
    often even without change; `stale_after_s` is the age after which the process
    image marks the value stale.
    """

    name: str
    unit: str = ""
    source: str = ""  # device or input that produces it
    deadband: float = 0.0
    heartbeat_s: float = 300.0
    stale_after_s: float = 30.0
    description: str = ""
    writable: bool = False
