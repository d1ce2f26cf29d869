"""Ingest storage: the key registry, stored batches and readings, replay windows,
counters. SQLite (a file path) by default, PostgreSQL when given a postgresql:// DSN.

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

SCHEMA_VERSION = 2  # 2: the point catalogues (docs/batch-format.md §8)

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
        db_errors: tuple[type[Exception], ...] = (sqlite3.Error, ValueError)
        if self.pg:
            try:
                import psycopg  # deferred: heavy, and only for postgresql:// DSNs
            except ModuleNotFoundError:
                raise StoreError(f"{redact(dsn)}: {PSYCOPG_MISSING}", code=2) from None
            try:
                self.conn = psycopg.connect(dsn, autocommit=False)
            except psycopg.Error as e:
                why = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                raise StoreError(f"{redact(dsn)}: cannot connect: {why}") from None
            self.ph = "%s"
            db_errors += (psycopg.Error,)
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

    def _sql(self, sql: str) -> str:
        sql = sql.replace("?", self.ph)
        return sql if self.pg else sql.replace("BYTEA", "BLOB").replace("DOUBLE PRECISION", "REAL")

    def _begin(self) -> Any:
        cur = self.conn.cursor()
        if not self.pg:
            cur.execute("BEGIN IMMEDIATE")
        return cur

    def _init(self) -> None:
        cur = self._begin()
        for t in TABLES:
            cur.execute(self._sql(t))
        cur.execute(self._sql("SELECT value FROM meta WHERE key = 'schema'"))
        row = cur.fetchone()
        if row is None:
            cur.execute(self._sql("INSERT INTO meta (key, value) VALUES ('schema', ?)"), (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            self.conn.rollback()
            raise StoreError(f"ingest database schema {row[0]} is newer than this program ({SCHEMA_VERSION})", code=2)
        elif int(row[0]) < SCHEMA_VERSION:  # 1 -> 2: the catalogue tables, created above
            cur.execute(self._sql("UPDATE meta SET value = ? WHERE key = 'schema'"), (str(SCHEMA_VERSION),))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    # key registry --------------------------------------------------------------
    def add_key(self, cabinet: str, kid: bytes, public_key: bytes, now: float) -> None:
        cur = self._begin()
        cur.execute(self._sql("SELECT cabinet FROM cabinet_keys WHERE kid = ?"), (kid,))
        row = cur.fetchone()
        if row is not None and row[0] != cabinet:
            self.conn.rollback()
            raise ValueError(f"key {kid.hex()} is registered for cabinet {row[0]}, not {cabinet}")
        if row is None:
            cur.execute(
                self._sql("INSERT INTO cabinet_keys (kid, cabinet, public_key, added_t) VALUES (?, ?, ?, ?)"),
                (kid, cabinet, public_key, now),
            )
        self.conn.commit()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """A read outside any write transaction (PostgreSQL: ended at once, no stale snapshot,
        and after a failure too, so the connection stays usable)."""
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(args))
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
        cur = self._begin()
        new: list[StoredBatch] = []
        try:
            insert = (
                "INSERT INTO batches (cabinet, seq, boot, kid, received_t, readings, bytes, envelope) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                if self.pg
                else "INSERT OR IGNORE INTO batches (cabinet, seq, boot, kid, received_t, readings, bytes, envelope) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            )
            for b in c.batches:
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
            for cab, (hwm, bitmap) in c.windows.items():
                cur.execute(
                    self._sql(self._upsert("replay", "cabinet", ("hwm", "bitmap"))), (cab, hwm, format(bitmap, "x"))
                )
            for name, n in c.counters.items():
                cur.execute(self._sql(self._upsert_add("counters", "name", "value")), (name, n))
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
        for k in c.catalogues:
            cur.execute(
                self._sql(insert),
                (k.id, k.cabinet, k.id[:8], k.points, k.config_version, k.received_t, k.body, k.envelope),
            )
            if cur.rowcount == 1:
                c.count("catalogues")
                cur.execute(
                    self._sql("INSERT INTO catalogue_history (cabinet, from_t, id) VALUES (?, ?, ?)"),
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

    def _upsert_add(self, table: str, key: str, col: str) -> str:
        return (
            f"INSERT INTO {table} ({key}, {col}) VALUES (?, ?) "
            f"ON CONFLICT ({key}) DO UPDATE SET {col} = {table}.{col} + excluded.{col}"
        )

    def materialize(self, limit: int = 200) -> tuple[int, int]:
        """Decode up to `limit` stored batches into reading rows, in one transaction.
        Returns (batches, readings) written. A body that cannot be decoded marks its batch bad."""
        return self.save_decoded(self.decode_new(limit))

    def decode_new(self, limit: int = 200) -> list[Decoded]:
        """The oldest `limit` batches in state new, decoded (outside any transaction: other
        workers may decode the same ones; `save_decoded` writes each batch's rows once)."""
        # deferred: heavy (msgpack, zstandard, cryptography): the key registry's users never materialize
        from tools.ingest.bodies import readings_of, rows_of  # deferred: msgpack, zstandard, cbor2

        todo = self._read(
            "SELECT cabinet, seq, envelope FROM batches WHERE state = 'new' ORDER BY received_t LIMIT ?", (limit,)
        )
        out = []
        for cabinet, seq, env in todo:
            try:
                readings = readings_of(cabinet, bytes(env), self.catalogue, self._names)
                out.append(Decoded(cabinet, seq, rows_of(readings)))
            except ValueError as e:  # BatchError, CatalogueError, VerifyError
                out.append(Decoded(cabinet, seq, [], str(e)[:500]))
        return out

    def save_decoded(self, decoded: Sequence[Decoded]) -> tuple[int, int]:
        """Write decoded batches in one transaction: each batch's state goes from new to done
        (or bad) and only the worker that moves it writes its rows; a batch another worker
        saved first is skipped. Returns (batches, readings) written."""
        if not decoded:
            return 0, 0
        rows: list[tuple] = []
        batches = bad = 0
        cur = self._begin()
        try:
            where = "WHERE cabinet = ? AND seq = ? AND state = 'new'"
            for d in decoded:
                if d.error is None:
                    cur.execute(
                        self._sql(f"UPDATE batches SET state = 'done', readings = ? {where}"),
                        (len(d.rows), d.cabinet, d.seq),
                    )
                else:
                    cur.execute(
                        self._sql(f"UPDATE batches SET state = 'bad', error = ? {where}"), (d.error, d.cabinet, d.seq)
                    )
                if cur.rowcount != 1:  # another worker materialized it meanwhile
                    continue
                batches += 1
                bad += d.error is not None
                rows += [(d.cabinet, d.seq, *r) for r in d.rows]
            cur.executemany(
                self._sql(
                    "INSERT INTO readings (cabinet, seq, point, t, kind, num, text, quality, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )
            for name, n in {"readings": len(rows), "rejected.bad_body": bad}.items():
                if n:
                    cur.execute(self._sql(self._upsert_add("counters", "name", "value")), (name, n))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return batches, len(rows)

    # reading back ----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        counters = {n: int(v) for n, v in self._read("SELECT name, value FROM counters")}
        cabinets = int(self._read("SELECT COUNT(DISTINCT cabinet) FROM batches")[0][0])
        pending = int(self._read("SELECT COUNT(*) FROM batches WHERE state = 'new'")[0][0])
        rejected = {k[len("rejected.") :]: v for k, v in counters.items() if k.startswith("rejected.")}
        return {
            "batches_ok": counters.get("batches_ok", 0),
            "readings": counters.get("readings", 0),
            "duplicates": counters.get("duplicates", 0),
            "rejected": rejected,
            "rejected_total": sum(rejected.values()),
            "acks_sent": counters.get("acks_sent", 0),
            "cabinets": cabinets,
            "batches_to_materialize": pending,
            "catalogues": counters.get("catalogues", 0),
            "catalogue_missing": counters.get("catalogue_missing", 0),
        }

    def cabinets(self) -> list[dict[str, Any]]:
        """Per cabinet, from the batches table: rows (readings materialized), batches, pending
        (stored, not yet materialized), bad, first_seq, last_seq, last_seen_t (when the ingest
        stored its newest batch, Unix seconds), gaps (holes in the stored seqs) and missing_seqs
        (the seqs in those holes). Gaps are normal: a cabinet skips the unused rest of a
        reserved block of 64 seqs at every restart (docs/cloud.md)."""
        rows = self._read(
            "SELECT cabinet, COUNT(*), SUM(CASE WHEN state = 'done' THEN readings ELSE 0 END), "
            "SUM(CASE WHEN state = 'new' THEN 1 ELSE 0 END), SUM(CASE WHEN state = 'bad' THEN 1 ELSE 0 END), "
            "MIN(seq), MAX(seq), MAX(received_t) FROM batches GROUP BY cabinet ORDER BY cabinet"
        )
        holes = {
            c: (int(n), int(m))
            for c, n, m in self._read(
                "SELECT cabinet, COUNT(*), SUM(d - 1) FROM (SELECT cabinet, seq - LAG(seq) OVER "
                "(PARTITION BY cabinet ORDER BY seq) AS d FROM batches) AS g WHERE d > 1 GROUP BY cabinet"
            )
        }
        return [
            {
                "cabinet": c,
                "rows": int(done or 0),
                "batches": int(n),
                "pending": int(new or 0),
                "bad": int(bad or 0),
                "first_seq": int(lo),
                "last_seq": int(hi),
                "last_seen_t": float(seen),
                "gaps": holes.get(c, (0, 0))[0],
                "missing_seqs": holes.get(c, (0, 0))[1],
            }
            for c, n, done, new, bad, lo, hi, seen in rows
        ]

    def readings(self, cabinet: str, point: str | None = None) -> list[tuple]:
        """(seq, point, t, kind, num, text, quality, reason) rows, for tools and tests."""
        sql = "SELECT seq, point, t, kind, num, text, quality, reason FROM readings WHERE cabinet = ?"
        args: list[Any] = [cabinet]
        if point is not None:
            sql += " AND point = ?"
            args.append(point)
        return self._read(sql + " ORDER BY point, t, seq", args)
