"""Ingest workers (`cabinet ingest run` processes) stopped with SIGKILL and SIGTERM and
restarted while a cabinet sends, through a real Mosquitto: no batch is stranded.

A shared-subscription group member whose session outlives its process keeps its share
of the messages (Mosquitto keeps a persistent session's membership while the session
exists), and the cabinet's re-sends land there too. The workers use non-persistent
sessions (docs/uplink.md, "Ingest workers: sessions"), so the group is only ever the
live workers: whatever was in flight to a dead one is re-sent by the cabinet after
`ack_timeout_s` and reaches a live one.

The cabinet here is the real outbox and uplink (agent.outbox.writer, agent.uplink.client)
in the test's event loop, so the test can stop its producer and watch the outbox drain.
Two workers also materialize the same stored batches at once: each batch's rows are
written once (the unit test at the end makes that interleaving happen on purpose).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from agent.clock import WallClock
from agent.config.model import Uplink as UplinkSettings
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.uplink.client import Uplink
from agent.wire import cose
from agent.wire.batch import encode_body
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.cli.table import main as cli_main
from tools.ingest.core import IngestCore
from tools.ingest.store import Commit, Store
from tools.provision import pki

ROOT = Path(__file__).resolve().parent.parent
CAB = "CAB-R13"
GROUP = "restarts"


class Workers:
    """`cabinet ingest run` processes of one group; each one's log in its own file."""

    def __init__(self, d: Path, port: int, db: Path, key: Path) -> None:
        self.d, self.port, self.db, self.key = d, port, db, key
        self.started = 0
        self.live: list[tuple[asyncio.subprocess.Process, Path]] = []

    async def start(self) -> asyncio.subprocess.Process:
        self.started += 1
        log = self.d / f"worker-{self.started}.log"
        with open(log, "wb") as fh:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tools.cli", "ingest", "run", "--db", str(self.db),
                "--broker", f"127.0.0.1:{self.port}", "--key", str(self.key), "--group", GROUP,
                cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=asyncio.subprocess.DEVNULL, stderr=fh,
            )  # fmt: skip
        self.live.append((proc, log))

        def subscribed() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"ingest worker exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            return b"ingest subscribed" in log.read_bytes()

        await wait_until(subscribed, timeout=30, interval=0.02)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, sig: int) -> None:
        self.live = [(p, log) for p, log in self.live if p is not proc]
        proc.send_signal(sig)
        await asyncio.wait_for(proc.wait(), 20)

    async def close(self) -> None:
        for proc, _ in self.live:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        self.live = []


class Cabinet:
    """The cabinet's outbox and uplink, and a producer appending numbered readings (point "n")."""

    def __init__(self, d: Path, port: int, ingest_key, ack_timeout_s: float) -> None:
        self.d, self.port, self.ack_timeout_s = d, port, ack_timeout_s
        self.ingest_key = ingest_key
        self.flushed: set[int] = set()
        self.tasks: list[asyncio.Task] = []
        self._producing = asyncio.Event()
        self.clock = WallClock()
        self.outbox = Outbox(self.d / "outbox.db", clock=self.clock)

    async def start(self) -> None:
        clock = self.clock
        await self.outbox.start()
        settings = UplinkSettings(
            broker="127.0.0.1",
            port=self.port,
            tls=False,
            batch_max_age_s=0.05,
            batch_max_readings=200,
            ack_timeout_s=self.ack_timeout_s,
            backoff_initial_s=0.1,
            backoff_max_s=0.5,
        )
        pub = self.ingest_key.public_key()
        self.uplink = Uplink(
            settings,
            cabinet_id=CAB,
            outbox=self.outbox,
            signing_key=pki.load_signing_key(self.d / "cab.key"),
            ingest_keys={cose.key_id(pub): pub}.get,
            clock=clock,
            birth=dict,
        )
        self.tasks = [asyncio.create_task(self.uplink.run()), asyncio.create_task(self._produce())]

    async def _produce(self) -> None:
        nxt = 0
        while True:
            await self._producing.wait()
            await self.outbox.put([Reading("n", 1.8e9 + i, i, Quality.GOOD) for i in range(nxt, nxt + 40)])
            await self.outbox.flush()
            self.flushed.update(range(nxt, nxt + 40))
            nxt += 40
            self.uplink.wake()
            await asyncio.sleep(0.02)

    def produce(self, on: bool) -> None:
        (self._producing.set if on else self._producing.clear)()

    async def send(self, n: int) -> None:
        """Append n readings and flush them (one slice, sealed into batches of 200)."""
        start = max(self.flushed, default=-1) + 1
        await self.outbox.put([Reading("n", 1.8e9 + i, i, Quality.GOOD) for i in range(start, start + n)])
        await self.outbox.flush()
        self.flushed.update(range(start, start + n))
        self.uplink.wake()

    def drained(self) -> bool:
        st = self.outbox.stats()
        return st["rows_pending"] + st["rows_sealed"] + st["queue_len"] == 0 and st["batches_unacked"] == 0

    def describe(self) -> str:
        st = self.outbox.stats()
        keep = ("state", "batches_sent", "batches_resent", "batches_acked", "unacked_sent", "reconnects")
        up = {k: v for k, v in self.uplink.snapshot().items() if k in keep}
        return f"outbox: {st['batches_unacked']} batches unacked, {st['rows_pending']} rows unsealed; uplink: {up}"

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.outbox.close()


