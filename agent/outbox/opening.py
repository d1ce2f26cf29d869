"""Opening a file as the outbox's store (for `agent.outbox.store.Store.open`): the checks
(the header, the application id, the schema version and SQLite's quick check) and the
migration. A file that is not an outbox this code may use is refused with an
`OutboxFileError` naming the file and what is wrong, and left untouched (never
replaced, never emptied).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.outbox.errors import OutboxCorrupt, OutboxError, OutboxForeign, OutboxFull, OutboxTooNew, is_full
from agent.outbox.schema import APP_ID, MAGIC, MIGRATIONS


def check_header(path: Path) -> None:
    """Refuse a non-empty file that does not start with SQLite's header."""
    with open(path, "rb") as f:
        head = f.read(100)
    if head and (len(head) < 100 or not head.startswith(MAGIC)):
        raise OutboxCorrupt(
            f"outbox {path}: not an SQLite database (corrupt or foreign file, "
            f"{path.stat().st_size} bytes); refusing to use or replace it"
        )


def inspect(c: sqlite3.Connection, path: Path, schema: int) -> tuple[bool, int]:
    """(new, version): whether the file is a new empty database, and its schema version.
    Raises for a corrupt, foreign or too new file."""
    where = f"outbox {path}"
    try:
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = sorted(r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        check = [r[0] for r in c.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as e:
        if is_full(e):  # a WAL database is not even readable without room for its index (-shm, 32 KiB)
            raise OutboxFull(f"{where}: the disk is full, SQLite cannot read the outbox ({e})") from e
        raise OutboxCorrupt(f"{where}: unreadable database ({e}); refusing to use or replace it") from e
    if check != ["ok"]:
        raise OutboxCorrupt(f"{where}: database is corrupt ({'; '.join(check[:3])}); refusing to use or replace it")
    new = app_id == 0 and version == 0 and not tables
    if not new and app_id != APP_ID:
        raise OutboxForeign(
            f"{where}: an SQLite database of something else (application_id {app_id:#x}, "
            f"tables {', '.join(tables) or 'none'}); refusing to use or replace it"
        )
    if version > schema:
        raise OutboxTooNew(
            f"{where}: schema version {version} is newer than this agent knows "
            f"({schema}); refusing to open it (downgrade would lose data)"
        )
    if not new and version < 1:
        raise OutboxCorrupt(f"{where}: outbox without a schema version; refusing to use or replace it")
    return new, version


def migrate(
    c: sqlite3.Connection,
    path: Path,
    tx: Callable[[Callable[[], Any]], Any],
    make_room: Callable[[], None],
) -> bool:
    """Check the file, switch it to WAL, migrate it to max(MIGRATIONS) and count this boot, in
    one transaction (`tx`). When the disk is full, `make_room()` and once more; if it still
    does not fit, a file that holds a current store opens anyway and False is returned (the
    boot is to be recorded with the first write that fits); a new or older file raises
    OutboxFull. True when the boot was recorded."""
    where = f"outbox {path}"
    schema = max(MIGRATIONS)  # the version this code writes: the migration table decides
    new, version = inspect(c, path, schema)
    mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise OutboxError(f"{where}: cannot use WAL journal mode (got {mode!r})")
    c.execute("PRAGMA synchronous=FULL")

    def body() -> None:
        for v in sorted(MIGRATIONS):
            if v > version:
                for stmt in MIGRATIONS[v]:
                    c.execute(stmt)
        if new:
            c.execute(f"PRAGMA application_id={APP_ID}")
        c.execute(f"PRAGMA user_version={schema}")
        c.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_epoch'")

    try:
        try:
            tx(body)
        except sqlite3.OperationalError as e:
            if not is_full(e):
                raise
            make_room()
            tx(body)
    except sqlite3.OperationalError as e:
        if not is_full(e) or new or version != schema:
            raise OutboxFull(f"{where}: the disk is full, cannot {'create' if new else 'migrate'} the outbox") from e
        return False
    if new:  # SQLite syncs the WAL's directory entry, not the new database file's
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return True
