"""Whole programs against a real Mosquitto: a provisioned cabinet (`cabinet run` on the
simulated board) over mutual TLS with the fleet ACL, and the newcomer's
`cabinet run --broker ... --with-ingest`; verified rows arrive in the ingest's store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from agent.clock import WallClock
from tests.broker import acl_broker, broker  # noqa: F401
from tests.conftest import wait_until
from tools.ingest.service import IngestService
from tools.ingest.store import Store
from tools.provision import pki
from tools.provision.identity import provision

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration  # `cabinet run` processes against a real broker


async def cabinet(*args: str, data_dir: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        *args,
        "--data-dir",
        str(data_dir),
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def status(data_dir: Path) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "status",
        "--json",
        "--data-dir",
        str(data_dir),
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return json.loads(out) if proc.returncode == 0 else {}


async def stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return err


async def test_provisioned_cabinet_over_mutual_tls_rows_arrive_verified(acl_broker, tmp_path):
    pki.new_signing_key(tmp_path / "ingest.key")
    ingest_key = pki.load_signing_key(tmp_path / "ingest.key")
    store = Store(str(tmp_path / "ingest.db"))
    info = provision(
        "CAB-E2E",
        tmp_path / "cab",
        ca_dir=acl_broker.pki_dir,
        broker_host="127.0.0.1",
        broker_port=acl_broker.tls_port,
        registry=lambda c, kid, raw: store.add_key(c, kid, raw, time.time()),
        ingest_key=pki.public_key_raw(ingest_key.public_key()).hex(),
    )
    config = Path(info["files"]["config"])
    config.write_text(config.read_text() + "batch_max_age_s = 1.0\n")  # [uplink] is the last section
    service = IngestService(
        store,
        broker="127.0.0.1",
        port=acl_broker.service_port,
        ack_key=ingest_key,
        clock=WallClock(),
        tls=acl_broker.tls_context("ingest"),
        group="e2e",
    )
    ingest = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 10)
    data = tmp_path / "data"
    proc = await cabinet("run", "--config", str(config), data_dir=data)
    try:
        wanted = {"climate.temperature", "meter_main.voltage_l1", "dio.door", "gps.latitude", "agent.outbox_rows"}
        await wait_until(lambda: wanted <= {r[1] for r in store.readings("CAB-E2E")}, timeout=40, interval=0.5)
        st = {}
        for _ in range(50):
            st = await status(data)
            if st.get("uplink", {}).get("batches_acked", 0) >= 1:
                break
            await asyncio.sleep(0.2)
        assert st["uplink"]["state"] == "connected" and st["uplink"]["acks_rejected"] == 0
        assert st["outbox"]["batches_unacked"] <= 2
        s = store.stats()
        assert s["rejected_total"] == 0 and s["cabinets"] == 1
    finally:
        err = await stop(proc)
        ingest.cancel()
        await asyncio.gather(ingest, return_exceptions=True)
        store.close()
    assert proc.returncode == 0, err.decode()[-2000:]


async def test_newcomer_run_with_broker_and_local_ingest(broker, tmp_path):
    data = tmp_path / "data"
    proc = await cabinet("run", "--broker", f"127.0.0.1:{broker.plain_port}", "--with-ingest", data_dir=data)
    db = data / "ingest" / "ingest.db"
    try:
        await wait_until(lambda: db.exists(), timeout=20)
        # without an [uplink] section, --broker seals every 10 s (DEV_BATCH_AGE_S)
        deadline = time.monotonic() + 60
        rows = 0
        while time.monotonic() < deadline and rows == 0:
            await asyncio.sleep(1.0)
            store = Store(str(db))
            rows = store.stats()["readings"]
            store.close()
        assert rows > 50
        st = await status(data)
        assert st["uplink"]["state"] == "connected"
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err.decode()[-2000:]
