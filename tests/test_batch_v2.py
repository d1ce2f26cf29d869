"""Batch format v2 (agent/wire/batch_v2.py) and the ingest with catalogues: round trips equal
to version 1's, hostile bodies, sizes; the ingest refusing (and counting) bad catalogues and
out-of-catalogue indices with nothing stored, asking for a missing catalogue without storing
or acknowledging, v1 and v2 side by side, a catalogue change mid-stream; on SQLite and on
PostgreSQL (skipped with the reason when no server is reachable)."""

from __future__ import annotations

import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import BatchError, decode_body, encode_body
from agent.wire.batch_v2 import INSTANTS, PER_SERIES, IndexOutside, check_indices, decode_v2, encode_v2, is_v2, peek
from agent.wire.catalogue import PointInfo, Site, build, catalogue_id, encode, ref_of
from agent.wire.catalogue_seal import seal_catalogue
from tests.pgdb import fresh_database
from tests.test_batch import READING, cabinet_readings, exact, w1_readings
from tests.test_ingest import key
from tools.ingest.core import IngestCore
from tools.ingest.service import IngestService
from tools.ingest.store import Commit, Store
from tools.provision import pki

T0 = 1_800_000_000.0
CAB = "CAB-A"
TOPIC = cose.telemetry_topic("city/v1", CAB)
SITE = Site(52.5, 13.4, "Europe/Berlin")


def catalogue(names, version=1, cabinet=CAB):
    return build(cabinet, "sim", version, SITE, [PointInfo(n, "V", "float", 1) for n in names])


def by_point(rs, names):
    """What decode_v2 returns: grouped by catalogue index (extra names after, sorted), then time."""
    pos = {n: i for i, n in enumerate(names)}
    extra = sorted({r.point for r in rs} - set(names))
    pos.update({n: len(names) + k for k, n in enumerate(extra)})
    rs = [r._replace(t=round(r.t * 1000) / 1000) for r in rs]
    return sorted(rs, key=lambda r: (pos[r.point], round(r.t * 1000)))


# ---------------------------------------------------------------------- codec


@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
@pytest.mark.parametrize("gen", [cabinet_readings, w1_readings])
def test_simulated_batches_round_trip_like_version_1(gen, compression):
    rs = gen(1000)
    names = sorted({r.point for r in rs})[::2]  # half of the points are in the catalogue, half extra
    cat = catalogue(names)
    body = encode_v2(rs, ref=b"R" * 8, index=cat.index(), compression=compression)
    assert is_v2(body) and body[1:9] == b"R" * 8
    got = decode_v2(body, cat.names())
    assert exact(got) == exact(by_point(rs, names))
    assert sorted(exact(got)) == sorted(exact(decode_body(encode_body(rs))))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(READING, min_size=1, max_size=40),
    st.sampled_from(["none", "zstd"]),
    st.integers(0, 3),
    st.sampled_from([None, PER_SERIES, INSTANTS]),
)
def test_round_trip_any_readings(rs, compression, keep, layout):
    names = sorted({r.point for r in rs})[:keep]
    index = {n: i for i, n in enumerate(names)}
    body = encode_v2(rs, ref=b"\0" * 8, index=index, compression=compression, layout=layout)
    assert exact(decode_v2(body, names)) == exact(by_point(rs, names))


