"""`cabinet ingest stats --cabinet ID --since WHEN --until WHEN`: what one cabinet, or all,
stored in a time window (by when the ingest stored the batches), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import encode_body
from tests.pgdb import fresh_database
from tools.cli.table import main as cli_main
from tools.ingest.store import Commit, Store, StoredBatch

DAY = 86_400.0
T0 = 1_768_435_200.0  # 2026-01-15 00:00 UTC


def fill(dsn: str) -> None:
    """CAB-A: batches 1-3 stored on the 15th, 4 and 6 on the 16th (5 never came); CAB-B: one
    on the 16th. Each batch 2 readings."""
    store = Store(dsn)
    try:
        for cab, stored in (("CAB-A", {1: 0, 2: 0, 3: 0, 4: 1, 6: 1}), ("CAB-B", {1: 1})):
            k = Ed25519PrivateKey.generate()
            kid = cose.key_id(k.public_key())
            store.add_key(cab, kid, cose.raw_public(k.public_key()), T0)
            topic = cose.telemetry_topic("city/v1", cab)
            for seq, day in stored.items():
                t = T0 + day * DAY + seq * 60
                rs = [Reading("p", t, seq, Quality.GOOD), Reading("q", t, 1.5, Quality.GOOD)]
                env = cose.seal_batch(encode_body(rs), key=k, kid=kid, cabinet=cab, boot=1, seq=seq, topic=topic)
                store.commit(Commit(batches=[StoredBatch(cab, seq, 1, kid, t, 2, env)]))
        while store.materialize()[0]:
            pass
    finally:
        store.close()


@contextmanager
def database(engine: str, tmp_path: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield str(tmp_path / "i.db")
    else:
        with fresh_database() as dsn:
            yield dsn


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_stats_of_one_cabinet_in_a_window(engine, tmp_path, capsys):
    with database(engine, tmp_path) as dsn:
        fill(dsn)
        base = ["ingest", "stats", "--db", dsn]
        assert cli_main([*base, "--cabinet", "CAB-A", "--since", "2026-01-16", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        (a,) = doc["by_cabinet"]
        assert (a["cabinet"], a["batches"], a["rows"], a["first_seq"], a["last_seq"]) == ("CAB-A", 2, 4, 4, 6)
        assert (a["gaps"], a["missing_seqs"]) == (1, 1)
        assert doc["window"] == {
            "since": "2026-01-16T00:00:00.000+00:00",
            "until": None,
            "cabinets": 1,
            "batches": 2,
            "readings": 4,
        }
        assert doc["readings"] == 12  # the totals stay the database's
        # the 15th in Berlin's local time (UTC+1): CAB-A's three batches of 00:01..00:03 UTC
        assert cli_main([*base, "--since", "2026-01-15T00:00+01:00", "--until", "2026-01-16T00:00+01:00"]) == 0
        out = capsys.readouterr().out
        assert "CAB-A" in out and "CAB-B" not in out
        assert "stored from 2026-01-14T23:00:00.000+00:00 until 2026-01-15T23:00:00.000+00:00: 6 readings in 3 " in out


def test_a_bad_window_is_refused(tmp_path, capsys):
    db = str(tmp_path / "i.db")
    fill(db)
    assert cli_main(["ingest", "stats", "--db", db, "--since", "yesterday"]) == 2
    assert "--since yesterday: give an ISO 8601 date or time" in capsys.readouterr().err
    assert cli_main(["ingest", "stats", "--db", db, "--since", "2026-01-16", "--until", "2026-01-15"]) == 2
    assert "--since 2026-01-16 is not before --until 2026-01-15" in capsys.readouterr().err
