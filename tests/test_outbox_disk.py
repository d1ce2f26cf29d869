"""A full disk never stops the outbox's producers, sealing or acknowledging (issue 13).

Pure parts with plain numbers (the disk plan, the lowered cap, what the queue drops), the
queue itself, and the real Outbox on real SQLite files: while commits fail, put() never
waits and drops the oldest telemetry (alarms last), seal()/ack() raise only OutboxError,
close() does not hang. Then, marked integration, the real thing: the data dir on a small
tmpfs (mounted by the test, unmounted in a finally; these tests run as root here, and are
skipped with the reason when mount is not permitted: a loop device needs the same right,
and a file size limit (RLIMIT_FSIZE) limits one file, not the filesystem SQLite, the WAL
and the reserve share, so it would not test the mechanism), filled by a filler file:
evictions counted and reported, delivery going on, a restart on the full disk, the whole
agent on the simulated cabinet with fresh points, and everything resuming once the filler
is deleted. The uplink against a real broker and ingest on a full disk:
tests/test_outbox_disk_uplink.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.clock import WallClock
from agent.model import Priority, Quality, Reading
from agent.outbox.policy import FILE_FACTOR, MIB, MIN_CAP, SHM_BYTES, Candidate, DiskPolicy, Kind, SealPolicy, shed
from agent.outbox.queue import WriteQueue
from agent.outbox.writer import EVICTED_POINT, Outbox, OutboxError, OutboxFull, OutboxWriteError
from tests.conftest import wait_until

A, E, T = Priority.ALARM, Priority.EVENT, Priority.TELEMETRY


def enc(readings: list[Reading], seq: int) -> bytes:
    return json.dumps({"seq": seq, "r": [[r.point, r.value] for r in readings]}).encode()


def rd(n: int, point: str = "m.v") -> Reading:
    return Reading(point, 1_700_000_000.0 + n, float(n), Quality.GOOD)


def batch(start: int, n: int = 500) -> list[Reading]:
    return [rd(i, f"dev.p{i % 40}") for i in range(start, start + n)]


async def opened(path: Path, **kw) -> Outbox:
    ob = Outbox(path, clock=kw.pop("clock", None) or WallClock(), **kw)
    await ob.start()
    return ob


def events(ob: Outbox, acked: list[bytes] | None = None) -> list[dict]:
    """The outbox's eviction reports: in batches (sealed ones and the `acked` payloads) and waiting."""
    sealed = [(p, v) for b in [*(acked or []), *(s.payload for s in ob.unacked())] for p, v in json.loads(b)["r"]]
    waiting = [(r.point, r.value) for _, r in ob.peek(1_000_000)]
    return [json.loads(v) for p, v in [*sealed, *waiting] if p == EVICTED_POINT]


# -- the pure parts -------------------------------------------------------------------------------------------
def test_the_disk_plan_fits_the_filesystem():
    big = DiskPolicy(256 * MIB).plan(free_bytes=30_000 * MIB, own_bytes=0)
    assert big.cap == 256 * MIB and big.reserve == 8 * MIB and big.wal_pages == 1000  # max_mb decides
    for size in (6, 8, 12, 20):  # the campaign's filesystems: the cap fits, with the WAL and the reserve
        p = DiskPolicy(256 * MIB).plan(free_bytes=size * MIB, own_bytes=0)
        assert p.budget == size * MIB // 2
        assert p.cap * FILE_FACTOR + p.wal_limit + p.reserve + SHM_BYTES <= p.budget
        assert p.cap >= p.budget // 3 and p.reserve >= p.wal_limit  # useful, and room for a checkpoint
    own = DiskPolicy(256 * MIB).plan(free_bytes=0, own_bytes=8 * MIB)  # its own files count: a restart
    assert own == DiskPolicy(256 * MIB).plan(free_bytes=8 * MIB, own_bytes=0)
    kept = DiskPolicy(256 * MIB).plan(free_bytes=0, own_bytes=2 * MIB, stored=3 * MIB)
    assert kept.cap == 3 * MIB  # a restart on a full disk does not evict what is stored
    assert DiskPolicy(1000).plan(free_bytes=10 * MIB, own_bytes=0).cap == 1000  # a lower max_bytes wins
    with pytest.raises(ValueError, match="share"):
        DiskPolicy(1000, share=0)


