"""The outbox's decisions, without I/O: when to seal a batch, and what to evict when
the store is over its byte cap.

Owns two plain objects. Neither touches SQLite, asyncio or a clock: ages and byte
totals come in as numbers, decisions go out as values, so both are tested with plain
numbers (tests/test_outbox.py) and applied by `agent.outbox.writer.Outbox`.

* `SealPolicy.due(...)`: the uplink asks it whether to seal a batch now.
* `EvictionPolicy`: given the stored byte total and candidates (unsealed rows or
  whole sealed-but-unacked batches), returns what to delete. Order: unsealed
  TELEMETRY rows oldest first, then sealed TELEMETRY batches oldest first, then the
  same for EVENT, and ALARM data only when nothing else is left. A sealed batch is
  one candidate: it is evicted whole or not at all.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from agent.model import Priority


class SealPolicy:
    """Seal when a full batch is pending, when the oldest pending reading has waited
    `max_age_s`, or when an alarm or event has waited `alarm_delay_s` (a short delay
    lets readings that belong together share one batch)."""

    def __init__(self, max_readings: int = 2000, max_age_s: float = 30.0, alarm_delay_s: float = 1.0) -> None:
        if max_readings < 1:
            raise ValueError(f"max_readings must be >= 1, got {max_readings}")
        if not max_age_s >= 0 or not alarm_delay_s >= 0:
            raise ValueError(f"max_age_s and alarm_delay_s must be >= 0, got {max_age_s}, {alarm_delay_s}")
        self.max_readings = max_readings
        self.max_age_s = max_age_s
        self.alarm_delay_s = alarm_delay_s

    def due(
        self,
        pending_rows: int,
        oldest_pending_age_s: float | None,
        highest_pending_priority: Priority | None,
        highest_priority_age_s: float | None = None,
    ) -> bool:
        """True when a batch should be sealed now.

        `oldest_pending_age_s` is how long the oldest unsealed reading has waited
        (None when nothing is pending). `highest_priority_age_s`, when given, is how
        long the oldest pending reading of `highest_pending_priority` has waited; the
        alarm delay is measured on it (without it, on the oldest pending reading).
        """
        if pending_rows <= 0:
            return False
        if pending_rows >= self.max_readings:
            return True
        age = oldest_pending_age_s
        if age is not None and age >= self.max_age_s:
            return True
        if highest_pending_priority is not None and highest_pending_priority <= Priority.EVENT:
            urgent_age = age if highest_priority_age_s is None else highest_priority_age_s
            return urgent_age is not None and urgent_age >= self.alarm_delay_s
        return False


class Kind(str, enum.Enum):
    """What an eviction candidate is: unsealed rows, or one whole sealed batch."""

    ROWS = "rows"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something the store could delete. `key` orders candidates of one class by age
    (row id or batch sequence number: smaller is older); `count` is readings."""

    prio: Priority
    kind: Kind
    key: int
    nbytes: int
    count: int = 1


EVICTION_ORDER: tuple[tuple[Priority, Kind], ...] = tuple(
    (prio, kind) for prio in sorted(Priority, reverse=True) for kind in (Kind.ROWS, Kind.BATCH)
)


class EvictionPolicy:
    """Keep the store at or under `max_bytes` by deleting the least valuable data first."""

    order = EVICTION_ORDER  # classes in the order they are given up

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self._rank = {cls: n for n, cls in enumerate(self.order)}

    def excess(self, total_bytes: int, cap: int | None = None) -> int:
        """Bytes to free so that `total_bytes` fits the cap (max_bytes, or a lower `cap`)."""
        limit = self.max_bytes if cap is None else min(cap, self.max_bytes)
        return max(0, total_bytes - limit)

    def rank(self, c: Candidate) -> tuple[int, int]:
        return self._rank[(Priority(c.prio), Kind(c.kind))], c.key

    def choose(self, excess: int, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The candidates to delete, in eviction order, until at least `excess` bytes
        are freed (all of them when they are not enough). Candidates may come in any
        order and mix classes; a store may also offer one class at a time."""
        if excess <= 0:
            return []
        chosen: list[Candidate] = []
        freed = 0
        for c in sorted(candidates, key=self.rank):
            if freed >= excess:
                break
            chosen.append(c)
            freed += c.nbytes
        return chosen


def age(now: float, since: float | None) -> float | None:
    """Age of something that started at monotonic `since` (None: nothing; -inf: unknown, very old)."""
    if since is None:
        return None
    return math.inf if since == -math.inf else max(0.0, now - since)
