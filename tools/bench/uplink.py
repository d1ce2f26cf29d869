"""Uplink benchmarks (python -m tools.bench uplink --json).

* bytes_per_value: MQTT payload bytes per reading, envelope and signature included,
  (a) W1 readings (10 devices x 15 values per second) sealed as the uplink seals them
  (2000 readings per batch, batch format v2 naming the W1 catalogue; v1 beside it), target
  <= 0.5, (b) the simulated cabinet run by the real agent for 30 simulated minutes (at 20x)
  with its default sealing policy (2000 readings or 300 s), with a local ingest
  acknowledging, measured from the batches the uplink actually published (v2 once its
  catalogue is acknowledged; the catalogue's own bytes, sent once, are reported beside),
  target <= 3.
* outbox_append_per_s: durable appends, synchronous=FULL (tools.bench.outbox). Target >= 50,000.
* drain_per_s: N queued readings (default 1,000,000) drained end to end: seal and sign
  (this process) -> Mosquitto -> `cabinet ingest` process (verify, dedupe, store in
  SQLite, ack) -> delete. Target >= 100,000 readings/s.
* ingest_verify_ratio: the ingest's verify+dedupe+store path on one core, in batches per
  CPU-second, divided by raw Ed25519 verifications per second of the same envelopes,
  both measured in this run, for batches of 60, 170 (the example cabinet's 300-s batch)
  and 2000 readings (W1); the headline figure is the 60-reading one. Target >= 0.7.
* w1_with_uplink: W1 values per CPU-second of the agent with the uplink publishing
  (`python -m tools.bench w1 --uplink` in its own process).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.clock import ScaledClock, WallClock
from agent.config.model import Uplink as UplinkSettings
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.runtime.app import App, Endpoints
from agent.runtime.entry import board_infos
from agent.uplink.client import Uplink
from agent.uplink.setup import signing_key, wiring
from agent.wire import cose
from agent.wire.batch import encode_body
from agent.wire.batch_v2 import encode_v2
from agent.wire.catalogue import Catalogue, PointInfo, Site, build, catalogue_id, encode, ref_of
from boards.sim.cabinet import SimCabinet
from drivers.dio import FilePinsDIO
from tools.bench import outbox as outbox_bench
from tools.bench.mqtt import BenchBroker
from tools.bench.simserver import values
from tools.ingest.core import IngestCore
from tools.ingest.local import LocalIngest
from tools.ingest.store import Commit, Store
from tools.provision import pki

CAB = "CAB-BENCH"


def w1_readings(seconds: int, t0: float = 1_800_000_000.0) -> list[Reading]:
    out = []
    for s in range(seconds):
        for dev in range(10):
            for key, v in values(float(s), dev).items():
                v = round(v, 1) if key.startswith("i") else float(f"{v:.7g}")
                out.append(Reading(f"dev{dev}.{key}", t0 + s, v, Quality.GOOD))
    return out


def _keys(d: Path) -> tuple[Any, Any]:
    pki.new_signing_key(d / "cab.key")
    pki.new_signing_key(d / "ingest.key")
    return pki.load_signing_key(d / "cab.key"), pki.load_signing_key(d / "ingest.key")


def w1_catalogue(rs: list[Reading]) -> Catalogue:
    """A catalogue of the W1 points (as a W1 cabinet would send once)."""
    names = sorted({r.point for r in rs})
    return build(CAB, "bench", 1, Site(52.5, 13.4, "Europe/Berlin"), [PointInfo(n, kind="float") for n in names])


def bytes_per_value_w1(key: Any, batch: int = 2000, version: int = 2) -> float:
    """Sealed bytes per W1 reading in batches of `batch`, body format `version` (2: naming the
    W1 catalogue, whose one-off ~10 kB are not counted)."""
    rs = w1_readings(60)
    topic = cose.telemetry_topic("city/v1", CAB)
    cat = w1_catalogue(rs)
    ref, index = ref_of(catalogue_id(encode(cat))), cat.index()
    total = 0
    n = 0
    for i in range(0, len(rs) - batch + 1, batch):
        part = rs[i : i + batch]
        env = cose.seal_batch(
            encode_v2(part, ref=ref, index=index) if version == 2 else encode_body(part),
            key=key,
            kid=cose.key_id(key.public_key()),
            cabinet=CAB,
            boot=1,
            seq=i,
            topic=topic,
        )
        total += len(env)
        n += batch
    return round(total / n, 3)


def ingest_verify_ratio(key: Any, batches: int = 2000, size: int = 60) -> dict[str, Any]:
    topic = cose.telemetry_topic("city/v1", CAB)
    kid = cose.key_id(key.public_key())
    rs = w1_readings(60)
    envs = [
        cose.seal_batch(
            encode_body(rs[(i * size) % 8000 : (i * size) % 8000 + size]),
            key=key,
            kid=kid,
            cabinet=CAB,
            boot=1,
            seq=i,
            topic=topic,
        )
        for i in range(batches)
    ]
    pub = key.public_key()
    sigs = [key.sign(env) for env in envs]  # raw Ed25519 over messages of the envelopes' sizes

    def raw_pass() -> float:
        t = time.process_time()
        for env, sig in zip(envs, sigs, strict=True):
            pub.verify(sig, env)
        return batches / (time.process_time() - t)

    def ingest_pass(d: Path, n: int) -> float:
        store = Store(str(d / f"i{n}.db"))
        store.add_key(CAB, kid, pki.public_key_raw(pub), time.time())
        core = IngestCore(store, window_size=8192)
        t = time.process_time()
        for g in range(0, batches, 100):  # group commits of 100 batches, as the service does
            c = Commit()
            for env in envs[g : g + 100]:
                assert core.handle(topic, env, time.time(), c).kind == "stored"
            store.commit(c)
        rate = batches / (time.process_time() - t)
        store.close()
        return rate

    # warmed up, interleaved, best of three each: this VM's speed drifts by tens of per cent
    with tempfile.TemporaryDirectory() as tmp:
        ingest_pass(Path(tmp), 0)
        raws, ingests = [], []
        for n in range(1, 4):
            raws.append(raw_pass())
            ingests.append(ingest_pass(Path(tmp), n))
    raw, ingest = max(raws), max(ingests)
    return {
        "raw_verify_per_s": round(raw),
        "ingest_batches_per_cpu_s": round(ingest),
        "batch_readings": size,
        "ingest_verify_ratio": round(ingest / raw, 3),
    }


async def drain(n: int, key: Any, ingest_key: Any, d: Path) -> dict[str, Any]:
    """Needs d/ingest.key: the ingest process signs acks with it."""
    broker = BenchBroker()
    ingest = await start_ingest(d, broker.port, key)
    clock = WallClock()
    outbox = Outbox(d / "outbox.db", clock=clock, queue_max=200_000, max_bytes=2 * 2**30)
    await outbox.start()
    fill_s = await fill(outbox, n)
    await asyncio.sleep(1.5)  # the ingest subscribes
    ik = ingest_key.public_key()
    settings = UplinkSettings(
        broker="127.0.0.1",
        port=broker.port,
        tls=False,
        batch_max_readings=2000,
        max_unacked=256,
        inflight=20,
        ack_timeout_s=30,
    )
    uplink = Uplink(
        settings,
        cabinet_id=CAB,
        outbox=outbox,
        signing_key=key,
        ingest_keys={cose.key_id(ik): ik}.get,
        clock=clock,
        birth=dict,
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(uplink.run())
    try:
        while True:
            st = outbox.stats()
            if st["rows_pending"] + st["rows_sealed"] == 0:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"drain did not finish: {st}")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
        ingest.terminate()
        await ingest.wait()
        broker.stop()
    store = Store(str(d / "ingest.db"))
    stored = store.stats()
    store.close()
    return {
        "readings": n,
        "fill_s": round(fill_s, 2),
        "drain_s": round(elapsed, 2),
        "drain_per_s": round(n / elapsed),
        "agent_cpu_s": round(cpu, 2),
        "stored": stored["readings"],
        "duplicates": stored["duplicates"],
        "batches": stored["batches_ok"],
        "bytes_sent": uplink.stats["bytes_sent"],
    }


async def start_ingest(d: Path, port: int, key: Any) -> asyncio.subprocess.Process:
    """A `cabinet ingest` process on d/ingest.db (the cabinet's key registered) and the
    broker on 127.0.0.1:port; it signs acks with d's parent's ingest.key."""
    store = Store(str(d / "ingest.db"))
    store.add_key(CAB, cose.key_id(key.public_key()), pki.public_key_raw(key.public_key()), time.time())
    store.close()
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "ingest",
        "run",
        "--db",
        str(d / "ingest.db"),
        "--broker",
        f"127.0.0.1:{port}",
        "--key",
        str(d.parent / "ingest.key"),
        stderr=asyncio.subprocess.DEVNULL,
    )


async def fill(outbox: Outbox, n: int) -> float:
    """Queue n W1 readings durably; the seconds it took."""
    rs = w1_readings(n // 150 + 1)[:n]
    t = time.perf_counter()
    for i in range(0, n, 50_000):
        await outbox.put(rs[i : i + 50_000])
    await outbox.flush()
    return time.perf_counter() - t


async def sim_cabinet_bytes(seconds: float, speed: float, d: Path) -> dict[str, Any]:
    """The example cabinet run by the real agent at `speed`x, with a local ingest
    acknowledging (so nothing is re-sent); bytes are what the uplink published."""
    broker = BenchBroker()
    config = cfg.load(cfg.EXAMPLE, board_infos())
    clock = ScaledClock(speed)
    sim = SimCabinet(config, d / "sim", clock)
    ep = await sim.start()
    s = UplinkSettings(broker="127.0.0.1", port=broker.port, tls=False)
    (d / "agent").mkdir(parents=True, exist_ok=True)
    ingest = await LocalIngest.start(d / "agent", s, config.cabinet_id, signing_key(s, d / "agent"))
    await asyncio.sleep(1.5)  # the ingest subscribes (a city's ingest is up before its cabinets)
    w = wiring(config, d / "agent", s, ingest.public_key)
    app = App(
        config,
        data_dir=d / "agent",
        clock=clock,
        uplink=w,
        endpoints=Endpoints(
            buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep["gps"], dio=FilePinsDIO(ep["pins"])
        ),
    )
    await app.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await app.stop()
        await sim.stop()
        await ingest.stop()
        broker.stop()
    assert app.uplink is not None  # wired above (uplink=w)
    u = app.uplink.stats
    store = Store(str(ingest.db))
    stored = store.stats()
    store.close()
    return {
        "sim_seconds": round(seconds * speed),
        "batch_max_age_s": s.batch_max_age_s,
        "batches": u["batches_sent"],
        "batches_resent": u["batches_resent"],
        "readings": u["readings_sent"],
        "stored": stored["readings"],
        "bytes": u["bytes_sent"],
        "bytes_per_value": round(u["bytes_sent"] / u["readings_sent"], 3) if u["readings_sent"] else None,
        # the catalogue: once per connect until acknowledged and after a change, not per batch
        "catalogues_sent": u["catalogues_sent"],
        "catalogue_bytes": u["catalogue_bytes_sent"],
    }


async def run(readings: int = 1_000_000, sim_seconds: float = 90.0, speed: float = 20.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key, ingest_key = _keys(d)
        out: dict[str, Any] = {"bytes_per_value_w1": bytes_per_value_w1(key)}
        out["bytes_per_value_w1_v1"] = bytes_per_value_w1(key, version=1)
        sim = await sim_cabinet_bytes(sim_seconds, speed, d / "simcab")
        out["bytes_per_value_sim_cabinet"] = sim["bytes_per_value"]
        out["sim_cabinet"] = sim
        ob = await asyncio.to_thread(outbox_bench.run, readings=200_000)
        out["outbox_append_per_s"] = ob["outbox_append_per_s"]
        (d / "drain").mkdir()
        out["drain"] = await drain(readings, key, ingest_key, d / "drain")
        out["drain_per_s"] = out["drain"]["drain_per_s"]
        ratio = ingest_verify_ratio(key)
        out["ingest"] = ratio
        out["ingest_verify_ratio"] = ratio["ingest_verify_ratio"]
        out["ingest_by_batch_size"] = {
            n: ingest_verify_ratio(key, batches=1000, size=n)["ingest_verify_ratio"] for n in (170, 2000)
        }
        # in a fresh process: CPU and RSS are the agent's alone, not this benchmark's
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.bench",
            "w1",
            "--uplink",
            "--seconds",
            "30",
            "--json",
            stdout=asyncio.subprocess.PIPE,
        )
        w = json.loads((await proc.communicate())[0])
        out["w1_with_uplink"] = {k: w[k] for k in ("values_per_cpu_s", "cpu_s", "rss_mb", "tx_per_cycle")}
        out["w1_with_uplink"]["bytes_per_value"] = w.get("uplink_bytes_per_value")
    out["targets"] = {
        "bytes_per_value": "<= 3 (example cabinet), W1 <= 0.5",
        "outbox_append_per_s": ">= 50000",
        "drain_per_s": ">= 100000",
        "ingest_verify_ratio": ">= 0.7",
    }
    out["met"] = {
        "bytes_per_value": (out["bytes_per_value_sim_cabinet"] or 99) <= 3 and out["bytes_per_value_w1"] <= 0.5,
        "outbox_append_per_s": out["outbox_append_per_s"] >= 50_000,
        "drain_per_s": out["drain_per_s"] >= 100_000,
        "ingest_verify_ratio": out["ingest_verify_ratio"] >= 0.7,
    }
    return out