def test_after_a_full_disk_the_cap_stops_the_growth_and_the_reserve_covers_the_next_recovery():
    lowered = DiskPolicy.lowered
    assert lowered(10 * MIB, 5 * MIB) == int(4.5 * MIB)  # a tenth below what is stored
    assert lowered(int(4.5 * MIB), 5 * MIB) == int(4.5 * MIB)  # nothing could be evicted meanwhile: it stays
    assert lowered(int(4.5 * MIB), int(4.4 * MIB)) == int(4.4 * MIB * 0.9)
    assert lowered(2 * MIB, 0) == lowered(2 * MIB, 70_000) == MIN_CAP  # never below MIN_CAP
    p = DiskPolicy(256 * MIB).plan(free_bytes=8 * MIB, own_bytes=0)
    # after a full disk: the reserve is what the next recovery needs; the store may grow into the rest
    assert DiskPolicy(256 * MIB).after_full(p, 10 * MIB, p.cap, MIB, 0) == (p.cap, p.wal_limit)
    assert DiskPolicy(256 * MIB).after_full(p, p.wal_limit + 1000, p.cap, MIB, 0) == (int(0.9 * MIB), p.wal_limit)
    assert DiskPolicy(256 * MIB).after_full(p, 4096, p.cap, MIB, 0) == (int(0.9 * MIB), 4096)
    assert not DiskPolicy.roomy(p.reserve + p.wal_limit - 1, p) and DiskPolicy.roomy(p.reserve + p.wal_limit, p)


def test_shed_drops_the_oldest_telemetry_first_and_alarms_last():
    def c(prio, key, n):
        return Candidate(prio, Kind.ROWS, key, 0, n)

    queued = [c(A, 1, 5), c(T, 2, 10), c(E, 3, 5), c(T, 4, 10), c(A, 5, 5)]
    assert shed(0, queued) == []
    assert [x.key for x in shed(10, queued)] == [2]
    assert [x.key for x in shed(11, queued)] == [2, 4]
    assert [x.key for x in shed(25, queued)] == [2, 4, 3]
    assert [x.key for x in shed(40, queued)] == [2, 4, 3, 1, 5]
    incoming = c(T, 9, 3)  # the newest telemetry goes before any event or alarm
    assert [x.key for x in shed(23, [*queued, incoming])] == [2, 4, 9]


def test_the_write_queue_takes_puts_back_sheds_and_settles():
    q = WriteQueue()
    for prio, n in ((T, 3), (A, 2), (T, 4), (E, 1)):
        q.add(int(prio), [()] * n, n * 50, 0.0)
    assert q.appended == 10 and q.uncommitted == 10 and not q.settled(3)
    taken = q.take(max_bytes=299)  # the oldest items up to 299 bytes: 3 + 2 rows of 50
    assert [len(it.rows) for it in taken] == [3, 2] and q.flying == 5 and q.queued == 5
    q.put_back()
    assert [len(it.rows) for it in q.items] == [3, 2, 4, 1] and q.flying == 0
    assert q.shed(4, int(T), 2)  # the oldest telemetry (3) and then the next (4) go; the incoming stays
    assert q.dropped == [0, 0, 7] and [it.prio for it in q.items] == [int(A), int(E)] and q.queued == 3
    assert not q.shed(2, int(T), 2) and q.dropped == [0, 0, 9]  # the incoming telemetry is dropped, not alarms
    q.take(10**9)
    assert not q.settled(10) and q.done() == 3 and q.settled(10) and q.committed == 3


# -- the real Outbox while commits fail (real SQLite files, no mount) ------------------------------------------
async def _refuse_writes(ob: Outbox, on: bool) -> None:
    conn = ob._store.conn
    assert conn is not None
    await ob._call(lambda: conn.execute(f"PRAGMA query_only={int(on)}"))


