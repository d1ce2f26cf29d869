"""The outbox's decisions, without I/O: when to seal a batch, what to evict when the
store is over its byte cap, how much of its filesystem the store may use, and what to
drop from the in-memory queue while the disk refuses writes.

Nothing here touches SQLite, asyncio, the filesystem or a clock: ages, byte totals and
filesystem figures come in as numbers, decisions go out as values, so all of it is
tested with plain numbers (tests/test_outbox.py, tests/test_outbox_disk.py) and applied
by `agent.outbox.store.Store` and `agent.outbox.writer.Outbox`.

* `SealPolicy.due(...)`: the uplink asks it whether to seal a batch now.
* `EvictionPolicy`: given the stored byte total and candidates (unsealed rows or
  whole sealed-but-unacked batches), returns what to delete. Order: unsealed
  TELEMETRY rows oldest first, then sealed TELEMETRY batches oldest first, then the
  same for EVENT, and ALARM data only when nothing else is left. A sealed batch is
  one candidate: it is evicted whole or not at all.
* `DiskPolicy`: from the filesystem's free bytes and the bytes the outbox's own files
  hold at start, a `DiskPlan` (the byte cap that fits the disk, the reserve file that
  is released when the disk is full, WAL checkpoint and transaction sizes); the cap
  after the disk was found full; when the disk has room again.
* `shed(...)`: while commits fail, which queued readings to drop (same order as
  eviction: oldest telemetry first, alarms last) so that producers never wait.
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


# -- the disk ------------------------------------------------------------------------------------------------
KIB, MIB = 2**10, 2**20
FILE_FACTOR = 1.25  # file bytes per accounted byte (tools.bench outbox: 59.1 / 50.2 = 1.18 with the WAL)
SHM_BYTES = 64 * KIB  # the WAL index (-shm) with a bounded WAL, and page slack
MIN_CAP = 64 * KIB


@dataclass(frozen=True, slots=True)
class DiskPlan:
    """How the store uses its filesystem. `cap`: accounted bytes it keeps to; `reserve`:
    bytes held in a file beside it and released when the disk is full (room for SQLite
    to checkpoint and to commit the eviction that frees space); `wal_pages`: checkpoint
    the WAL at this many pages; `wal_limit`: bytes the WAL is truncated to after a
    checkpoint; `tx_bytes`: accounted bytes the writer commits in one transaction at
    most; `budget`: the share of the filesystem all of it is planned in."""

    cap: int
    reserve: int
    wal_pages: int
    wal_limit: int
    tx_bytes: int
    budget: int


class DiskPolicy:
    """Fit the store to the filesystem it is on.

    budget = share x (free bytes + bytes of the outbox's own files), measured at start:
    the outbox plans to use at most that share of what it could have, so a small
    filesystem (or one shared with logs and updates) keeps room for the rest. Out of
    the budget come the WAL (checkpointed at budget/16, at most 1000 pages), the
    reserve (budget/6, 256 KiB..8 MiB: it covers the WAL's frames plus an eviction) and
    the index file; what is left, divided by FILE_FACTOR, is the cap unless max_bytes
    is lower. On a large disk: 1000-page WAL, 8 MiB reserve, cap = max_bytes."""

    def __init__(self, max_bytes: int, share: float = 0.5) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.max_bytes, self.share = max_bytes, share

    def plan(self, free_bytes: int, own_bytes: int, page_size: int = 4096, stored: int = 0) -> DiskPlan:
        """The plan for a filesystem with `free_bytes` available and `own_bytes` in the
        outbox's files (database, WAL, index, reserve), holding `stored` accounted bytes.
        The cap is never below `stored` (up to max_bytes): a restart on a full disk does
        not evict what the store already holds; the full-disk path lowers it if needed."""
        budget = int(max(0, free_bytes + own_bytes) * self.share)
        wal_pages = max(16, min(1000, budget // 16 // page_size))
        wal_limit = 2 * wal_pages * page_size
        reserve = max(256 * KIB, min(8 * MIB, budget // 6))
        room = (budget - wal_limit - reserve - SHM_BYTES) / FILE_FACTOR
        return DiskPlan(
            cap=min(self.max_bytes, max(MIN_CAP, int(room), stored)),
            reserve=reserve,
            wal_pages=wal_pages,
            wal_limit=wal_limit,
            tx_bytes=max(16 * KIB, wal_pages * page_size // 2),
            budget=budget,
        )

    @staticmethod
    def lowered(cap: int, stored: int) -> int:
        """The cap once the disk was found full at `stored` accounted bytes: a tenth below
        what is stored, so the next commits reuse pages the store already holds instead of
        asking the disk for more, never below MIN_CAP. A cap already that low stays: failed
        tries while nothing could be evicted do not compound."""
        return min(cap, max(MIN_CAP, int(stored * 0.9)))

    def after_full(self, plan: DiskPlan, free: int, cap: int, stored: int, incoming: int) -> tuple[int, int]:
        """(cap, reserve) once the disk was found full and the store released its reserve and
        checkpointed its WAL, with `free` bytes free now. The reserve is what the next recovery
        needs (a checkpoint grows the database file by at most the WAL's new pages, then the
        eviction's frames), `plan.wal_limit`, or all that is free when less; the store may use
        the rest. With room for two more commits beyond the reserve it keeps its cap; else it
        stops growing: the cap goes a tenth below what is stored (`lowered`)."""
        reserve = min(free, plan.wal_limit)
        if free - reserve >= 2 * int(max(incoming, plan.tx_bytes) * FILE_FACTOR):
            return cap, reserve
        return self.lowered(cap, stored), reserve

    @staticmethod
    def roomy(free_bytes: int, plan: DiskPlan) -> bool:
        """True when the disk has room again: the reserve and a full WAL fit in what is free."""
        return free_bytes >= plan.reserve + plan.wal_limit


def shed(excess: int, queued: Iterable[Candidate]) -> list[Candidate]:
    """Queued items to drop to free `excess` readings of queue room while the store cannot
    commit: `count` is each item's readings, `key` its arrival order (the incoming item is
    the newest). Same order as eviction: oldest telemetry first, then events, alarms last."""
    if excess <= 0:
        return []
    rank = {(prio, Kind.ROWS): n for n, (prio, kind) in enumerate(EVICTION_ORDER) if kind is Kind.ROWS}
    chosen: list[Candidate] = []
    freed = 0
    for c in sorted(queued, key=lambda c: (rank[(Priority(c.prio), Kind.ROWS)], c.key)):
        if freed >= excess:
            break
        chosen.append(c)
        freed += c.count
    return chosen
