"""Opening an ingest database on PostgreSQL: connect, then check the schema version
(migrations.py): an empty database is created at the newest version, an older or newer
one is refused with what to do."""

from __future__ import annotations

from typing import Any

from tools.ingest.pg import migrations


class SchemaRefused(Exception):
    """The database's schema is not this program's; the message says what to do."""


def connect(dsn: str, shown: str) -> Any:
    """A psycopg connection (autocommit off) to a database at this program's schema.
    Raises psycopg.Error, ModuleNotFoundError, or SchemaRefused."""
    import psycopg  # deferred: heavy, and only for postgresql:// DSNs

    conn = psycopg.connect(dsn, autocommit=False)
    try:
        cur = conn.cursor()
        v = migrations.version(cur)
        conn.rollback()
        if v is None:
            _, v = migrations.apply(conn)  # a new database: created, not migrated (another may race: locked)
        if v > migrations.SCHEMA_VERSION:
            raise SchemaRefused(migrations.newer(v))
        if v < migrations.SCHEMA_VERSION:
            raise SchemaRefused(migrations.older(v, shown))
    except BaseException:
        conn.close()
        raise
    return conn