async def test_put_never_waits_while_commits_fail_and_drops_telemetry_first(tmp_path):
    ob = await opened(tmp_path / "o.db", queue_max=100, commit_interval_s=0.01, event_interval_s=0.0)
    try:
        await ob.put(batch(0, 20))
        await asyncio.wait_for(ob.flush(), 20)
        sealed = await ob.seal(enc, max_readings=10)
        assert sealed is not None
        await _refuse_writes(ob, True)  # every commit fails from here: the writer cannot empty the queue
        await ob.put(batch(20, 90))
        await wait_until(lambda: ob.stats()["writes_failing"])
        await asyncio.wait_for(ob.put([rd(n, "alarm.x") for n in range(5)], A), 1)
        for k in range(10):  # the old outbox waited here for ever: pollers stopped, points went stale
            await asyncio.wait_for(ob.put(batch(200 + 50 * k, 50)), 1)
        assert ob.put_nowait([rd(1, "event.x")], E)
        st = ob.stats()
        assert st["dropped_rows"]["telemetry"] >= 400 and st["dropped_rows"]["alarm"] == 0
        assert st["dropped_rows"]["event"] == 0 and st["queue_len"] <= 100 + 2
        assert st["write_errors"] >= 1 and "readonly" in st["last_error"]
        before = ob.stats()
        with pytest.raises(OutboxWriteError, match=r"seal failed.*nothing changed"):  # not a raw sqlite3 error
            await ob.seal(enc, max_readings=10)
        with pytest.raises(OutboxWriteError, match="ack failed"):
            await ob.ack([sealed.seq])
        after = ob.stats()
        for key in ("rows_pending", "rows_sealed", "batches_unacked", "bytes", "next_seq"):
            assert after[key] == before[key] or key == "next_seq", key
        assert ob.unacked() == [sealed]
        assert not ob.seal_due(SealPolicy(max_readings=1, max_age_s=0.0))  # a failed seal waits before the next try
        await _refuse_writes(ob, False)  # the disk takes writes again: the queue is committed
        await asyncio.wait_for(ob.flush(), 10)
        await asyncio.wait_for(ob.flush(), 20)  # and the last report, queued after that commit
        st = ob.stats()
        assert not st["writes_failing"] and st["queue_len"] == 0
        stored = [r.point for _, r in ob.peek(100_000)]
        assert stored.count("alarm.x") == 5 and "event.x" in stored
        reports = events(ob)
        assert reports and sum(e["dropped_rows"]["telemetry"] for e in reports) == st["dropped_rows"]["telemetry"]
        assert await ob.ack([sealed.seq]) == 10
        assert (await ob.seal(enc, max_readings=10_000)) is not None
    finally:
        await asyncio.wait_for(ob.close(), 20)


async def test_close_does_not_hang_while_commits_fail(tmp_path):
    ob = await opened(tmp_path / "o.db", commit_interval_s=0.01)
    await ob.put(batch(0, 10))
    await asyncio.wait_for(ob.flush(), 20)
    await _refuse_writes(ob, True)
    await ob.put(batch(10, 30))
    await wait_until(lambda: ob.stats()["writes_failing"])
    await asyncio.wait_for(ob.close(), 10)  # tries a few commits, then gives the queue up (logged, counted)
    assert ob.stats()["dropped_rows"]["telemetry"] == 30
    ob = await opened(tmp_path / "o.db")
    try:
        assert len(ob.peek(1000)) == 10  # what was committed is there
    finally:
        await asyncio.wait_for(ob.close(), 20)


async def test_evictions_by_the_byte_cap_are_counted_and_reported_as_events(tmp_path):
    ob = await opened(tmp_path / "o.db", max_bytes=200 * 50, event_interval_s=3600.0)
    try:
        for k in range(4):
            await ob.put(batch(100 * k, 100))
            await asyncio.wait_for(ob.flush(), 20)
        st = ob.stats()
        assert st["evicted_rows"]["telemetry"] > 0 and st["bytes"] <= st["cap_bytes"]
        reports = events(ob)
        assert len(reports) == 1  # the first eviction at once, then at most one an hour
        first = reports[0]
        assert first["evicted_rows"]["telemetry"] > 0 and first["disk_full"] is False
        assert first["cap_bytes"] == st["cap_bytes"] and first["dropped_rows"] == {
            "alarm": 0,
            "event": 0,
            "telemetry": 0,
        }
        pending = ob.stats()["rows_pending_by_priority"]
        assert pending["event"] == 1  # the report is an EVENT: evicted after all telemetry
    finally:
        await asyncio.wait_for(ob.close(), 20)


# -- a small filesystem -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(where: Path, size: str = "8m") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield where
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path, name: str = "filler") -> Path:
    """Take every free byte of the filesystem with a file."""
    path = where / name
    with open(path, "ab", buffering=0) as f:
        for chunk in (2**20, 2**16, 2**12):
            try:
                while f.write(b"\1" * chunk):
                    pass
            except OSError:
                pass
    return path