@pytest.fixture
def rig(broker, tmp_path):
    """(Workers, Cabinet, ingest Store) wired to one broker; the cabinet's key is registered."""
    d = tmp_path / "cab"
    d.mkdir()
    pki.new_signing_key(d / "cab.key")
    cab = pki.load_signing_key(d / "cab.key")
    pki.new_signing_key(tmp_path / "ingest.key")
    ingest_key = pki.load_signing_key(tmp_path / "ingest.key")
    db = tmp_path / "ingest.db"
    store = Store(str(db))
    store.add_key(CAB, cose.key_id(cab.public_key()), pki.public_key_raw(cab.public_key()), time.time())
    workers = Workers(tmp_path, broker.plain_port, db, tmp_path / "ingest.key")
    return workers, lambda ack_timeout_s: Cabinet(d, broker.plain_port, ingest_key, ack_timeout_s), store


def stored_values(store: Store) -> list[int]:
    return [int(r[4]) for r in store.readings(CAB, "n")]


async def wait_stored(store: Store, cabinet: Cabinet, timeout: float) -> list[int]:
    """The stored values once every flushed reading is materialized (workers do that after the ack)."""
    await wait_until(lambda: store.stats()["readings"] >= len(cabinet.flushed), timeout=timeout, interval=0.1)
    return stored_values(store)


def check_exactly_once(values: list[int], flushed: set[int]) -> None:
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} readings were stored twice"
    missing = flushed - set(values)
    assert not missing, f"{len(missing)} flushed readings never arrived, e.g. {sorted(missing)[:5]}"


@pytest.mark.integration  # ingest worker processes, stopped, against a real broker
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_a_stopped_worker_keeps_no_share_of_the_group(rig, sig):
    """A worker stopped for good (scaled down) must not keep receiving: every batch sent
    afterwards reaches the live worker the first time, without a single re-send."""
    workers, make_cabinet, store = rig
    cabinet = make_cabinet(10.0)  # longer than the whole test: any re-send is a failure
    try:
        gone = await workers.start()
        await workers.stop(gone, sig)
        await workers.start()
        await cabinet.start()
        for _ in range(8):
            await cabinet.send(400)  # two batches each
        try:
            await wait_until(cabinet.drained, timeout=8, interval=0.05)
        except AssertionError:
            raise AssertionError(f"batches stranded in the stopped worker's session: {cabinet.describe()}") from None
        assert cabinet.uplink.stats["batches_resent"] == 0, cabinet.describe()
        check_exactly_once(await wait_stored(store, cabinet, 10), cabinet.flushed)
    finally:
        await workers.close()
        await cabinet.close()
        store.close()


@pytest.mark.integration  # an ingest worker process, frozen and stopped, against a real broker
async def test_a_worker_stopped_with_sigterm_first_acknowledges_what_it_was_given(rig):
    """The only worker is frozen (SIGSTOP) while 30 batches are routed to it, then gets SIGTERM:
    it leaves the group, stores and acknowledges all 30 (those in its socket and those the
    broker still held for it) and exits. Nobody else could have: no re-send was needed."""
    workers, make_cabinet, store = rig
    cabinet = make_cabinet(30.0)  # longer than the whole test: any re-send is a failure
    try:
        worker = await workers.start()
        await cabinet.start()
        await wait_until(lambda: cabinet.uplink.state == "connected", timeout=10)
        worker.send_signal(signal.SIGSTOP)
        for _ in range(15):
            await cabinet.send(400)  # two batches each
        await wait_until(lambda: cabinet.uplink.stats["batches_sent"] == 30, timeout=10)  # the broker has them all
        worker.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGCONT)
        assert await asyncio.wait_for(worker.wait(), 20) == 0
        assert cabinet.drained(), cabinet.describe()
        assert cabinet.uplink.stats["batches_resent"] == 0
        log = (workers.d / f"worker-{workers.started}.log").read_text()
        assert "ingest stopping: left the group" in log, log[-2000:]
        assert store.stats()["batches_ok"] == 30
    finally:
        await workers.close()
        await cabinet.close()
        store.close()


