"""Daily partitions of `readings` (docs/cloud.md §6.1): `readings_YYYYMMDD` holds the UTC day
[YYYY-MM-DD 00:00Z, next day 00:00Z); `readings_default` catches a reading no partition
covers (a far-off clock, a backlog older than the partitions), so a reading is never refused.

Daily, not monthly: at the example cabinet's measured 5.2 readings/s a fleet of 10,000
cabinets writes about 4.5 billion rows a day, and a month would be one table of 135
billion; a day keeps each partition's indexes in memory while it is written, and
retention works to the day by dropping whole tables (`drop_before`), never by DELETE.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

NAME = re.compile(r"^readings_(\d{8})$")
LOCK = 0x43414250  # pg_advisory_xact_lock key: one partition change at a time


def name_of(day: dt.date) -> str:
    return f"readings_{day:%Y%m%d}"


def bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    lo = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return lo, lo + dt.timedelta(days=1)


def existing(cur: Any) -> list[dt.date]:
    """The days that have a partition, ascending."""
    cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass"
    )
    days = [dt.datetime.strptime(m.group(1), "%Y%m%d").date() for (n,) in cur.fetchall() if (m := NAME.match(n))]
    return sorted(days)


def create(conn: Any, days: list[dt.date]) -> list[dt.date]:
    """Partitions for `days` that have none (rows of those days in the default partition move
    into them), in one transaction: the days created."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        have = set(existing(cur))
        made = []
        for day in sorted(set(days) - have):
            name, (lo, hi) = name_of(day), bounds(day)
            a, b = f"'{lo.isoformat()}'", f"'{hi.isoformat()}'"  # DDL takes no parameters; made from dates
            cur.execute(f"CREATE TABLE {name} (LIKE readings INCLUDING DEFAULTS)")
            cur.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (t >= {a} AND t < {b})")
            cur.execute(
                f"WITH moved AS (DELETE FROM readings_default WHERE t >= %s AND t < %s RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved",
                (lo, hi),
            )
            cur.execute(f"ALTER TABLE readings ATTACH PARTITION {name} FOR VALUES FROM ({a}) TO ({b})")
            cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")
            made.append(day)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return made


def ahead(conn: Any, today: dt.date, n: int) -> list[dt.date]:
    """Partitions for today and the next `n` days: the days created."""
    return create(conn, [today + dt.timedelta(days=i) for i in range(n + 1)])


def split_default(conn: Any) -> list[dt.date]:
    """Partitions for every day that has rows in the default partition (after a migration)."""
    cur = conn.cursor()
    cur.execute("SELECT DISTINCT (t AT TIME ZONE 'UTC')::date FROM readings_default")
    days = [d for (d,) in cur.fetchall()]
    conn.rollback()
    return create(conn, days) if days else []


def drop_before(conn: Any, day: dt.date) -> tuple[list[dt.date], int]:
    """Drop every partition that ends on or before `day` 00:00 UTC, and delete the default
    partition's rows older than that: (days dropped, default rows deleted)."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        gone = [d for d in existing(cur) if d < day]
        for d in gone:
            cur.execute(f"DROP TABLE {name_of(d)}")
        cur.execute("DELETE FROM readings_default WHERE t < %s", (bounds(day)[0],))
        deleted = int(cur.rowcount)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return gone, deleted


def maintain(conn: Any, now: float, done: set[dt.date]) -> list[dt.date]:
    """The partitions for the UTC day of `now` and the next one, once per day (`done`
    remembers the days seen): what an ingest worker calls as it runs; the days created."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    if today in done:
        return []
    made = ahead(conn, today, 1)
    done.add(today)
    return made
