"""The ingest on PostgreSQL (tools/ingest/pg/): two workers materializing one backlog at
once (no deadlock, every row once), versioned migrations (from an empty database, from
schema 2 with its data, a newer schema refused), daily partitions and retention."""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import encode_body
from tests.pgdb import fresh_database
from tools.cli.table import main as cli_main
from tools.ingest.pg import migrations
from tools.ingest.store import Commit, Store, StoredBatch, StoreError

pytestmark = pytest.mark.integration
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def raw_public(k: Ed25519PrivateKey) -> bytes:
    return cose.raw_public(k.public_key())


def backlog(store: Store, cabinets: int, batches: int, per: int, t0: float = T0, prefix: str = "CAB") -> None:
    """`batches` stored batches of `per` readings for each of `cabinets` cabinets, all with one
    received_t (ties: what a group commit writes), none materialized; readings from `t0` on."""
    for c in range(cabinets):
        cab = f"{prefix}-{c:03d}"
        k = Ed25519PrivateKey.generate()
        kid = cose.key_id(k.public_key())
        store.add_key(cab, kid, raw_public(k), T0)
        topic = cose.telemetry_topic("city/v1", cab)
        for seq in range(1, batches + 1):
            rs = [Reading(f"p{i}", t0 + seq * 60 + i, seq * 1000 + i, Quality.GOOD) for i in range(per)]
            env = cose.seal_batch(encode_body(rs), key=k, kid=kid, cabinet=cab, boot=1, seq=seq, topic=topic)
            store.commit(Commit(batches=[StoredBatch(cab, seq, 1, kid, T0, per, env)]))


def test_two_stores_materialize_one_backlog_concurrently_without_deadlock():
    with fresh_database() as dsn:
        a, b = Store(dsn), Store(dsn)
        try:
            backlog(a, cabinets=3, batches=60, per=10)
            a.maintain(T0)
            errors: list[BaseException] = []
            written = {"a": 0, "b": 0}
            producing = threading.Event()
            producing.set()

            def produce() -> None:  # more batches with the same received_t while the workers run
                s = Store(dsn)
                try:
                    backlog(s, cabinets=3, batches=60, per=10, prefix="CAB-LATE")
                finally:
                    s.close()
                    producing.clear()

            def work(name: str, s: Store, limit: int) -> None:
                try:
                    while True:
                        n, _ = s.materialize(limit)
                        written[name] += n
                        if n == 0 and not producing.is_set() and s.stats()["batches_to_materialize"] == 0:
                            return
                except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(n, s, k)) for n, s, k in (("a", a, 7), ("b", b, 13))]
            threads.append(threading.Thread(target=produce))
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert not errors, errors  # psycopg.errors.DeadlockDetected before SKIP LOCKED
            assert written["a"] + written["b"] == 360 and written["a"] > 0 and written["b"] > 0, written
            with psycopg.connect(dsn) as conn:
                per_batch = conn.execute("SELECT cabinet, seq, count(*) FROM readings GROUP BY 1, 2").fetchall()
                states = conn.execute("SELECT state, count(*) FROM batches GROUP BY 1").fetchall()
                in_default = conn.execute("SELECT count(*) FROM readings_default").fetchone()
            assert len(per_batch) == 360 and {n for _, _, n in per_batch} == {10}
            assert states == [("done", 360)] and in_default == (0,)
            assert a.stats()["readings"] == 3600
        finally:
            a.close()
            b.close()


def test_concurrent_group_commits_of_the_same_batches_store_each_once():
    """Two workers commit overlapping groups in opposite orders (what a broker's re-delivery
    makes): one lock order for every worker, so no deadlock, and each batch once."""
    with fresh_database() as dsn:
        a, b = Store(dsn), Store(dsn)
        try:
            k = Ed25519PrivateKey.generate()
            kid = cose.key_id(k.public_key())
            a.add_key("CAB-X", kid, raw_public(k), T0)
            topic = cose.telemetry_topic("city/v1", "CAB-X")
            envs = [
                cose.seal_batch(
                    encode_body([Reading("p", T0 + s, s, Quality.GOOD)]),
                    key=k,
                    kid=kid,
                    cabinet="CAB-X",
                    boot=1,
                    seq=s,
                    topic=topic,
                )
                for s in range(1, 201)
            ]
            groups = {
                "a": [StoredBatch("CAB-X", s, 1, kid, T0, 1, envs[s - 1]) for s in range(1, 201)],
                "b": [StoredBatch("CAB-X", s, 1, kid, T0, 1, envs[s - 1]) for s in range(200, 0, -1)],
            }
            errors: list[BaseException] = []

            def work(s: Store, group: list[StoredBatch]) -> None:
                try:
                    for i in range(0, 200, 20):
                        c = Commit(batches=group[i : i + 20])
                        c.count("acks_sent", 20)
                        c.count("batches_seen", 20)
                        s.commit(c)
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(s, groups[n])) for n, s in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            st = a.stats()
            assert (st["batches_ok"], st["duplicates"]) == (200, 200)
        finally:
            a.close()
            b.close()


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_migrate_from_an_empty_database_then_again(capsys):
    with fresh_database() as dsn:
        assert cli_main(["ingest", "migrate", "--db", dsn]) == 0
        out = capsys.readouterr().out
        assert "ingest schema none (empty database) -> 3" in out and "created partitions" in out
        assert {"batches", "readings", "readings_default", "catalogue_points", "catalogue_sites"} <= tables(dsn)
        assert cli_main(["ingest", "migrate", "--db", dsn]) == 0
        assert "ingest schema 3, the newest this program knows: nothing to do" in capsys.readouterr().out


