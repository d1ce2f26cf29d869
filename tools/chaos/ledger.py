"""The suite's bookkeeping, pure: which readings were durable, what the ingest stored,
what was lost or duplicated, how long each recovery took. No I/O, no clock.

A reading is identified as the batch format carries it, by (point, t in whole
milliseconds) (docs/batch-format.md: `t` is rounded to milliseconds). The outbox gives
each row an id as well, so two rows that happen to share a point and a millisecond
are still two readings: the ledger keeps, per (point, ms), the set of outbox row ids
seen, and the ingest must then hold that many rows of it, no more, no fewer.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Key = tuple[str, int]  # (point, t in milliseconds)


def key_of(point: str, t: float) -> Key:
    """A reading's identity as it travels: the batch codec rounds t to milliseconds."""
    return point, round(t * 1000)


@dataclass
class Tally:
    """The outcome of comparing the outbox rows seen with the rows the ingest stored."""

    readings: int  # outbox rows ever seen (durable readings)
    stored: int  # rows at the ingest
    lost: int  # seen, not stored
    duplicated: int  # stored more often than seen (or twice, if never seen)
    unseen: int  # stored rows never seen in the outbox (committed and acknowledged between two looks)
    lost_examples: list[Key] = field(default_factory=list)
    duplicated_examples: list[Key] = field(default_factory=list)


class Ledger:
    """Every outbox row ever seen, by (point, ms) and outbox row id."""

    def __init__(self) -> None:
        self.rows: dict[Key, set[int]] = {}
        self.count = 0

    def see(self, rows: Iterable[tuple[int, str, float]]) -> int:
        """Record (row id, point, t) rows of one look at the outbox; returns how many were new."""
        new = 0
        for rid, point, t in rows:
            ids = self.rows.setdefault(key_of(point, t), set())
            if rid not in ids:
                ids.add(rid)
                new += 1
        self.count += new
        return new

    def missing(self, stored: Counter[Key]) -> int:
        """How many rows seen are not (yet) among `stored`."""
        return sum(max(0, len(ids) - stored.get(k, 0)) for k, ids in self.rows.items())

    def compare(self, stored: Iterable[tuple[str, float]], examples: int = 5) -> Tally:
        """Lost: seen in the outbox, not stored. Duplicated: stored more often than seen."""
        counts = stored_counts(stored)
        lost_keys = [k for k, ids in self.rows.items() if counts.get(k, 0) < len(ids)]
        lost = sum(len(self.rows[k]) - counts.get(k, 0) for k in lost_keys)
        dup_keys = [k for k, n in counts.items() if n > max(1, len(self.rows.get(k, ())))]
        duplicated = sum(counts[k] - max(1, len(self.rows.get(k, ()))) for k in dup_keys)
        unseen = sum(n for k, n in counts.items() if k not in self.rows)
        return Tally(
            readings=self.count,
            stored=sum(counts.values()),
            lost=lost,
            duplicated=duplicated,
            unseen=unseen,
            lost_examples=sorted(lost_keys)[:examples],
            duplicated_examples=sorted(dup_keys)[:examples],
        )


def stored_counts(stored: Iterable[tuple[str, float]]) -> Counter[Key]:
    return Counter(key_of(p, t) for p, t in stored)


@dataclass(frozen=True)
class Fault:
    """One injected fault: when it struck, when the part was back (restarted), and until
    when its recovery may be credited to it (the next fault, or the end of the run)."""

    kind: str  # kill | ingest | broker | clock
    struck_t: float
    back_t: float


def recoveries(faults: Sequence[Fault], batch_times: Sequence[float], end_t: float) -> list[float | None]:
    """Seconds from each fault's restart to the first batch the ingest stored (and so
    acknowledged) after it, or None when none came before the next fault struck (or
    before `end_t` for the last). `batch_times` sorted ascending; faults in time order."""
    out: list[float | None] = []
    for i, f in enumerate(faults):
        until = faults[i + 1].struck_t if i + 1 < len(faults) else end_t
        j = bisect.bisect_right(batch_times, f.back_t)
        out.append(batch_times[j] - f.back_t if j < len(batch_times) and batch_times[j] <= until else None)
    return out


def summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """p50 and max of the recoveries that happened, and how many did not."""
    done = [v for v in values if v is not None]
    return {
        "n": len(done),
        "p50": round(statistics.median(done), 2) if done else None,
        "max": round(max(done), 2) if done else None,
        "none_before_next_fault": len(values) - len(done),
    }
