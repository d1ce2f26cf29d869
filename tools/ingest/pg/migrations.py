"""Versioned migrations of the ingest's PostgreSQL schema (docs/cloud.md §6).

`meta.schema` holds the version. An empty database (no `meta` table) is created at the
newest version by the first command that opens it; an existing one is changed only by
`cabinet ingest migrate --db DSN` (`apply`), never by an ingest on its own: a city's DBA
decides when the schema changes, and takes the backup first. A database newer than this
program is refused by every command.

1. the first tables (keys, batches, readings with Unix-second doubles, replay windows, counters)
2. the point catalogues and their history
3. readings partitioned by day (`t timestamptz`, typed values: `num`, `flag`, `text`, `doc`
   jsonb), the catalogues' points and sites as tables, the views of the everyday questions
"""

from __future__ import annotations

from typing import Any

from tools.ingest.pg import views

BASE = [
    """CREATE TABLE cabinet_keys (kid BYTEA PRIMARY KEY, cabinet TEXT NOT NULL, public_key BYTEA NOT NULL,
         added_t DOUBLE PRECISION NOT NULL, revoked BOOLEAN NOT NULL DEFAULT FALSE)""",
    """CREATE TABLE batches (cabinet TEXT NOT NULL, seq BIGINT NOT NULL, boot BIGINT NOT NULL, kid BYTEA NOT NULL,
         received_t DOUBLE PRECISION NOT NULL, readings INTEGER NOT NULL, bytes INTEGER NOT NULL,
         envelope BYTEA NOT NULL, state TEXT NOT NULL DEFAULT 'new', error TEXT, PRIMARY KEY (cabinet, seq))""",
    "CREATE INDEX batches_new ON batches (received_t) WHERE state = 'new'",
    """CREATE TABLE readings (cabinet TEXT NOT NULL, seq BIGINT NOT NULL, point TEXT NOT NULL,
         t DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, num DOUBLE PRECISION, text TEXT, quality TEXT NOT NULL,
         reason TEXT)""",
    "CREATE INDEX readings_by_point ON readings (cabinet, point, t)",
    "CREATE TABLE replay (cabinet TEXT PRIMARY KEY, hwm BIGINT NOT NULL, bitmap TEXT NOT NULL)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]

CATALOGUES = [
    """CREATE TABLE catalogues (id BYTEA PRIMARY KEY, cabinet TEXT NOT NULL, ref BYTEA NOT NULL,
         points INTEGER NOT NULL, config_version BIGINT NOT NULL, received_t DOUBLE PRECISION NOT NULL,
         body BYTEA NOT NULL, envelope BYTEA NOT NULL)""",
    "CREATE INDEX catalogues_by_ref ON catalogues (cabinet, ref)",
    """CREATE TABLE catalogue_history (cabinet TEXT NOT NULL, from_t DOUBLE PRECISION NOT NULL, id BYTEA NOT NULL,
         PRIMARY KEY (cabinet, id))""",
]

READINGS_COLUMNS = "cabinet, seq, point, t, kind, num, flag, text, doc, quality, reason"

PARTITIONED = [
    "ALTER TABLE readings RENAME TO readings_v2",
    "ALTER INDEX readings_by_point RENAME TO readings_v2_by_point",
    """CREATE TABLE readings (cabinet TEXT NOT NULL, seq BIGINT NOT NULL, point TEXT NOT NULL,
         t TIMESTAMPTZ NOT NULL, kind CHAR(1) NOT NULL, num DOUBLE PRECISION, flag BOOLEAN, text TEXT, doc JSONB,
         quality TEXT NOT NULL, reason TEXT) PARTITION BY RANGE (t)""",
    "CREATE TABLE readings_default PARTITION OF readings DEFAULT",
    "CREATE INDEX readings_by_point ON readings (cabinet, point, t)",
    f"""INSERT INTO readings ({READINGS_COLUMNS})
         SELECT cabinet, seq, point, to_timestamp(t), kind, CASE WHEN kind = 'b' THEN NULL ELSE num END,
                CASE WHEN kind = 'b' THEN num <> 0 END,
                CASE WHEN kind = 's' AND left(text, 1) = '{{' THEN NULL ELSE text END,
                CASE WHEN kind = 's' AND left(text, 1) = '{{' THEN text::jsonb END, quality, reason
         FROM readings_v2""",
    "DROP TABLE readings_v2",
    """CREATE TABLE catalogue_points (catalogue BYTEA NOT NULL REFERENCES catalogues (id), idx INTEGER NOT NULL,
         point TEXT NOT NULL, unit TEXT NOT NULL, kind TEXT NOT NULL, decimals INTEGER, device TEXT NOT NULL,
         bus TEXT NOT NULL, role TEXT NOT NULL, description TEXT NOT NULL, PRIMARY KEY (catalogue, idx))""",
    """CREATE TABLE catalogue_sites (catalogue BYTEA PRIMARY KEY REFERENCES catalogues (id), board TEXT NOT NULL,
         latitude DOUBLE PRECISION NOT NULL, longitude DOUBLE PRECISION NOT NULL, timezone TEXT NOT NULL)""",
    *views.CREATE,
]

MIGRATIONS: dict[int, list[str]] = {1: BASE, 2: CATALOGUES, 3: PARTITIONED}
SCHEMA_VERSION = max(MIGRATIONS)
MIGRATE_LOCK = 0x43414249  # pg_advisory_xact_lock key: one migration at a time


def version(cur: Any) -> int | None:
    """The database's schema version, or None for an empty database (no `meta` table)."""
    cur.execute("SELECT to_regclass('meta') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT value FROM meta WHERE key = 'schema'")
    row = cur.fetchone()
    if row is None or not str(row[0]).isdigit():
        raise ValueError(f"meta.schema is {row[0] if row else 'missing'}, not a version number")
    return int(row[0])


def apply(conn: Any, target: int = SCHEMA_VERSION) -> tuple[int | None, int]:
    """Migrate to `target` in one transaction (all or nothing): (version before, version after).
    Refuses (ValueError) a database newer than this program."""
    cur = conn.cursor()
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
    before = version(cur)
    if before is not None and before > SCHEMA_VERSION:
        conn.rollback()
        raise ValueError(newer(before))
    start = 0 if before is None else before
    for v in range(start + 1, target + 1):
        for sql in MIGRATIONS[v]:
            cur.execute(sql)
        if v == 1:
            cur.execute("INSERT INTO meta (key, value) VALUES ('schema', '1')")
        cur.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (str(v),))
    if start < 3 <= target:
        from tools.ingest.pg.catalogue_rows import backfill  # the catalogues stored before version 3

        backfill(cur)
    conn.commit()
    return before, max(start, target)


def newer(v: int) -> str:
    return (
        f"the database has ingest schema {v}, newer than this program knows ({SCHEMA_VERSION}): "
        "use the cabinet-agent version that migrated it"
    )


def older(v: int, dsn: str) -> str:
    return (
        f"the database has ingest schema {v}, older than this program's ({SCHEMA_VERSION}): "
        f"back it up, then run `cabinet ingest migrate --db {dsn}`"
    )