def schema_2(dsn: str) -> None:
    """A database as the ingest of schema 2 left it: a batch of readings (doubles, a bool, an
    alarm's JSON) from 2027-01-15 and 2027-01-16."""
    with psycopg.connect(dsn) as conn:
        migrations.apply(conn, target=2)
        conn.execute(
            "INSERT INTO batches (cabinet, seq, boot, kid, received_t, readings, bytes, envelope, state) "
            "VALUES ('CAB-OLD', 1, 1, '\\x00', %s, 3, 1, '\\x00', 'done')",
            (T0,),
        )
        rows = [
            ("CAB-OLD", 1, "m.v", T0 + 0.125, "f", 230.5, None, "good", None),
            ("CAB-OLD", 1, "dio.door", T0 + 1, "b", 1.0, None, "good", None),
            ("CAB-OLD", 1, "alarm.x", T0 + 86_400, "s", None, '{"transition": "raised"}', "good", None),
        ]
        conn.cursor().executemany(
            "INSERT INTO readings (cabinet, seq, point, t, kind, num, text, quality, reason) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def test_an_older_schema_is_refused_until_migrated_and_keeps_its_data(capsys):
    with fresh_database() as dsn:
        schema_2(dsn)
        with pytest.raises(StoreError, match=r"schema 2, older than this program's \(3\).*cabinet ingest migrate --db"):
            Store(dsn)
        assert cli_main(["ingest", "stats", "--db", dsn]) == 2
        assert "cabinet ingest migrate --db" in capsys.readouterr().err
        assert cli_main(["ingest", "migrate", "--db", dsn]) == 0
        out = capsys.readouterr().out
        assert "ingest schema 2 -> 3" in out and "partitioned 2 day(s) of stored readings" in out
        store = Store(dsn)
        try:
            rows = store.readings("CAB-OLD")
            assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
                ("alarm.x", T0 + 86_400, "s", None),
                ("dio.door", T0 + 1, "b", 1.0),
                ("m.v", T0 + 0.125, "f", 230.5),
            ]
            with psycopg.connect(dsn) as conn:
                typed = conn.execute("SELECT point, flag, doc->>'transition' FROM readings ORDER BY point").fetchall()
                parts = conn.execute("SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1").fetchall()
            assert typed == [("alarm.x", None, "raised"), ("dio.door", True, None), ("m.v", None, None)]
            assert sorted(parts) == [("readings_20270115", 2), ("readings_20270116", 1)]
        finally:
            store.close()


def test_a_newer_schema_is_refused_by_every_command(tmp_path, capsys):
    with fresh_database() as dsn:
        Store(dsn).close()
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
        with pytest.raises(StoreError, match=r"schema 4, newer than this program knows \(3\)") as e:
            Store(dsn)
        assert e.value.code == 2
        key = tmp_path / "ingest.key"
        assert cli_main(["ingest", "init", "--key", str(key)]) == 0
        for argv in (
            ["ingest", "run", "--db", dsn, "--key", str(key), "--broker", "mqtt://127.0.0.1:1"],
            ["ingest", "migrate", "--db", dsn],
            ["ingest", "stats", "--db", dsn],
            ["ingest", "partitions", "--db", dsn, "--ahead", "1"],
        ):
            capsys.readouterr()
            assert cli_main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "newer than this program knows (3)" in err and "Traceback" not in err, argv
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)


def test_partitions_ahead_stray_readings_and_retention(capsys):
    today = dt.datetime.now(dt.UTC).date()
    with fresh_database() as dsn:
        store = Store(dsn)
        try:
            backlog(store, cabinets=1, batches=3, per=4, t0=1_700_000_000.0)  # of 2023-11-14: no partition
            assert store.materialize() == (3, 12)
        finally:
            store.close()
        assert cli_main(["ingest", "partitions", "--db", dsn, "--ahead", "2"]) == 0
        out = capsys.readouterr().out
        assert f"created 3 partition(s): {today}, " in out
        assert "readings outside them (default partition): 12" in out
        with psycopg.connect(dsn) as conn:  # the day of the stray readings, as the migration does
            from tools.ingest.pg import partitions

            assert partitions.split_default(conn) == [dt.date(2023, 11, 14)]
            assert conn.execute("SELECT count(*) FROM readings_20231114").fetchone() == (12,)
        assert cli_main(["ingest", "partitions", "--db", dsn, "--drop-before", "2023-11-15"]) == 0
        out = capsys.readouterr().out
        assert "dropped 1 partition(s) before 2023-11-15: 2023-11-14" in out
        assert "partitions: 3 day(s)" in out and "(default partition): 0" in out
        assert "readings_20231114" not in tables(dsn)
        assert cli_main(["ingest", "partitions", "--db", dsn, "--drop-before", "16.1.2027"]) == 2
        assert "--drop-before 16.1.2027: give a date as YYYY-MM-DD" in capsys.readouterr().err