def free(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


async def drain(ob: Outbox, payloads: list[bytes] | None = None) -> int:
    """Seal and acknowledge everything (the payloads acknowledged are added to `payloads`)."""
    acked = 0
    while (b := await ob.seal(enc, max_readings=2000)) is not None:
        (payloads if payloads is not None else []).append(b.payload)
        acked += await ob.ack([b.seq])
    for b in ob.unacked():
        (payloads if payloads is not None else []).append(b.payload)
        acked += await ob.ack([b.seq])
    return acked


@pytest.mark.integration  # mounts a tmpfs
@pytest.mark.parametrize("wal", ["checkpointed", "truncated", "not checkpointed"])
def test_what_sqlite_needs_to_free_space_on_a_full_disk(tmp_path, wal):
    """The facts the outbox's reserve is built on (docs/uplink.md, "A full disk"): on a full disk
    a DELETE commits only into WAL space the file already has (a checkpointed WAL is reused from
    its start), and a checkpoint needs the database file to grow by the pages only the WAL holds."""
    with small_disk(tmp_path / "disk", "16m") as disk:
        c = sqlite3.connect(disk / "o.db", isolation_level=None)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA wal_autocheckpoint=0")
            c.execute("CREATE TABLE rows(id INTEGER PRIMARY KEY, point INT, t REAL, v REAL)")
            for k in range(0, 20_000, 500):  # 40 transactions, ~0.9 MB
                with c:
                    c.execute("BEGIN")
                    c.executemany(
                        "INSERT INTO rows(point, t, v) VALUES (?, ?, ?)", [(i, i, i) for i in range(k, k + 500)]
                    )
            if wal != "not checkpointed":
                c.execute(f"PRAGMA wal_checkpoint({'RESTART' if wal == 'checkpointed' else 'TRUNCATE'})").fetchall()
            fill(disk)
            if wal == "checkpointed":  # its frames are reused: the DELETE needs no new byte
                c.execute("DELETE FROM rows WHERE id <= 2000")
                return
            with pytest.raises(sqlite3.OperationalError, match="full"):
                c.execute("DELETE FROM rows WHERE id <= 2000")  # ~27 WAL frames the file does not have
            if wal == "not checkpointed":
                with pytest.raises(sqlite3.OperationalError, match="full"):
                    c.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()  # the database file must grow
        finally:
            c.close()


@pytest.mark.integration  # mounts a tmpfs
async def test_alone_on_a_small_disk_the_cap_fits_and_no_write_ever_fails(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        ob = await opened(disk / "outbox.db")
        try:
            st = ob.stats()
            assert (
                st["disk_cap_bytes"] < 4 * MIB and st["cap_bytes"] == st["disk_cap_bytes"] and st["reserve_bytes"] > 0
            )
            for k in range(200):  # 100,000 readings: ~5 MB accounted, far over what fits
                await asyncio.wait_for(ob.put(batch(500 * k)), 5)
                if k % 20 == 19:
                    await asyncio.wait_for(ob.flush(), 20)
                    assert await ob.seal(enc, max_readings=2000) is not None
            await asyncio.wait_for(ob.flush(), 20)
            st = ob.stats()
            assert st["write_errors"] == 0 and not st["disk_full"] and st["bytes"] <= st["cap_bytes"]
            assert st["evicted_rows"]["telemetry"] > 0 and free(disk) >= 3 * MIB  # half the disk left to others
            acked: list[bytes] = []
            assert await drain(ob, acked) > 0 and ob.stats()["bytes"] == 0
            assert events(ob, acked)  # the evictions were reported, in the batches
        finally:
            await asyncio.wait_for(ob.close(), 20)


@pytest.mark.integration  # mounts a tmpfs
async def test_a_full_disk_evicts_reports_keeps_delivering_and_recovers(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        ob = await opened(disk / "outbox.db", event_interval_s=0.0)
        try:
            for k in range(10):
                await ob.put(batch(500 * k))
            await asyncio.wait_for(ob.flush(), 20)
            first = await ob.seal(enc, max_readings=2000)
            assert first is not None
            reserve0 = ob.stats()["reserve_bytes"]
            filler = fill(disk)
            assert free(disk) < 4096
            n = 5000
            for k in range(60):  # 30,000 readings more into a full disk: never waits
                await asyncio.wait_for(ob.put(batch(n)), 2)
                n += 500
                if k % 10 == 0:  # sealing and acknowledging go on
                    b = await ob.seal(enc, max_readings=2000)
                    assert b is not None and await ob.ack([b.seq]) == 2000
            await asyncio.wait_for(ob.flush(), 10)
            st = ob.stats()
            assert st["disk_full"] and st["disk_full_events"] >= 1
            assert 0 < st["reserve_bytes"] < reserve0  # released, and held again for the next recovery
            assert st["cap_bytes"] < st["disk_cap_bytes"] and st["evicted_rows"]["telemetry"] > 0
            assert not st["writes_failing"] and st["dropped_rows"] == {"alarm": 0, "event": 0, "telemetry": 0}
            assert max(r.t for _, r in ob.peek(100_000) if r.point.startswith("dev.")) == 1_700_000_000.0 + n - 1
            full = [e for e in events(ob) if e["disk_full"]]
            assert full and full[0]["evicted_rows"]["telemetry"] > 0  # reported to the cloud
            filler.unlink()  # space returns: reserve and the planned cap come back by themselves
            await ob.put(batch(n))
            await asyncio.wait_for(ob.flush(), 20)
            st = ob.stats()
            assert not st["disk_full"] and st["cap_bytes"] == st["disk_cap_bytes"] and st["reserve_bytes"] > 0
            assert await drain(ob) > 0
            assert ob.stats()["rows_pending"] + ob.stats()["rows_sealed"] == 0
        finally:
            await asyncio.wait_for(ob.close(), 20)


@pytest.mark.integration  # mounts a tmpfs
async def test_a_seal_the_disk_refuses_changes_nothing_and_resumes_with_space(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        ob = await opened(disk / "outbox.db", queue_max=1000, commit_interval_s=0.01)
        try:
            await ob.put(batch(0, 3000))
            await asyncio.wait_for(ob.flush(), 20)
            sealed = await ob.seal(enc, max_readings=1000)
            assert sealed is not None
            st_, conn = ob._store, ob._store.conn
            assert conn is not None
            # the worst case: no reserve left and an empty WAL, so nothing the outbox holds can be given back
            await ob._call(lambda: (st_.reserve.release(), conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()))
            filler = fill(disk)
            before = ob.stats()
            with pytest.raises(OutboxFull, match=r"disk is full.*nothing changed"):
                await ob.seal(enc, max_readings=1000)
            with pytest.raises(OutboxError):
                await ob.ack([sealed.seq])
            after = ob.stats()
            for key in ("rows_pending", "rows_sealed", "batches_unacked", "bytes"):
                assert after[key] == before[key], key
            assert ob.unacked() == [sealed] and len(ob.peek(10_000)) == 2000
            for k in range(10):  # the producers do not wait: the queue keeps the newest, drops the oldest
                await asyncio.wait_for(ob.put(batch(3000 + 500 * k)), 2)
            assert ob.stats()["writes_failing"] and ob.stats()["dropped_rows"]["telemetry"] > 0
            filler.unlink()
            await asyncio.wait_for(ob.flush(), 15)  # commits resume by themselves
            assert await ob.ack([sealed.seq]) == 1000
            assert await drain(ob) >= 2000
        finally:
            await asyncio.wait_for(ob.close(), 20)


@pytest.mark.integration  # mounts a tmpfs
async def test_a_restart_on_a_full_disk_opens_and_records_its_boot_when_it_can(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "outbox.db"
        ob = await opened(path)
        await ob.put(batch(0, 5000))
        await asyncio.wait_for(ob.flush(), 20)
        boot = ob.boot_epoch
        await asyncio.wait_for(ob.close(), 20)
        reserve = Path(f"{path}-reserve")
        assert reserve.stat().st_size > 0
        reserve.unlink()  # no reserve this time, and 32 KiB free: room for SQLite's WAL index, not a WAL frame
        room = disk / "room"
        room.write_bytes(bytes(32 * 1024))
        filler = fill(disk)
        room.unlink()
        ob = await opened(path, commit_interval_s=0.01)  # the old outbox did not start (its boot did not fit)
        try:
            assert ob.boot_epoch == boot + 1 and ob.stats()["rows_pending"] == 5000
            await asyncio.wait_for(ob.put(batch(5000, 100)), 2)
            await wait_until(lambda: ob.stats()["writes_failing"])
            filler.unlink()
            await asyncio.wait_for(ob.flush(), 15)
            assert ob.stats()["rows_pending"] == 5100
        finally:
            await asyncio.wait_for(ob.close(), 20)
        con = sqlite3.connect(path)
        try:
            assert dict(con.execute("SELECT key, value FROM meta"))["boot_epoch"] == boot + 1  # written late
        finally:
            con.close()
