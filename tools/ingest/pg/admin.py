"""`cabinet ingest migrate` and `cabinet ingest partitions` on PostgreSQL (docs/cloud.md §6.1):
what they do, for the CLI to print. Messages name the database without its password."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tools.ingest.pg import migrations, partitions


class AdminError(Exception):
    """Refused: the message says why; `code` 2 (the user must act) or 1 (failed at run time)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def migrate(dsn: str, shown: str, today: dt.date) -> list[str]:
    """Apply every migration the database lacks, then partition what the default partition
    holds and create today's and tomorrow's partitions: the lines to print."""
    import psycopg  # deferred: only for postgresql:// DSNs

    try:
        conn = psycopg.connect(dsn, autocommit=False)
    except psycopg.Error as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise AdminError(f"{shown}: cannot connect: {why}", 1) from None
    try:
        before, after = migrations.apply(conn)
        split = partitions.split_default(conn)
        made = partitions.ahead(conn, today, 1)
    except ValueError as e:
        raise AdminError(f"{shown}: {e}") from None
    except psycopg.Error as e:
        raise AdminError(f"{shown}: migration failed, nothing changed: {e}", 1) from None
    finally:
        conn.close()
    if before == after:
        lines = [f"{shown}: ingest schema {after}, the newest this program knows: nothing to do"]
    else:
        lines = [f"{shown}: ingest schema {'none (empty database)' if before is None else before} -> {after}"]
    if split:
        lines.append(f"partitioned {len(split)} day(s) of stored readings: {split[0]} .. {split[-1]}")
    if made:
        lines.append(f"created partitions {', '.join(str(d) for d in made)}")
    return lines


def maintain(conn: Any, today: dt.date, ahead: int | None, drop_before: dt.date | None) -> list[str]:
    """Create partitions up to `ahead` days after today, drop those before `drop_before`:
    the lines to print (then every partition's day and rows)."""
    lines = []
    if ahead is not None:
        made = partitions.ahead(conn, today, ahead)
        lines.append(f"created {len(made)} partition(s)" + (f": {', '.join(map(str, made))}" if made else ""))
    if drop_before is not None:
        gone, deleted = partitions.drop_before(conn, drop_before)
        lines.append(
            f"dropped {len(gone)} partition(s) before {drop_before}"
            + (f": {', '.join(map(str, gone))}" if gone else "")
            + (f"; deleted {deleted} older row(s) of the default partition" if deleted else "")
        )
    cur = conn.cursor()
    days = partitions.existing(cur)
    cur.execute("SELECT count(*) FROM readings_default")
    stray = int(cur.fetchone()[0])
    conn.rollback()
    span = f"{days[0]} .. {days[-1]}" if days else "none"
    lines.append(f"partitions: {len(days)} day(s), {span}; readings outside them (default partition): {stray}")
    return lines