def polled(seconds, shared=True):
    """Like the agent's report-by-exception: each 5-s poll of a device reports the points that
    changed, with one jittered timestamp for the poll (shared) or one per reading (not)."""
    import random

    rnd = random.Random(7)
    out = []
    for s in range(0, seconds, 5):
        t = T0 + s + rnd.randint(0, 40) / 1000
        for k in range(20):
            if rnd.random() < 0.4:
                tk = t if shared else T0 + s + rnd.randint(0, 40) / 1000
                out.append(Reading(f"meter.p{k:02}", tk, 230.0 + rnd.randint(0, 30) / 10, Quality.GOOD))
    return out


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("shared", [True, False])
def test_both_time_layouts_round_trip_and_the_smaller_is_chosen(compression, shared):
    rs = polled(300, shared)
    names = sorted({r.point for r in rs})
    index = {n: i for i, n in enumerate(names)}
    sizes = {}
    for layout in (PER_SERIES, INSTANTS):
        body = encode_v2(rs, ref=b"\0" * 8, index=index, compression=compression, layout=layout)
        assert doc_of(body)[3] == layout
        assert exact(decode_v2(body, names)) == exact(by_point(rs, names))
        sizes[layout] = len(body)
    auto = encode_v2(rs, ref=b"\0" * 8, index=index, compression=compression)
    assert len(auto) == min(sizes.values())
    if shared:  # one timestamp per poll: the instants table wins
        assert doc_of(auto)[3] == INSTANTS and sizes[INSTANTS] < sizes[PER_SERIES] * 0.9


def doc_of(body):
    from agent.wire.batch import decompress

    return msgpack.unpackb(decompress(body[0] & 0x0F, body[9:]))


def test_version_1_decoder_names_a_version_2_body():
    body = encode_v2([Reading("a", T0, 1, Quality.GOOD)], ref=b"\0" * 8, index={"a": 0})
    with pytest.raises(BatchError, match="version 2 body"):
        decode_body(body)
    with pytest.raises(BatchError, match="not a version 2 body"):
        decode_v2(encode_body([Reading("a", T0, 1, Quality.GOOD)]), ["a"])


def test_an_index_outside_the_catalogue_is_refused():
    rs = [Reading("b", T0, 1.5, Quality.GOOD), Reading("z", T0, 2.5, Quality.GOOD)]
    body = encode_v2(rs, ref=b"\0" * 8, index={"a": 0, "b": 1, "c": 2})  # b -> 1, z -> extra (3)
    assert peek(body).indices == [1, 3] and peek(body).extra == ["z"]
    assert decode_v2(body, ["a", "b", "c"]) == rs
    for smaller in (["a", "b"], ["a"]):  # the same body read against a smaller catalogue
        with pytest.raises(IndexOutside):
            check_indices(peek(body), len(smaller))
        with pytest.raises(IndexOutside, match="outside the catalogue"):
            decode_v2(body, smaller)


def test_every_byte_flip_of_a_body_raises_only_batch_error():
    rs = cabinet_readings(60)
    names = sorted({r.point for r in rs})
    body = encode_v2(rs, ref=b"\1" * 8, index={n: i for i, n in enumerate(names)}, compression="none")
    for i in range(9, len(body)):
        flipped = bytearray(body)
        flipped[i] ^= 0x41
        try:
            decode_v2(bytes(flipped), names)
        except BatchError:
            pass


@pytest.mark.parametrize("gen, n", [(cabinet_readings, 500), (cabinet_readings, 1000), (w1_readings, 2000)])
def test_version_2_is_smaller_than_version_1(gen, n):
    rs = gen(n)
    names = sorted({r.point for r in rs})
    v1, v2 = encode_body(rs), encode_v2(rs, ref=b"\1" * 8, index={x: i for i, x in enumerate(names)})
    assert len(v2) < len(v1) * 0.9, (len(v1), len(v2))


# ---------------------------------------------------------------------- the ingest


class Ingest:
    def __init__(self, store, tmp_path):
        self.store = store
        self.key = key(tmp_path, "cab")
        self.kid = cose.key_id(self.key.public_key())
        store.add_key(CAB, self.kid, pki.public_key_raw(self.key.public_key()), time.time())
        self.core = IngestCore(store, window_size=64)

    def run(self, *msgs):
        c = Commit()
        outs = [self.core.handle(TOPIC, m, time.time(), c) for m in msgs]
        self.store.commit(c)
        while self.store.materialize()[0]:
            pass
        return outs

    def seal(self, body, seq, k=None):
        k = k or self.key
        kid = cose.key_id(k.public_key())
        return cose.seal_batch(body, key=k, kid=kid, cabinet=CAB, boot=1, seq=seq, topic=TOPIC)

    def cat_msg(self, cat, k=None, topic=TOPIC):
        k = k or self.key
        return seal_catalogue(encode(cat), key=k, kid=cose.key_id(k.public_key()), cabinet=CAB, topic=topic)

    def count(self, table):
        return self.store._read(f"SELECT COUNT(*) FROM {table}")[0][0]


