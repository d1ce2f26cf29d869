"""The cabinet (outbox + uplink) killed with SIGKILL at random moments, 50 times, while an
ingest stores and acknowledges its batches through a real Mosquitto: afterwards every
reading that reached the outbox (flushed before the kill) is stored exactly once.
A longer soak: CABINET_UPLINK_SOAK=500 python -m pytest tests/test_uplink_crash.py."""

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
from agent.wire import cose
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.ingest.service import IngestService
from tools.ingest.store import Store
from tools.provision import pki

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration  # agent processes, SIGKILLed, against a real broker
KILLS = int(os.environ.get("CABINET_UPLINK_SOAK", "50"))


async def start_agent(d: Path, port: int, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "uplink_agent.py"),
        str(d),
        str(port),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None  # a PIPE
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line.strip() == b"ready", line
    return proc


async def test_agent_killed_at_random_moments_every_flushed_reading_arrives_once(broker, tmp_path):
    rng = random.Random(1234)
    d = tmp_path / "cab"
    d.mkdir()
    pki.new_signing_key(d / "cab.key")
    cab = pki.load_signing_key(d / "cab.key")
    pki.new_signing_key(tmp_path / "ingest.key")
    ingest_key = pki.load_signing_key(tmp_path / "ingest.key")
    (d / "ingest.pub").write_text(pki.public_key_raw(ingest_key.public_key()).hex())
    store = Store(str(tmp_path / "ingest.db"))
    store.add_key("CAB-K9", cose.key_id(cab.public_key()), pki.public_key_raw(cab.public_key()), time.time())
    service = IngestService(
        store, broker="127.0.0.1", port=broker.plain_port, ack_key=ingest_key, clock=WallClock(), group="k9"
    )
    ingest = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 10)
    flushed: set[int] = set()
    try:
        for _ in range(KILLS):
            proc = await start_agent(d, broker.plain_port)
            assert proc.stdout is not None  # a PIPE
            deadline = asyncio.get_running_loop().time() + rng.uniform(0.05, 0.6)
            while asyncio.get_running_loop().time() < deadline:
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), deadline - asyncio.get_running_loop().time())
                except TimeoutError:
                    break
                parts = line.split()
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    flushed.update(range(int(parts[0]), int(parts[1]) + 1))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        proc = await start_agent(d, broker.plain_port, "--drain")
        await asyncio.wait_for(proc.wait(), 60)
        assert proc.returncode == 0
        await wait_until(lambda: store.stats()["readings"] >= len(flushed), timeout=30)
        await asyncio.sleep(0.3)
    finally:
        ingest.cancel()
        await asyncio.gather(ingest, return_exceptions=True)
    values = [int(r[4]) for r in store.readings("CAB-K9", "n")]
    store.close()
    assert len(flushed) > 500, len(flushed)  # the test really exercised the pipeline
    assert len(values) == len(set(values)), "a reading was stored twice"
    missing = flushed - set(values)
    assert not missing, f"{len(missing)} flushed readings never arrived, e.g. {sorted(missing)[:5]}"