@pytest.mark.integration  # 21 ingest worker processes, stopped, against a real broker
async def test_twenty_restarts_and_kills_under_load_strand_nothing(rig):
    """20 workers stopped (SIGKILL and SIGTERM alternately) while the cabinet sends: first one
    worker restarted over and over (mostly a replacement started before the old one goes, twice
    with nobody serving for a moment), then two workers, one of them stopped and restarted at
    random. Within 2 × ack_timeout_s of the last restart the outbox is empty; every reading
    is stored exactly once."""
    ack_s = 2.0
    rng = random.Random(13)
    workers, make_cabinet, store = rig
    cabinet = make_cabinet(ack_s)
    signals = [signal.SIGKILL, signal.SIGTERM]
    kills = 0
    try:
        current = await workers.start()
        await cabinet.start()
        cabinet.produce(True)
        for i in range(10):  # phase 1: one worker
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            if i in (4, 8):  # nobody serving for a moment: those batches reach no one and are re-sent
                await workers.stop(current, signals[kills % 2])
                current = await workers.start()
            else:
                replacement = await workers.start()
                await workers.stop(current, signals[kills % 2])
                current = replacement
            kills += 1
        pair = [current, await workers.start()]  # phase 2: two workers
        for _ in range(10):
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            victim = rng.randrange(2)
            await workers.stop(pair[victim], signals[kills % 2])
            last_kill = time.monotonic()
            kills += 1
            pair[victim] = await workers.start()
        last_restart = time.monotonic()
        cabinet.produce(False)
        try:
            await wait_until(cabinet.drained, timeout=2 * ack_s, interval=0.02)
        except AssertionError:
            raise AssertionError(
                f"outbox not drained within {2 * ack_s} s of the last restart: {cabinet.describe()}"
            ) from None
        drained = time.monotonic()
        print(
            f"\n{kills} stops, {len(cabinet.flushed)} readings; drained {drained - last_restart:.2f} s after "
            f"the last restart, {drained - last_kill:.2f} s after the last kill; {cabinet.describe()}"
        )
        values = await wait_stored(store, cabinet, 20)
    finally:
        await workers.close()
        await cabinet.close()
    st = store.stats()
    store.close()
    assert kills == 20
    assert len(cabinet.flushed) > 5000, len(cabinet.flushed)  # the pipeline really was under load
    check_exactly_once(values, cabinet.flushed)
    assert st["rejected_total"] == 0, st


def test_two_workers_materializing_the_same_batches_write_their_rows_once(tmp_path):
    """Worker A decodes the new batches, worker B materializes them meanwhile, then A saves:
    A writes nothing (B moved them out of state new), and no reading row is doubled."""
    pki.new_signing_key(tmp_path / "cab.key")
    k = pki.load_signing_key(tmp_path / "cab.key")
    db = str(tmp_path / "ingest.db")
    a, b = Store(db), Store(db)
    try:
        a.add_key(CAB, cose.key_id(k.public_key()), pki.public_key_raw(k.public_key()), time.time())
        topic = cose.telemetry_topic("city/v1", CAB)
        kid = cose.key_id(k.public_key())
        commit = Commit()
        core = IngestCore(a)
        for seq in range(1, 6):
            body = encode_body([Reading("n", 1.8e9 + seq * 10 + i, seq * 10 + i, Quality.GOOD) for i in range(10)])
            env = cose.seal_batch(body, key=k, kid=kid, cabinet=CAB, boot=1, seq=seq, topic=topic)
            assert core.handle(topic, env, time.time(), commit).kind == "stored"
        bad = cose.seal_batch(b"\x07garbage", key=k, kid=kid, cabinet=CAB, boot=1, seq=6, topic=topic)
        assert core.handle(topic, bad, time.time(), commit).kind == "stored"
        a.commit(commit)
        decoded_by_a = a.decode_new()
        assert len(decoded_by_a) == 6
        assert b.materialize() == (6, 50)
        assert a.save_decoded(decoded_by_a) == (0, 0)
        values = stored_values(a)
        assert sorted(values) == sorted(set(values)) and len(values) == 50
        st = a.stats()
        assert (st["readings"], st["rejected"], st["batches_to_materialize"]) == (50, {"bad_body": 1}, 0)
    finally:
        a.close()
        b.close()


def test_an_ingest_keepalive_out_of_range_is_a_clear_error(tmp_path, capsys):
    pki.new_signing_key(tmp_path / "ingest.key")
    argv = ["ingest", "run", "--db", str(tmp_path / "i.db"), "--key", str(tmp_path / "ingest.key"), "--keepalive", "0"]
    assert cli_main(argv) == 2
    assert "--keepalive 0: give 1..65535 seconds" in capsys.readouterr().err
