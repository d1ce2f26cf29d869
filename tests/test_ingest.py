"""The ingest's decisions without MQTT: verify, key ownership, dedupe (window and
table), tampering at every byte, replays, foreign topics, garbage; storage on SQLite
and on PostgreSQL (skipped with the reason when no server is reachable)."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import encode_body
from tools.ingest.core import IngestCore
from tools.ingest.store import Commit, Store
from tools.provision import pki

PREFIX = "city/v1"


def key(tmp_path, name):
    p = tmp_path / f"{name}.key"
    pki.new_signing_key(p)
    return pki.load_signing_key(p)


def batch(k, cabinet, seq, n=20, boot=1, topic_cab=None):
    readings = [Reading("m.v", 1_800_000_000 + seq * 100 + i, 230.0 + i / 10, Quality.GOOD) for i in range(n)]
    topic = cose.telemetry_topic(PREFIX, topic_cab or cabinet)
    return topic, cose.seal_batch(
        encode_body(readings), key=k, kid=cose.key_id(k.public_key()), cabinet=cabinet, boot=boot, seq=seq, topic=topic
    )


@pytest.fixture
def setup(tmp_path):
    store = Store(str(tmp_path / "ingest.db"))
    a, b = key(tmp_path, "a"), key(tmp_path, "b")
    for cab, k in (("CAB-A", a), ("CAB-B", b)):
        store.add_key(cab, cose.key_id(k.public_key()), pki.public_key_raw(k.public_key()), time.time())
    yield store, IngestCore(store, window_size=64), a, b
    store.close()


def run(core, store, *msgs):
    c = Commit()
    outs = [core.handle(t, p, time.time(), c) for t, p in msgs]
    store.commit(c)
    while store.materialize()[0]:
        pass
    return outs


def test_store_dedupe_and_replay(setup):
    store, core, a, _ = setup
    m1, m2 = batch(a, "CAB-A", 1), batch(a, "CAB-A", 2)
    assert [o.kind for o in run(core, store, m1, m2, m1)] == ["stored", "stored", "duplicate"]
    assert run(core, store, m2)[0].kind == "duplicate"
    st = store.stats()
    assert (st["batches_ok"], st["readings"], st["duplicates"]) == (2, 40, 2)
    # a restarted ingest reloads its windows and still knows
    core2 = IngestCore(store, window_size=64)
    assert run(core2, store, m1)[0].kind == "duplicate"


def test_late_batch_older_than_the_window_is_stored_once(setup):
    store, core, a, _ = setup
    run(core, store, *[batch(a, "CAB-A", s) for s in range(10, 200)])
    late = batch(a, "CAB-A", 5)  # older than the 64-wide window, never stored
    assert run(core, store, late)[0].kind == "stored"
    assert run(core, store, late)[0].kind == "duplicate"
    assert run(core, store, batch(a, "CAB-A", 12))[0].kind == "duplicate"  # too old, but in the table


def test_every_tampered_byte_is_rejected_and_counted(setup):
    store, core, a, _ = setup
    topic, good = batch(a, "CAB-A", 7, n=3)
    c = Commit()
    kinds = set()
    for i in range(len(good)):
        for bit in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= bit
            o = core.handle(topic, bytes(bad), time.time(), c)
            kinds.add(o.kind)
            assert o.kind == "rejected", (i, bit)
    store.commit(c)
    assert kinds == {"rejected"}
    st = store.stats()
    assert st["rejected_total"] == 2 * len(good) and st["batches_ok"] == 0
    assert "bad_signature" in st["rejected"]
    assert run(core, store, (topic, good))[0].kind == "stored"  # the genuine one still goes through


def test_foreign_topic_foreign_key_unknown_key_and_garbage(setup, tmp_path):
    store, core, a, b = setup
    # CAB-A's genuine batch replayed on CAB-B's topic
    _, body = batch(a, "CAB-A", 1)
    replayed = run(core, store, (cose.telemetry_topic(PREFIX, "CAB-B"), body))[0]
    assert replayed.kind == "rejected" and replayed.reason in ("cabinet_mismatch", "bad_signature")
    # CAB-B's key signing a batch that claims to be CAB-A on CAB-A's topic
    forged = run(core, store, batch(b, "CAB-A", 1))[0]
    assert forged.kind == "rejected" and forged.reason == "key_not_for_cabinet"
    stranger = key(tmp_path, "stranger")
    assert run(core, store, batch(stranger, "CAB-A", 1))[0].reason == "unknown_kid"
    for junk in (b"", b"\x00" * 10, os.urandom(300), b"\xd2\x84" + b"\xff" * 50):
        assert run(core, store, (cose.telemetry_topic(PREFIX, "CAB-A"), junk))[0].kind == "rejected"
    assert run(core, store, ("not/a/telemetry/topic", body))[0].kind == "rejected"
    st = store.stats()
    assert st["batches_ok"] == 0 and st["rejected_total"] == 8


def test_a_signed_body_that_cannot_be_decoded_is_stored_acknowledged_and_counted_bad(setup):
    """Only a cabinet software bug signs such a body: acknowledging it stops endless
    re-sends; the envelope stays in the store with the decoder's error."""
    store, core, a, _ = setup
    topic = cose.telemetry_topic(PREFIX, "CAB-A")
    for seq, body in ((1, b"\x07garbage"), (2, b"\x00\x93\x01\x02\x03")):
        env = cose.seal_batch(
            body, key=a, kid=cose.key_id(a.public_key()), cabinet="CAB-A", boot=1, seq=seq, topic=topic
        )
        out = run(core, store, (topic, env))[0]
        assert out.kind == "stored" and out.seq == seq  # acknowledged like any stored batch
    good = run(core, store, batch(a, "CAB-A", 3))[0]
    assert good.kind == "stored"
    st = store.stats()
    assert st["rejected"] == {"bad_body": 2} and st["readings"] == 20 and st["batches_ok"] == 3
    errors = store._read("SELECT seq, state, error FROM batches WHERE cabinet = 'CAB-A' ORDER BY seq")
    assert [(r[0], r[1]) for r in errors] == [(1, "bad"), (2, "bad"), (3, "done")]
    assert "compression" in errors[0][2] and "4-element" in errors[1][2]