@pytest.fixture
def ingest(tmp_path):
    store = Store(str(tmp_path / "ingest.db"))
    yield Ingest(store, tmp_path)
    store.close()


def readings(point, start, n):
    return [Reading(point, T0 + start + i, 230.0 + i / 10, Quality.GOOD) for i in range(n)]


def v2(cat, rs):
    return encode_v2(rs, ref=ref_of(catalogue_id(encode(cat))), index=cat.index())


def test_a_v2_batch_waits_for_its_catalogue_then_v1_and_v2_side_by_side(ingest):
    cat = catalogue(["m.i", "m.v"])
    first = ingest.seal(v2(cat, readings("m.v", 0, 5)), 1)
    [o] = ingest.run(first)
    assert o.kind == "need_catalogue" and o.catalogue == ref_of(catalogue_id(encode(cat)))
    assert ingest.count("batches") == 0 and ingest.store.stats()["catalogue_missing"] == 1
    assert IngestService.catalogue_replies([o]) == [(CAB, None, o.catalogue)]
    outs = ingest.run(ingest.cat_msg(cat), first, ingest.seal(encode_body(readings("m.i", 0, 3)), 2))
    assert [o.kind for o in outs] == ["catalogue", "stored", "stored"]
    assert IngestService.catalogue_replies(outs) == [(CAB, catalogue_id(encode(cat)), None)]
    assert ingest.run(ingest.seal(v2(cat, readings("m.i", 3, 3) + readings("m.v", 5, 2)), 3))[0].kind == "stored"
    assert ingest.run(first)[0].kind == "duplicate"
    rows = ingest.store.readings(CAB)
    assert [(r[0], r[1], r[2]) for r in rows] == [(2, "m.i", T0 + i) for i in range(3)] + [
        (3, "m.i", T0 + i) for i in range(3, 6)
    ] + [(1, "m.v", T0 + i) for i in range(5)] + [(3, "m.v", T0 + i) for i in range(5, 7)]
    assert rows[1][3:] == ("f", pytest.approx(230.1), None, "good", None)
    assert ingest.count("catalogues") == 1 and ingest.run(ingest.cat_msg(cat))[0].kind == "catalogue"
    assert ingest.count("catalogues") == 1  # the same catalogue again: acknowledged, stored once
    assert ingest.store.stats()["catalogues"] == 1


def test_catalogue_change_mid_stream_and_late_batches_of_the_old_one(ingest):
    old = catalogue(["m.i", "m.v"], version=1)
    new = catalogue(["a.door", "m.i", "m.v"], version=2)  # a point added in front: every index moves
    late = ingest.seal(v2(old, readings("m.v", 0, 2)), 1)
    ingest.run(ingest.cat_msg(old), ingest.seal(v2(old, readings("m.i", 0, 2)), 2))
    ingest.run(ingest.cat_msg(new), ingest.seal(v2(new, readings("m.v", 10, 2) + readings("a.door", 10, 1)), 3))
    ingest.run(late)  # a re-send sealed before the change arrives after it
    points = {(r[0], r[1]) for r in ingest.store.readings(CAB)}
    assert points == {(1, "m.v"), (2, "m.i"), (3, "m.v"), (3, "a.door")}
    history = ingest.store.catalogue_history(CAB)
    assert [(h[1], h[2]) for h in history] == [(catalogue_id(encode(old)), 1), (catalogue_id(encode(new)), 2)]
    assert ingest.store.stats()["rejected_total"] == 0


