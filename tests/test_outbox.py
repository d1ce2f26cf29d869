"""The outbox: its pure policies with plain numbers, and the store on real SQLite files
(round trips, restarts, sealing, acks, commit grouping, backpressure, eviction on a
small byte cap, refused files, a full disk). kill -9 tests: test_outbox_crash.py."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.clock import SimClock, WallClock
from agent.model import Priority, Quality, Reading
from agent.outbox import writer as outbox_mod
from agent.outbox.policy import EVICTION_ORDER, Candidate, EvictionPolicy, Kind, SealPolicy
from agent.outbox.writer import (
    SCHEMA_VERSION,
    Outbox,
    OutboxBusy,
    OutboxCorrupt,
    OutboxError,
    OutboxForeign,
    OutboxTooNew,
)
from tests.conftest import wait_until

A, E, T = Priority.ALARM, Priority.EVENT, Priority.TELEMETRY


def enc(readings: list[Reading], seq: int) -> bytes:
    return json.dumps({"seq": seq, "r": [[r.point, r.t, r.value, str(r.quality), r.reason] for r in readings]}).encode()


def values(payload: bytes) -> list:
    return [r[2] for r in json.loads(payload)["r"]]


def rd(n: int, point: str = "m.v", value=None) -> Reading:
    return Reading(point, 1_700_000_000.0 + n, n if value is None else value, Quality.GOOD)


async def opened(path, **kw) -> Outbox:
    ob = Outbox(path, clock=kw.pop("clock", None) or WallClock(), **kw)
    await ob.start()
    return ob


# -- SealPolicy -----------------------------------------------------------------------------------------------
def test_seal_policy_due_with_plain_numbers():
    p = SealPolicy(max_readings=100, max_age_s=30.0, alarm_delay_s=1.0)
    assert not p.due(0, None, None)
    assert not p.due(99, 29.9, T)
    assert p.due(100, 0.0, T)  # a full batch
    assert p.due(1, 30.0, T)  # old enough
    assert not p.due(5, 0.5, A)  # an alarm waits alarm_delay_s for company
    assert p.due(5, 1.0, A) and p.due(5, 1.0, E)
    assert p.due(5, math.inf, T)  # restored after a restart: age unknown
    # with the age of the alarm itself: an old telemetry reading does not hurry a fresh alarm...
    assert not p.due(5, 10.0, A, highest_priority_age_s=0.2)
    assert p.due(5, 10.0, A, highest_priority_age_s=1.5)
    assert p.due(5, 31.0, A, highest_priority_age_s=0.0)  # ...but max_age_s still holds
    with pytest.raises(ValueError):
        SealPolicy(max_readings=0)
    with pytest.raises(ValueError):
        SealPolicy(max_age_s=-1)


# -- EvictionPolicy -------------------------------------------------------------------------------------------
def test_eviction_order_is_telemetry_rows_batches_then_event_then_alarm():
    assert EVICTION_ORDER == (
        (T, Kind.ROWS),
        (T, Kind.BATCH),
        (E, Kind.ROWS),
        (E, Kind.BATCH),
        (A, Kind.ROWS),
        (A, Kind.BATCH),
    )
    cands = [
        Candidate(A, Kind.ROWS, 1, 10),
        Candidate(E, Kind.BATCH, 3, 100, 5),
        Candidate(T, Kind.BATCH, 9, 50, 4),
        Candidate(T, Kind.ROWS, 20, 10),
        Candidate(T, Kind.ROWS, 7, 10),
        Candidate(E, Kind.ROWS, 2, 10),
    ]
    random.Random(1).shuffle(cands)
    p = EvictionPolicy(max_bytes=1000)
    assert p.excess(900) == 0 and p.excess(1015) == 15 and p.excess(900, cap=850) == 50
    assert p.choose(0, cands) == []
    assert [(c.prio, c.kind, c.key) for c in p.choose(15, cands)] == [(T, Kind.ROWS, 7), (T, Kind.ROWS, 20)]
    # a batch is one candidate: taken whole even when a few bytes would do
    assert [c.key for c in p.choose(21, cands)] == [7, 20, 9]
    assert [c.key for c in p.choose(71, cands)] == [7, 20, 9, 2]
    assert [c.key for c in p.choose(10_000, cands)] == [7, 20, 9, 2, 3, 1]  # alarms only when nothing else is left


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Priority)), st.sampled_from(list(Kind)), st.integers(0, 10_000), st.integers(1, 500)
        ),
        max_size=40,
    ),
    st.integers(0, 20_000),
)
def test_eviction_choice_is_a_minimal_prefix_in_order(raw, excess):
    p = EvictionPolicy(max_bytes=1)
    cands = [Candidate(pr, k, key, nb) for pr, k, key, nb in raw]
    chosen = p.choose(excess, cands)
    ordered = sorted(cands, key=p.rank)
    assert chosen == ordered[: len(chosen)]
    freed = sum(c.nbytes for c in chosen)
    if excess <= 0:
        assert chosen == []
    elif freed < excess:
        assert len(chosen) == len(cands)
    else:
        assert freed - chosen[-1].nbytes < excess  # nothing evicted beyond need


# -- the store ------------------------------------------------------------------------------------------------
async def test_values_round_trip_and_survive_a_restart(tmp_path):
    path = tmp_path / "outbox.db"
    odd = [
        Reading("a.f", 1.5, 230.25, Quality.GOOD),
        Reading("a.b", 2.0, True, Quality.SUBSTITUTED, "manual"),
        Reading("a.b", 3.0, False, Quality.GOOD),
        Reading("a.i", 4, -7, "stale"),  # type: ignore[arg-type]  # a plain str quality is accepted
        Reading("a.big", 5.0, 2**70, Quality.GOOD),
        Reading("a.s", 6.0, "Grüße ✓", Quality.GOOD),
        Reading("a.n", 7.0, None, Quality.BAD, "timeout"),
        Reading("a.inf", 8.0, -math.inf, Quality.GOOD),
    ]
    nan = Reading("a.nan", 9.0, math.nan, Quality.BAD, "overflow")
    ob = await opened(path)
    epoch = ob.boot_epoch
    await ob.put([*odd, nan], E)
    await ob.flush()
    before = ob.stats()
    await ob.close()
    ob = await opened(path)
    try:
        assert ob.boot_epoch == epoch + 1
        got = [r for _, r in ob.peek()]
        assert got[:-1] == odd
        assert got[-1].point == "a.nan" and math.isnan(got[-1].value) and got[-1].reason == "overflow"
        assert [type(r.value) for r in got[1:3]] == [bool, bool]
        assert all(isinstance(r.quality, Quality) for r in got)
        after = ob.stats()
        for key in ("rows_pending", "bytes", "oldest_unsent_t", "rows_sealed", "batches_unacked"):
            assert after[key] == before[key], key
        seen: list[Reading] = []

        def keep(rs: list[Reading], seq: int) -> bytes:
            seen.extend(rs)
            return b"x"

        sealed = await ob.seal(keep, max_readings=100)
        assert sealed is not None
        assert seen[:-1] == odd and sealed.count == 9 and sealed.priority is E
    finally:
        await ob.close()


async def test_put_validates_before_queueing(tmp_path):
    ob = await opened(tmp_path / "o.db")
    try:
        with pytest.raises(TypeError, match=r"m.v.*list"):
            await ob.put([rd(1), Reading("m.v", 2.0, [1, 2], Quality.GOOD)])
        with pytest.raises(ValueError, match="quality"):
            await ob.put([Reading("m.v", 2.0, 1, "fine")])  # type: ignore[arg-type]  # wrong on purpose
        with pytest.raises(ValueError, match="NaN"):
            await ob.put([Reading("m.v", math.nan, 1, Quality.GOOD)])
        with pytest.raises(TypeError, match="point name"):
            await ob.put([Reading(7, 1.0, 1, Quality.GOOD)])  # type: ignore[arg-type]  # wrong on purpose
        with pytest.raises(UnicodeEncodeError):
            await ob.put([Reading("m.v", 1.0, "\ud800", Quality.GOOD)])
        with pytest.raises(ValueError):
            await ob.put([rd(1)], priority=7)  # type: ignore[arg-type]  # wrong on purpose
        assert ob.stats()["appended"] == 0  # nothing of a bad slice got in
        await ob.put([rd(1)])
        await ob.flush()
        assert ob.stats()["rows_pending"] == 1
    finally:
        await ob.close()
    with pytest.raises(OutboxError, match="not open"):
        await ob.put([rd(2)])


async def test_seal_takes_priority_first_then_oldest_and_numbers_batches(tmp_path):
    path = tmp_path / "o.db"
    ob = await opened(path)
    await ob.put([rd(n) for n in range(1, 6)], T)
    await ob.put([rd(n) for n in range(6, 8)], A)
    await ob.put([rd(n) for n in range(8, 10)], E)
    await ob.flush()
    assert ob.stats()["pending_priority"] is A  # the highest priority waiting
    b1 = await ob.seal(enc, max_readings=3)
    assert b1 is not None
    assert values(b1.payload) == [6, 7, 8] and b1.priority is A and b1.count == 3
    b2 = await ob.seal(enc, max_readings=3, min_priority_first=False)
    assert b2 is not None
    assert values(b2.payload) == [1, 2, 3] and b2.priority is T  # oldest regardless of priority
    b3 = await ob.seal(enc, max_readings=100)
    assert b3 is not None
    assert values(b3.payload) == [9, 4, 5] and b3.priority is E
    assert await ob.seal(enc, max_readings=100) is None  # nothing pending: no batch, no seq used
    assert b1.seq < b2.seq < b3.seq
    assert json.loads(b2.payload)["seq"] == b2.seq
    st_ = ob.stats()
    assert st_["rows_pending"] == 0 and st_["rows_sealed"] == 9 and st_["batches_unacked"] == 3
    assert ob.unacked() == [b1, b2, b3]
    await ob.close()
    ob = await opened(path)
    try:
        assert ob.unacked() == [b1, b2, b3]  # re-read on start, byte-identical
        b4 = await ob.seal(enc, max_readings=1) or None
        assert b4 is None
        await ob.put([rd(10)])
        await ob.flush()
        b4 = await ob.seal(enc, max_readings=1)
        assert b4 is not None
        assert b4.seq > b3.seq  # monotonic across restarts
        assert ob.stats()["next_seq"] > b4.seq
    finally:
        await ob.close()


async def test_failed_encode_changes_nothing_but_burns_its_seq(tmp_path):
    ob = await opened(tmp_path / "o.db")
    try:
        await ob.put([rd(1), rd(2)])
        await ob.flush()
        before = ob.stats()
        seen = []

        def bad(readings, seq):
            seen.append(seq)
            raise RuntimeError("signing key unavailable")

        with pytest.raises(RuntimeError, match="signing key"):
            await ob.seal(bad, max_readings=10)
        with pytest.raises(TypeError, match="bytes"):
            await ob.seal(lambda rs, seq: "text", max_readings=10)  # type: ignore[arg-type,return-value]  # on purpose
        after = ob.stats()
        for key in ("rows_pending", "rows_sealed", "batches_unacked", "bytes"):
            assert after[key] == before[key], key
        assert ob.unacked() == [] and [r.value for _, r in ob.peek()] == [1, 2]
        b = await ob.seal(enc, max_readings=10)
        assert b is not None
        assert b.seq > seen[0]  # a seq encode has seen is never handed out again
    finally:
        await ob.close()


async def test_ack_deletes_whole_batches_idempotently(tmp_path):
    path = tmp_path / "o.db"
    ob = await opened(path)
    await ob.put([rd(n) for n in range(10)])
    await ob.flush()
    b1 = await ob.seal(enc, max_readings=4)
    b2 = await ob.seal(enc, max_readings=4)
    assert b1 is not None and b2 is not None
    bytes_before = ob.stats()["bytes"]
    assert await ob.ack([b1.seq, 999_999, b1.seq]) == 4
    assert await ob.ack([b1.seq]) == 0  # again: nothing, no error
    assert await ob.ack([]) == 0
    st_ = ob.stats()
    assert st_["acked_rows"] == 4 and st_["rows_sealed"] == 4 and st_["batches_unacked"] == 1
    assert st_["bytes"] < bytes_before
    assert ob.unacked() == [b2]
    await ob.close()
    ob = await opened(path)
    try:
        assert ob.unacked() == [b2]  # acked batches never come back
        assert [r.value for _, r in ob.peek()] == [8, 9]
        assert ob.stats()["oldest_unsent_t"] == rd(4).t
    finally:
        await ob.close()


async def test_commits_are_grouped_by_rows_and_by_interval_on_the_clock(tmp_path):
    clock = SimClock()
    ob = await opened(tmp_path / "o.db", clock=clock, commit_interval_s=0.5, commit_rows=100)
    try:
        commits = ob.stats()["commits"]
        await ob.put([rd(n) for n in range(10)])
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert ob.stats()["committed"] == 0  # waits for company or time
        await clock.advance(0.4)
        await asyncio.sleep(0.02)
        assert ob.stats()["committed"] == 0
        await clock.advance(0.2)
        await wait_until(lambda: ob.stats()["committed"] == 10)
        await ob.put([rd(n) for n in range(100)])  # a full group commits without time passing
        await wait_until(lambda: ob.stats()["committed"] == 110)
        await ob.put([rd(1)])
        await ob.flush()  # flush does not wait for the interval either
        assert ob.stats()["committed"] == 111 and ob.stats()["commits"] == commits + 3
    finally:
        await ob.close()


async def test_bounded_queue_backpressure(tmp_path):
    clock = SimClock()
    ob = await opened(tmp_path / "o.db", clock=clock, queue_max=50, commit_interval_s=10.0, commit_rows=10_000)
    try:
        assert ob.put_nowait([rd(n) for n in range(40)])
        assert not ob.put_nowait([rd(n) for n in range(20)])  # would exceed queue_max
        blocked = asyncio.create_task(ob.put([rd(n) for n in range(20)]))
        await asyncio.sleep(0.02)
        assert not blocked.done() and ob.stats()["queue_len"] == 40
        assert not ob.put_nowait([rd(1)])  # no overtaking a waiting put
        await clock.advance(10.0)  # the writer commits; room again
        await asyncio.wait_for(blocked, 5)
        await ob.flush()
        st_ = ob.stats()
        assert st_["rows_pending"] == 60 and st_["queue_len"] == 0
        big = [rd(n) for n in range(120)]  # bigger than queue_max: allowed into an empty queue
        await asyncio.wait_for(ob.put(big), 5)
        await ob.flush()
        assert ob.stats()["rows_pending"] == 180
    finally:
        await ob.close()


async def test_close_commits_what_is_queued(tmp_path):
    path = tmp_path / "o.db"
    ob = await opened(path, clock=SimClock(), commit_interval_s=60.0)
    await ob.put([rd(n) for n in range(25)])
    await ob.close()
    ob = await opened(path)
    try:
        assert ob.stats()["rows_pending"] == 25
    finally:
        await ob.close()


async def test_seal_due_uses_the_ages_on_the_clock(tmp_path):
    clock = SimClock()
    policy = SealPolicy(max_readings=100, max_age_s=30.0, alarm_delay_s=1.0)
    path = tmp_path / "o.db"
    ob = await opened(path, clock=clock)
    await ob.put([rd(1)])
    await ob.flush()
    assert not ob.seal_due(policy)
    await clock.advance(20.0)
    await ob.put([rd(2)], A)
    await ob.flush()
    assert not ob.seal_due(policy)  # the alarm is fresh
    await clock.advance(1.0)
    assert ob.seal_due(policy)
    await ob.seal(enc, max_readings=1)  # takes the alarm; telemetry keeps its age
    assert not ob.seal_due(policy)
    await clock.advance(9.5)
    assert ob.seal_due(policy) and ob.stats()["oldest_pending_age_s"] == pytest.approx(30.5)
    await ob.close()
    ob = await opened(path, clock=clock)
    try:
        assert ob.seal_due(policy)  # restored rows: seal them now
    finally:
        await ob.close()


async def test_eviction_on_a_small_byte_cap(tmp_path):
    path = tmp_path / "o.db"
    cap = 60 * outbox_mod.ROW_BASE
    ob = await opened(path, max_bytes=cap, event_interval_s=None)  # counts exact: no eviction events of its own
    await ob.put([rd(n) for n in range(100, 130)], T)
    await ob.put([rd(n) for n in range(20)], A)
    await ob.put([rd(n) for n in range(20, 30)], E)
    await ob.flush()
    assert ob.stats()["bytes"] == cap and ob.stats()["evicted_rows"] == {"alarm": 0, "event": 0, "telemetry": 0}
    tb = await ob.seal(enc, max_readings=10, min_priority_first=False)  # the oldest: telemetry 100..109
    assert tb is not None
    assert values(tb.payload) == list(range(100, 110)) and tb.priority is T
    await ob.put([rd(n) for n in range(200, 240)], T)
    await ob.flush()
    st_ = ob.stats()
    assert st_["bytes"] <= cap
    assert st_["evicted_rows"]["telemetry"] > 0 and st_["evicted_rows"]["event"] == 0
    assert st_["evicted_rows"]["alarm"] == 0 and st_["evicted_batches"] == 0
    left = [r.value for p, r in ob.peek(1000) if p is T]
    assert left == sorted(left) and left[-1] == 239 and 110 not in left  # oldest unsealed telemetry first
    assert ob.unacked() == [tb]  # sealed telemetry only after unsealed telemetry
    await ob.put([rd(n) for n in range(300, 360)], A)  # 60 alarms fill the cap: everything else goes
    await ob.flush()
    st_ = ob.stats()
    assert st_["bytes"] <= cap
    assert st_["rows_pending_by_priority"] == {"alarm": 60, "event": 0, "telemetry": 0}
    assert ob.unacked() == []  # the sealed batch went whole, never in part
    assert st_["evicted_batches"] == 1 and st_["rows_sealed"] == 0
    assert st_["evicted_rows"]["event"] == 10 and st_["evicted_rows"]["alarm"] == 20
    assert st_["evicted_rows"]["telemetry"] == 30 + 40  # every telemetry reading, counted once
    assert [r.value for _, r in ob.peek(1000)] == list(range(300, 360))
    counts = ob.stats()["evicted_rows"], ob.stats()["evicted_batches"]
    await ob.close()
    ob = await opened(path, max_bytes=cap)  # eviction counts are kept across restarts
    try:
        assert (ob.stats()["evicted_rows"], ob.stats()["evicted_batches"]) == counts
    finally:
        await ob.close()
    ob = await opened(path, max_bytes=cap // 2)  # a lower cap applies on start
    try:
        assert ob.stats()["bytes"] <= cap // 2
    finally:
        await ob.close()


async def test_a_sealed_batch_is_evicted_before_newer_events(tmp_path):
    cap = 30 * outbox_mod.ROW_BASE
    ob = await opened(tmp_path / "o.db", max_bytes=cap)
    try:
        await ob.put([rd(n) for n in range(10)], T)
        await ob.flush()
        b = await ob.seal(enc, max_readings=10)
        assert b is not None
        await ob.put([rd(n) for n in range(10, 40)], E)
        await ob.flush()
        st_ = ob.stats()
        assert ob.unacked() == [] and st_["evicted_batches"] == 1 and st_["evicted_rows"]["telemetry"] == 10
        assert st_["bytes"] <= cap
        assert await ob.ack([b.seq]) == 0  # a late ack of an evicted batch is harmless
    finally:
        await ob.close()


async def test_full_disk_evicts_and_recovers(tmp_path):
    ob = await opened(tmp_path / "o.db", commit_rows=200)
    try:
        await ob.put([rd(n, value="x" * 200) for n in range(2000)])
        await ob.flush()
        conn = ob._store.conn
        assert conn is not None  # open
        pages = await ob._call(lambda: conn.execute("PRAGMA page_count").fetchone()[0])
        await ob._call(lambda: conn.execute(f"PRAGMA max_page_count={pages}"))
        for k in range(5):
            await ob.put([rd(n, value="y" * 200) for n in range(3000 + 200 * k, 3200 + 200 * k)])
        await asyncio.wait_for(ob.flush(), 20)
        st_ = ob.stats()
        assert st_["write_errors"] >= 1 and "full" in st_["last_error"]
        assert st_["evicted_rows"]["telemetry"] > 0 and st_["cap_bytes"] < st_["max_bytes"]
        newest = [r.value for _, r in ob.peek(10_000)]
        assert newest.count("y" * 200) == 1000 and len(newest) == st_["rows_pending"]  # the new rows all got in
    finally:
        await ob.close()


# -- files that are refused -----------------------------------------------------------------------------------
async def _refused(path, exc, match):
    before = path.read_bytes()
    ob = Outbox(path, clock=WallClock())
    with pytest.raises(exc, match=match):
        await ob.start()
    assert path.read_bytes() == before  # never replaced, never emptied
    ob2 = Outbox(path, clock=WallClock())  # and the lock was released
    with pytest.raises(exc):
        await ob2.start()


async def test_foreign_and_corrupt_files_are_refused_untouched(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(1).randbytes(8192))
    await _refused(junk, OutboxCorrupt, "not an SQLite database")
    short = tmp_path / "short.db"
    short.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20)
    await _refused(short, OutboxCorrupt, "not an SQLite database")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users(name TEXT)")
    con.commit()
    con.close()
    await _refused(other, OutboxForeign, "something else.*users")


async def test_damaged_outbox_is_refused(tmp_path):
    path = tmp_path / "o.db"
    ob = await opened(path)
    await ob.put([rd(n, value="v" * 100) for n in range(3000)])
    await ob.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[10 * page : 10 * page + 2000] = random.Random(2).randbytes(2000)
    path.write_bytes(bytes(data))
    await _refused(path, OutboxCorrupt, "corrupt|unreadable|malformed")


async def test_newer_schema_is_refused_and_migrations_are_table_driven(tmp_path, monkeypatch):
    path = tmp_path / "o.db"
    ob = await opened(path)
    await ob.put([rd(1)])
    await ob.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA application_id").fetchone()[0] == outbox_mod.APP_ID
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    await _refused(path, OutboxTooNew, "newer")
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    con.close()
    v2 = SCHEMA_VERSION + 1
    monkeypatch.setitem(outbox_mod.MIGRATIONS, v2, ("ALTER TABLE batches ADD COLUMN note TEXT",))
    monkeypatch.setattr(outbox_mod, "SCHEMA_VERSION", v2)
    ob = await opened(path)
    try:
        assert [r.value for _, r in ob.peek()] == [1]  # migrated in place, nothing lost
    finally:
        await ob.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == v2
    assert "note" in [r[1] for r in con.execute("PRAGMA table_info(batches)")]
    con.close()


async def test_an_empty_file_becomes_a_new_outbox_and_a_second_opener_is_refused(tmp_path):
    path = tmp_path / "sub" / "o.db"
    path.parent.mkdir()
    path.write_bytes(b"")
    ob = await opened(path)
    try:
        with pytest.raises(OutboxBusy, match="already open"):
            await opened(path)
        assert ob.stats()["boot_epoch"] == 1 and ob.stats()["next_seq"] == 1
    finally:
        await ob.close()
    ob = await opened(path)
    await ob.close()


def test_bench_reports_its_figures():
    from tools.bench import outbox as bench

    out = bench.run(readings=5000, batch=1000)
    for key in (
        "outbox_append_per_s",
        "outbox_append_flush_each_per_s",
        "seal_per_s",
        "ack_delete_per_s",
        "db_bytes_per_reading",
        "accounted_bytes_per_reading",
    ):
        assert out[key] > 0, key
