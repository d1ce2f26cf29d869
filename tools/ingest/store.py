"""Ingest storage: the key registry, stored batches and readings, replay windows,
counters. SQLite (a file path) by default, PostgreSQL when given a postgresql:// DSN
(its own schema, versioned migrations, daily partitions and bulk COPY: tools/ingest/pg/).

Log first: a verified batch is stored as its signed envelope (so it can be verified
again later, e.g. to prove which cabinet produced a reading) in one transaction with
the other batches of its group (`commit`), and the caller acknowledges it only after
that commit. `materialize` then turns stored batches into reading rows in bulk,
once each (state new -> done, or bad when the body cannot be decoded), also when
several workers materialize at once: only the one that moves a batch out of state
new writes its rows. The (cabinet, seq) primary key of `batches` makes storing a
batch twice impossible even if two ingest workers race; replay windows are the fast
path in front of it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

SCHEMA_VERSION = 2  # SQLite's: 2, the point catalogues (docs/batch-format.md §8); PostgreSQL: pg/migrations.py

TABLES = [
    """CREATE TABLE IF NOT EXISTS cabinet_keys (kid BYTEA PRIMARY KEY, cabinet TEXT NOT NULL,
         public_key BYTEA NOT NULL, added_t DOUBLE PRECISION NOT NULL, revoked BOOLEAN NOT NULL DEFAULT FALSE)""",
    """CREATE TABLE IF NOT EXISTS batches (cabinet TEXT NOT NULL, seq BIGINT NOT NULL, boot BIGINT NOT NULL,
         kid BYTEA NOT NULL, received_t DOUBLE PRECISION NOT NULL, readings INTEGER NOT NULL, bytes INTEGER NOT NULL,
         envelope BYTEA NOT NULL, state TEXT NOT NULL DEFAULT 'new', error TEXT, PRIMARY KEY (cabinet, seq))""",
    "CREATE INDEX IF NOT EXISTS batches_new ON batches (received_t) WHERE state = 'new'",
    """CREATE TABLE IF NOT EXISTS readings (cabinet TEXT NOT NULL, seq BIGINT NOT NULL, point TEXT NOT NULL,
         t DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, num DOUBLE PRECISION, text TEXT, quality TEXT NOT NULL,
         reason TEXT)""",
    "CREATE INDEX IF NOT EXISTS readings_by_point ON readings (cabinet, point, t)",
    """CREATE TABLE IF NOT EXISTS replay (cabinet TEXT PRIMARY KEY, hwm BIGINT NOT NULL, bitmap TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalogues (id BYTEA PRIMARY KEY, cabinet TEXT NOT NULL, ref BYTEA NOT NULL,
         points INTEGER NOT NULL, config_version BIGINT NOT NULL, received_t DOUBLE PRECISION NOT NULL,
         body BYTEA NOT NULL, envelope BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS catalogues_by_ref ON catalogues (cabinet, ref)",
    """CREATE TABLE IF NOT EXISTS catalogue_history (cabinet TEXT NOT NULL, from_t DOUBLE PRECISION NOT NULL,
         id BYTEA NOT NULL, PRIMARY KEY (cabinet, id))""",
]


class StoreError(RuntimeError):
    """The database cannot be used: a missing driver, a refused connection, a file that is not one.

    `code` is the exit code a command reports it with: 2 for what the user must fix in the
    installation or the arguments, 1 for a failure at run time."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


PSYCOPG_MISSING = (
    "PostgreSQL needs the psycopg package, which is not installed: pip install -e '.[ingest]' (in the checkout)"
)


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", dsn)


class Connection(Protocol):
    """What Store uses of a DB-API connection (sqlite3's and psycopg's are both one)."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class StoredBatch:
    cabinet: str
    seq: int
    boot: int
    kid: bytes
    received_t: float
    count: int  # points in the body (readings are counted when materialized)
    envelope: bytes  # the signed COSE_Sign1 bytes as received


@dataclass
class StoredCatalogue:
    id: bytes  # SHA-256 of body
    cabinet: str
    points: int
    config_version: int
    received_t: float
    body: bytes  # the catalogue's deterministic CBOR
    envelope: bytes  # the signed COSE_Sign1 bytes as received


@dataclass
class Decoded:
    """A stored batch decoded by `Store.decode_new`: its readings-table rows, or the decoder's error."""

    cabinet: str
    seq: int
    rows: list[tuple]  # (point, t, kind, num, text, quality, reason)
    error: str | None = None


@dataclass
class Commit:
    """What one transaction writes: new batches, window states, counter increments."""

    batches: list[StoredBatch] = field(default_factory=list)
    catalogues: list[StoredCatalogue] = field(default_factory=list)
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


class Store:
    """DB-API wrapper for both engines; `ph` is the parameter placeholder."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pg = dsn.startswith(("postgresql://", "postgres://"))
        self.conn: Connection
        self._names: dict[tuple[str, bytes], list[str]] = {}  # (cabinet, catalogue ref) -> point names
        self._days: set[Any] = set()  # PostgreSQL: the days whose partitions exist (maintain)
        db_errors: tuple[type[Exception], ...] = (sqlite3.Error, ValueError)
        if self.pg:
            try:
                import psycopg  # deferred: heavy, and only for postgresql:// DSNs
            except ModuleNotFoundError:
                raise StoreError(f"{redact(dsn)}: {PSYCOPG_MISSING}", code=2) from None
            from tools.ingest.pg.connect import SchemaRefused, connect

            try:
                self.conn = connect(dsn, redact(dsn))
            except SchemaRefused as e:
                raise StoreError(f"{redact(dsn)}: {e}", code=2) from None
            except psycopg.OperationalError as e:
                why = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                raise StoreError(f"{redact(dsn)}: cannot connect: {why}") from None
            except (psycopg.Error, ValueError) as e:
                raise StoreError(f"{redact(dsn)}: not an ingest database: {e}") from None
            self.ph = "%s"
            return
        else:
            try:
                lite = sqlite3.connect(dsn, isolation_level=None, check_same_thread=False)
                lite.execute("PRAGMA journal_mode=WAL")
                lite.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise StoreError(f"{dsn}: cannot open the SQLite database: {e}") from None
            self.conn = lite
            self.ph = "?"
        try:
            self._init()
        except db_errors as e:
            self.conn.close()
            raise StoreError(f"{redact(dsn)}: not an ingest database: {e}") from None

    def sql(self, sql: str) -> str:
        """`sql` (written with ? and PostgreSQL's types) in this engine's dialect."""
        sql = sql.replace("?", self.ph)
        return sql if self.pg else sql.replace("BYTEA", "BLOB").replace("DOUBLE PRECISION", "REAL")

    def begin(self) -> Any:
        """A cursor in a write transaction (SQLite: BEGIN IMMEDIATE)."""
        cur = self.conn.cursor()
        if not self.pg:
            cur.execute("BEGIN IMMEDIATE")
        return cur

    def _init(self) -> None:  # SQLite (PostgreSQL: pg/migrations.py)
        cur = self.begin()
        for t in TABLES:
            cur.execute(self.sql(t))
        cur.execute(self.sql("SELECT value FROM meta WHERE key = 'schema'"))
        row = cur.fetchone()
        if row is None:
            cur.execute(self.sql("INSERT INTO meta (key, value) VALUES ('schema', ?)"), (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            self.conn.rollback()
            raise StoreError(f"ingest database schema {row[0]} is newer than this program ({SCHEMA_VERSION})", code=2)
        elif int(row[0]) < SCHEMA_VERSION:  # 1 -> 2: the catalogue tables, created above
            cur.execute(self.sql("UPDATE meta SET value = ? WHERE key = 'schema'"), (str(SCHEMA_VERSION),))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    # key registry --------------------------------------------------------------
    def add_key(self, cabinet: str, kid: bytes, public_key: bytes, now: float) -> None:
        cur = self.begin()
        cur.execute(self.sql("SELECT cabinet FROM cabinet_keys WHERE kid = ?"), (kid,))
        row = cur.fetchone()
        if row is not None and row[0] != cabinet:
            self.conn.rollback()
            raise ValueError(f"key {kid.hex()} is registered for cabinet {row[0]}, not {cabinet}")
        if row is None:
            cur.execute(
                self.sql("INSERT INTO cabinet_keys (kid, cabinet, public_key, added_t) VALUES (?, ?, ?, ?)"),
                (kid, cabinet, public_key, now),
            )
        self.conn.commit()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """A read outside any write transaction (PostgreSQL: ended at once, no stale snapshot,
        and after a failure too, so the connection stays usable)."""
        cur = self.conn.cursor()
        try:
            cur.execute(self.sql(sql), tuple(args))
            rows = cur.fetchall()
        finally:
            if self.pg:
                self.conn.rollback()
        return rows

    def keys(self) -> dict[bytes, tuple[str, bytes]]:
        rows = self._read("SELECT kid, cabinet, public_key FROM cabinet_keys WHERE NOT revoked")
        return {bytes(k): (c, bytes(p)) for k, c, p in rows}

    # replay windows --------------------------------------------------------------
    def windows(self) -> dict[str, tuple[int, int]]:
        return {c: (int(h), int(b, 16)) for c, h, b in self._read("SELECT cabinet, hwm, bitmap FROM replay")}

    def has_batch(self, cabinet: str, seq: int) -> bool:
        return bool(self._read("SELECT 1 FROM batches WHERE cabinet = ? AND seq = ?", (cabinet, seq)))

    # the one write path ----------------------------------------------------------
    def commit(self, c: Commit) -> list[StoredBatch]:
        """Write everything of `c` in one transaction; returns the batches actually new
        (a batch another worker stored first is dropped and counted as a duplicate)."""
        cur = self.begin()
        new: list[StoredBatch] = []
        try:
            insert = (
                "INSERT INTO batches (cabinet, seq, boot, kid, received_t, readings, bytes, envelope) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                if self.pg
                else "INSERT OR IGNORE INTO batches (cabinet, seq, boot, kid, received_t, readings, bytes, envelope) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            )
            for b in sorted(c.batches, key=lambda b: (b.cabinet, b.seq)):  # one lock order for every worker
                cur.execute(
                    insert, (b.cabinet, b.seq, b.boot, b.kid, b.received_t, b.count, len(b.envelope), b.envelope)
                )
                if cur.rowcount != 1:
                    c.count("duplicates")
                    continue
                new.append(b)
            if new:
                c.count("batches_ok", len(new))
            self._write_catalogues(cur, c)
            for cab, (hwm, bitmap) in sorted(c.windows.items()):
                cur.execute(
                    self.sql(self._upsert("replay", "cabinet", ("hwm", "bitmap"))), (cab, hwm, format(bitmap, "x"))
                )
            for name, n in sorted(c.counters.items()):
                cur.execute(self.sql(self.upsert_add("counters", "name", "value")), (name, n))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return new

    def _write_catalogues(self, cur: Any, c: Commit) -> None:
        """New catalogues, and a history row when a cabinet's catalogue is new to the store."""
        insert = (
            "INSERT INTO catalogues (id, cabinet, ref, points, config_version, received_t, body, envelope) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        )
        for k in sorted(c.catalogues, key=lambda k: k.id):
            cur.execute(
                self.sql(insert),
                (k.id, k.cabinet, k.id[:8], k.points, k.config_version, k.received_t, k.body, k.envelope),
            )
            if cur.rowcount == 1:
                c.count("catalogues")
                if self.pg:
                    from tools.ingest.pg import catalogue_rows

                    catalogue_rows.write(cur, k.id, k.body)
                cur.execute(
                    self.sql("INSERT INTO catalogue_history (cabinet, from_t, id) VALUES (?, ?, ?)"),
                    (k.cabinet, k.received_t, k.id),
                )

    def catalogue(self, cabinet: str, ref: bytes) -> tuple[bytes, bytes] | None:
        """(id, body) of the cabinet's catalogue whose id starts with `ref`, or None."""
        rows = self._read("SELECT id, body FROM catalogues WHERE cabinet = ? AND ref = ?", (cabinet, ref))
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None

    def catalogue_history(self, cabinet: str) -> list[tuple[float, bytes, int]]:
        """(from_t, id, config_version) of the cabinet's catalogues in the order they were first received."""
        rows = self._read(
            "SELECT h.from_t, h.id, c.config_version FROM catalogue_history h JOIN catalogues c ON c.id = h.id "
            "WHERE h.cabinet = ? ORDER BY h.from_t, h.id",
            (cabinet,),
        )
        return [(float(t), bytes(i), int(v)) for t, i, v in rows]

    def _upsert(self, table: str, key: str, cols: Sequence[str]) -> str:
        names = ", ".join((key, *cols))
        marks = ", ".join("?" for _ in range(len(cols) + 1))
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols)
        return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets}"

    def upsert_add(self, table: str, key: str, col: str) -> str:
        return (
            f"INSERT INTO {table} ({key}, {col}) VALUES (?, ?) "
            f"ON CONFLICT ({key}) DO UPDATE SET {col} = {table}.{col} + excluded.{col}"
        )

    def materialize(self, limit: int = 200) -> tuple[int, int]:
        """Decode up to `limit` stored batches into reading rows, in one transaction.
        Returns (batches, readings) written. A body that cannot be decoded marks its batch bad.
        PostgreSQL: claimed with SKIP LOCKED and written with COPY (pg/materialize.py)."""
        if self.pg:
            from tools.ingest.pg.materialize import materialize

            return materialize(self.conn, lambda c, e: self._decode(c, e, self._catalogue_in_tx), limit)
        return self.save_decoded(self.decode_new(limit))

    def _decode(self, cabinet: str, envelope: bytes, lookup: Any = None) -> list[tuple]:
        """A stored envelope's readings-table rows; ValueError when it cannot be decoded."""
        from tools.ingest.bodies import readings_of, rows_of  # deferred: msgpack, zstandard, cbor2

        return rows_of(readings_of(cabinet, envelope, lookup or self.catalogue, self._names))

    def _catalogue_in_tx(self, cabinet: str, ref: bytes) -> tuple[bytes, bytes] | None:
        """`catalogue` inside a transaction that must go on (materialize's claim)."""
        cur = self.conn.cursor()
        cur.execute(self.sql("SELECT id, body FROM catalogues WHERE cabinet = ? AND ref = ?"), (cabinet, ref))
        row = cur.fetchone()
        return (bytes(row[0]), bytes(row[1])) if row else None

    def maintain(self, now: float) -> list[Any]:
        """PostgreSQL: the partitions of readings for the UTC day of `now` and the next one,
        once a day (cheap to call often); the days created. SQLite: nothing to do."""
        if not self.pg:
            return []
        from tools.ingest.pg.partitions import maintain

        return maintain(self.conn, now, self._days)

    def decode_new(self, limit: int = 200) -> list[Decoded]:
        """The oldest `limit` batches in state new, decoded (outside any transaction: other
        workers may decode the same ones; `save_decoded` writes each batch's rows once)."""
        todo = self._read(
            "SELECT cabinet, seq, envelope FROM batches WHERE state = 'new' ORDER BY received_t LIMIT ?", (limit,)
        )
        out = []
        for cabinet, seq, env in todo:
            try:
                out.append(Decoded(cabinet, seq, self._decode(cabinet, bytes(env))))
            except ValueError as e:  # BatchError, CatalogueError, VerifyError
                out.append(Decoded(cabinet, seq, [], str(e)[:500]))
        return out

    def save_decoded(self, decoded: Sequence[Decoded]) -> tuple[int, int]:
        """Write decoded batches in one transaction: each batch's state goes from new to done
        (or bad) and only the worker that moves it writes its rows (saved.py). Returns
        (batches, readings) written."""
        from tools.ingest.saved import save_decoded

        return save_decoded(self, decoded)

    # reading back ----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The totals `cabinet ingest stats` prints (summary.py)."""
        from tools.ingest.summary import totals

        return totals(self._read)

    def cabinets(
        self, cabinet: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Per cabinet, from the batches table; of one cabinet, of a window (summary.py `per_cabinet`)."""
        from tools.ingest.summary import per_cabinet

        return per_cabinet(self._read, cabinet, since, until)

    def readings(self, cabinet: str, point: str | None = None) -> list[tuple]:
        """(seq, point, t, kind, num, text, quality, reason) rows, for tools and tests
        (t Unix seconds; PostgreSQL's typed columns given back in these)."""
        sql = (
            "SELECT seq, point, extract(epoch FROM t)::float8, kind, COALESCE(num, flag::int::float8), "
            "COALESCE(text, doc::text), quality, reason FROM readings WHERE cabinet = ?"
            if self.pg
            else "SELECT seq, point, t, kind, num, text, quality, reason FROM readings WHERE cabinet = ?"
        )
        args: list[Any] = [cabinet]
        if point is not None:
            sql += " AND point = ?"
            args.append(point)
        return self._read(sql + " ORDER BY point, t, seq", args)
