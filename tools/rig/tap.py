"""What the agent produced, also when its uplink delivered and deleted it: a tap on its outbox.

With an uplink the agent deletes a reading from its outbox once the ingest acknowledged
its batch, so the outbox at the end of a run no longer says what was produced. Before
the agent starts, `prepare(path)` creates its outbox file as the agent itself would
(the outbox's own migrations, application id, schema version, WAL) plus one table of
the rig's, `rig_produced`, and a trigger that copies every row the agent inserts into it.
The agent opens the file as an outbox it made earlier and never looks at that table;
the copy happens inside the agent's own insert transaction, so a row is tapped exactly
when it is durable. The tap grows the file by about what the rows take (some 4 MB for
six hours of the example cabinet), far below the outbox's byte cap (256 MB by default).

`produced(path)` returns every tapped reading; `deliveries(produced, stored)` compares
them, point by point, with the readings stored at the ingest (matched on the point and
the millisecond: the batch format's resolution): produced, delivered (rows at the
ingest), duplicates (rows beyond one per produced reading).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from agent.model import Reading
from agent.outbox.schema import APP_ID, MIGRATIONS
from tools.rig import collect
from tools.rig.record import Delivery

TABLE = "rig_produced"
TAP = (
    f"CREATE TABLE {TABLE}(id INTEGER, prio INTEGER, point INTEGER, t REAL, v, q INTEGER, reason TEXT, nbytes INTEGER)",
    (
        f"CREATE TRIGGER rig_tap AFTER INSERT ON rows BEGIN INSERT INTO {TABLE} "
        "VALUES (NEW.id, NEW.prio, NEW.point, NEW.t, NEW.v, NEW.q, NEW.reason, NEW.nbytes); END"
    ),
)


class TapError(Exception):
    """The tap could not be prepared or read (names the file and why)."""


def prepare(path: Path) -> None:
    """Create a new outbox at `path` with the rig's tap (see the module's docstring)."""
    if path.exists():
        raise TapError(f"{path}: exists already; the tap needs a new outbox")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        c = sqlite3.connect(path, isolation_level=None)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("BEGIN")
            for v in sorted(MIGRATIONS):
                for stmt in MIGRATIONS[v]:
                    c.execute(stmt)
            for stmt in TAP:
                c.execute(stmt)
            c.execute(f"PRAGMA application_id={APP_ID}")
            c.execute(f"PRAGMA user_version={max(MIGRATIONS)}")
            c.execute("COMMIT")
        finally:
            c.close()
    except sqlite3.Error as e:
        raise TapError(f"{path}: cannot prepare the outbox tap: {e}") from None


def tapped(path: Path) -> bool:
    """Does the outbox at `path` have the rig's tap?"""
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone() is not None
        finally:
            c.close()
    except sqlite3.Error:
        return False


def produced(path: Path) -> list[Reading]:
    """Every reading the agent inserted into its tapped outbox, in time order."""
    try:
        return collect.readings(path, TABLE)
    except collect.CollectError as e:
        raise TapError(f"cannot read the outbox tap: {e}") from None


def pending_before(path: Path, t: float) -> int:
    """How many readings stamped at or before `t` are still in the outbox (not acknowledged); -1: unreadable."""
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return int(c.execute("SELECT count(*) FROM rows WHERE t <= ?", (t,)).fetchone()[0])
        finally:
            c.close()
    except sqlite3.Error:
        return -1


def deliveries(made: Iterable[Reading], stored: Iterable[tuple[str, float]]) -> dict[str, Delivery]:
    """Point -> Delivery: readings produced vs. rows `(point, t)` stored at the ingest."""
    want: dict[str, Counter[int]] = {}
    for r in made:
        want.setdefault(r.point, Counter())[round(r.t * 1000)] += 1
    got: dict[str, Counter[int]] = {}
    for point, t in stored:
        got.setdefault(point, Counter())[round(t * 1000)] += 1
    out = {}
    for point in sorted(set(want) | set(got)):
        w, g = want.get(point, Counter()), got.get(point, Counter())
        matched = sum((w & g).values())
        delivered = sum(g.values())
        out[point] = Delivery(sum(w.values()), delivered, delivered - matched)
    return out