def test_partitions_on_sqlite_are_refused(tmp_path, capsys):
    assert cli_main(["ingest", "partitions", "--db", str(tmp_path / "i.db"), "--ahead", "1"]) == 2
    assert "partitions are PostgreSQL's" in capsys.readouterr().err


def test_an_ingest_worker_creates_todays_partition_itself():
    with fresh_database() as dsn:
        store = Store(dsn)
        try:
            now = time.time()
            made = store.maintain(now)
            today = dt.datetime.fromtimestamp(now, dt.UTC).date()
            assert made == [today, today + dt.timedelta(days=1)]
            assert store.maintain(now + 1) == []  # once a day
        finally:
            store.close()


def test_a_v2_batch_is_materialized_with_its_catalogue_looked_up_in_the_claim():
    """A v2 body needs its catalogue's names: looked up inside the materializing transaction
    (a lookup that ended it, or ran during the COPY, lost the claim or hung the worker)."""
    from agent.wire.batch_v2 import encode_v2
    from agent.wire.catalogue import PointInfo, Site, build, catalogue_id, encode, ref_of
    from agent.wire.catalogue_seal import seal_catalogue
    from tools.ingest.core import IngestCore

    with fresh_database() as dsn:
        store = Store(dsn)
        try:
            k = Ed25519PrivateKey.generate()
            kid = cose.key_id(k.public_key())
            store.add_key("CAB-V2", kid, raw_public(k), T0)
            topic = cose.telemetry_topic("city/v1", "CAB-V2")
            cat = build("CAB-V2", "sim", 1, Site(52.5, 13.4, "Europe/Berlin"), [PointInfo("a", "V"), PointInfo("b")])
            body = encode(cat)
            core, commit = IngestCore(store), Commit()
            assert core.handle(topic, seal_catalogue(body, key=k, kid=kid, cabinet="CAB-V2", topic=topic), T0, commit)
            store.commit(commit)
            cat_ref = ref_of(catalogue_id(body))
            rs = [Reading("a", T0 + 1, 230.5, Quality.GOOD), Reading("b", T0 + 2, True, Quality.GOOD)]
            v2 = encode_v2(rs, ref=cat_ref, index=cat.index())
            env = cose.seal_batch(v2, key=k, kid=kid, cabinet="CAB-V2", boot=1, seq=1, topic=topic)
            commit = Commit()
            assert core.handle(topic, env, T0, commit).kind == "stored"
            store.commit(commit)
            fresh = Store(dsn)  # no catalogue cached
            try:
                assert fresh.materialize() == (1, 2)
            finally:
                fresh.close()
            assert [(r[1], r[4]) for r in store.readings("CAB-V2")] == [("a", 230.5), ("b", 1.0)]
        finally:
            store.close()


def test_bodies_that_cannot_be_stored_are_marked_bad_and_the_rest_materialized():
    """A body that does not decode and a reading whose time no timestamptz can hold: each
    batch marked bad with its error and counted, never retried forever; the others stored."""
    with fresh_database() as dsn:
        store = Store(dsn)
        try:
            k = Ed25519PrivateKey.generate()
            kid = cose.key_id(k.public_key())
            store.add_key("CAB-B", kid, raw_public(k), T0)
            topic = cose.telemetry_topic("city/v1", "CAB-B")
            bodies = {
                1: encode_body([Reading("p", T0, 1, Quality.GOOD)]),
                2: b"\x07garbage",
                3: encode_body([Reading("p", 5e12, 1, Quality.GOOD)]),  # the year 160,000: past datetime
                4: encode_body([Reading("p", T0 + 1, 2, Quality.GOOD)]),
            }
            c = Commit()
            for seq, body in bodies.items():
                env = cose.seal_batch(body, key=k, kid=kid, cabinet="CAB-B", boot=1, seq=seq, topic=topic)
                c.batches.append(StoredBatch("CAB-B", seq, 1, kid, T0, 1, env))
            store.commit(c)
            assert store.materialize() == (4, 2)
            assert store.materialize() == (0, 0)
            with psycopg.connect(dsn) as conn:
                states = conn.execute("SELECT seq, state, error IS NOT NULL FROM batches ORDER BY seq").fetchall()
            assert states == [(1, "done", False), (2, "bad", True), (3, "bad", True), (4, "done", False)]
            st = store.stats()
            assert (st["readings"], st["rejected"]) == (2, {"bad_body": 2})
        finally:
            store.close()