def test_newly_registered_cabinet_is_picked_up(setup, tmp_path):
    store, core, _, _ = setup
    c = key(tmp_path, "c")
    core.key_refresh_s = 0.0
    store.add_key("CAB-C", cose.key_id(c.public_key()), pki.public_key_raw(c.public_key()), time.time())
    assert run(core, store, batch(c, "CAB-C", 1))[0].kind == "stored"


def test_a_key_cannot_be_registered_for_two_cabinets(setup):
    store, _, a, _ = setup
    with pytest.raises(ValueError, match="registered for cabinet CAB-A"):
        store.add_key("CAB-Z", cose.key_id(a.public_key()), pki.public_key_raw(a.public_key()), time.time())


def _postgres_dsn():
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed"
    base = os.environ.get("CABINET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        conn = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except Exception as e:  # noqa: BLE001
        return None, f"no PostgreSQL server reachable at {base}: {e}"
    name = f"cabinet_ingest_test_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE DATABASE {name}")
    conn.close()
    return base.rsplit("/", 1)[0] + f"/{name}", name


@pytest.mark.integration  # a PostgreSQL server (skipped when none is reachable)
def test_postgres_store_same_behaviour(tmp_path):
    dsn, name = _postgres_dsn()
    if dsn is None:
        pytest.skip(name)
    import psycopg

    try:
        store = Store(dsn)
        a = key(tmp_path, "a")
        store.add_key("CAB-A", cose.key_id(a.public_key()), pki.public_key_raw(a.public_key()), time.time())
        core = IngestCore(store, window_size=64)
        m = batch(a, "CAB-A", 1)
        assert [o.kind for o in run(core, store, m, batch(a, "CAB-A", 2), m)] == ["stored", "stored", "duplicate"]
        assert run(IngestCore(store, window_size=64), store, m)[0].kind == "duplicate"
        st = store.stats()
        assert (st["batches_ok"], st["readings"], st["duplicates"]) == (2, 40, 2)
        rows = store.readings("CAB-A")
        assert len(rows) == 40 and rows[0][1] == "m.v"
        store.close()
    finally:
        with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
