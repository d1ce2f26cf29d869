"""The readings between `Outbox.put()` and their commit: a FIFO of items, each one put's
rows with its priority, byte estimate, arrival time and serial number.

`take()` hands the oldest items to one commit (in flight) and `done()`/`put_back()`
settle them: committed, or back at the front after a failed commit. While commits
fail, `shed()` drops queued items (never those in flight) in the order of
`agent.outbox.policy.shed` and counts them by priority. A serial is the number of rows
appended up to and including the item, so "everything put before now is settled" is
`settled(serial)`. Plain data, no I/O: the asyncio front (agent/outbox/writer.py) owns it.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from agent.model import Priority
from agent.outbox.policy import Candidate, Kind, shed


class Item(NamedTuple):
    prio: int
    rows: list[tuple]
    nbytes: int
    mono: float
    serial: int


class WriteQueue:
    def __init__(self) -> None:
        self.items: collections.deque[Item] = collections.deque()
        self.inflight: list[Item] = []
        self.queued = self.flying = 0  # rows queued, rows in flight
        self.appended = self.committed = 0  # rows, since start
        self.dropped = [0, 0, 0]  # rows by priority, since start

    @property
    def uncommitted(self) -> int:
        return self.queued + self.flying

    def add(self, prio: int, rows: list[tuple], nbytes: int, mono: float) -> Item:
        self.appended += len(rows)
        item = Item(prio, rows, nbytes, mono, self.appended)
        self.items.append(item)
        self.queued += len(rows)
        return item

    def take(self, max_bytes: int) -> list[Item]:
        """The oldest items, at least one, until `max_bytes` (accounted) are taken: in flight."""
        out: list[Item] = []
        nb = 0
        while self.items and (not out or nb + self.items[0].nbytes <= max_bytes):
            item = self.items.popleft()
            out.append(item)
            nb += item.nbytes
        self.inflight = out
        self.flying = sum(len(it.rows) for it in out)
        self.queued -= self.flying
        return out

    def done(self) -> int:
        """The items in flight were committed; returns their rows."""
        n = self.flying
        self.committed += n
        self.inflight, self.flying = [], 0
        return n

    def put_back(self) -> None:
        """The commit failed: the items in flight go back to the front, in order."""
        self.items.extendleft(reversed(self.inflight))
        self.queued += self.flying
        self.inflight, self.flying = [], 0

    def drop_all(self) -> int:
        """Give up every queued item (closing while the disk refuses writes); returns rows."""
        n = 0
        for item in self.items:
            self.dropped[item.prio] += len(item.rows)
            n += len(item.rows)
        self.items.clear()
        self.queued = 0
        return n

    def shed(self, excess: int, prio: int, count: int) -> bool:
        """Drop queued items so that `excess` more rows fit, choosing among them and an
        incoming item of `prio` with `count` rows (the newest); False when the incoming
        item is the one to drop (it is counted as dropped)."""
        cands = [Candidate(Priority(it.prio), Kind.ROWS, it.serial, 0, len(it.rows)) for it in self.items]
        incoming = Candidate(Priority(prio), Kind.ROWS, self.appended + count, 0, count)
        chosen = shed(excess, [*cands, incoming])
        gone = {c.key for c in chosen if c is not incoming}
        if gone:
            kept: collections.deque[Item] = collections.deque()
            for it in self.items:
                if it.serial in gone:
                    self.dropped[it.prio] += len(it.rows)
                    self.queued -= len(it.rows)
                else:
                    kept.append(it)
            self.items = kept
        if incoming in chosen:
            self.dropped[prio] += count
            return False
        return True

    def first_mono(self) -> float | None:
        return self.items[0].mono if self.items else None

    def settled(self, serial: int) -> bool:
        """True when every row appended up to `serial` is committed or dropped."""
        first = self.inflight[0] if self.inflight else self.items[0] if self.items else None
        return first is None or first.serial - len(first.rows) >= serial