def test_refusals_are_counted_and_nothing_is_stored(ingest, tmp_path):
    cat = catalogue(["m.i", "m.v"])
    body = encode(cat)
    stranger = key(tmp_path, "stranger")
    wrong_hash = cose.sign1(
        body, key=ingest.key, kid=ingest.kid, headers={"cab": CAB, "cat": bytes(32)}, aad=TOPIC.encode()
    )
    good = ingest.cat_msg(cat)
    outs = ingest.run(
        wrong_hash,
        ingest.cat_msg(cat, k=stranger),  # a key the ingest does not know
        good[:-1] + bytes([good[-1] ^ 1]),  # a bad signature
    )
    reasons = [o.reason for o in outs]
    assert reasons == ["hash_mismatch", "unknown_kid", "bad_signature"]
    assert ingest.count("catalogues") == 0
    ingest.run(ingest.cat_msg(cat))
    # an index outside the catalogue: encoded against a bigger one with the same ref
    bigger = {"m.i": 0, "m.v": 1, "z.z": 2}
    outside = encode_v2(readings("z.z", 0, 2), ref=ref_of(catalogue_id(body)), index=bigger)
    [o] = ingest.run(ingest.seal(outside, 9))
    assert (o.kind, o.reason) == ("rejected", "index_outside_catalogue")
    st = ingest.store.stats()
    assert st["rejected"] == {
        "hash_mismatch": 1,
        "unknown_kid": 1,
        "bad_signature": 1,
        "index_outside_catalogue": 1,
    }
    assert ingest.count("batches") == 0 and ingest.count("readings") == 0 and ingest.count("catalogues") == 1
    # refused, not remembered: the same seq with a good body is stored
    assert ingest.run(ingest.seal(v2(cat, readings("m.v", 0, 1)), 9))[0].kind == "stored"


@pytest.mark.integration  # a PostgreSQL server (tests/pgdb.py: required under CI)
def test_postgres_v1_v2_and_a_catalogue_change(tmp_path):
    with fresh_database("cabinet_ingest_test") as dsn:
        store = Store(dsn)
        ing = Ingest(store, tmp_path)
        old, new = catalogue(["m.i", "m.v"], 1), catalogue(["a.door", "m.i", "m.v"], 2)
        assert ing.run(ing.seal(v2(old, readings("m.v", 0, 3)), 1))[0].kind == "need_catalogue"
        outs = ing.run(ing.cat_msg(old), ing.seal(v2(old, readings("m.v", 0, 3)), 1))
        assert [o.kind for o in outs] == ["catalogue", "stored"]
        ing.run(ing.seal(encode_body(readings("m.i", 0, 2)), 2), ing.cat_msg(new))
        ing.run(ing.seal(v2(new, readings("a.door", 5, 2)), 3))
        assert [o.kind for o in ing.run(ing.seal(b"\x10" + b"\0" * 8, 4))] == ["need_catalogue"]
        points = [(r[0], r[1]) for r in store.readings(CAB)]
        assert points == [(3, "a.door")] * 2 + [(2, "m.i")] * 2 + [(1, "m.v")] * 3
        assert [h[2] for h in store.catalogue_history(CAB)] == [1, 2]
        assert store.stats()["catalogues"] == 2
        store.close()


def test_sqlite_schema_1_database_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    Store(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE catalogues")
    db.execute("DROP TABLE catalogue_history")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    store = Store(str(path))
    assert store._read("SELECT value FROM meta WHERE key = 'schema'") == [("2",)]
    assert store.catalogue(CAB, b"\0" * 8) is None
    store.close()


def test_catalogue_ids_are_unique_per_cabinet():
    names = ["m.v"]
    a, b = encode(catalogue(names, cabinet="CAB-A")), encode(catalogue(names, cabinet="CAB-B"))
    assert catalogue_id(a) != catalogue_id(b)
