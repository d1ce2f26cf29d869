"""The city cloud under a fleet: simulated cabinets (tools/fleet) through one Mosquitto into
ingest workers on PostgreSQL, with workers killed and the broker restarted during the run.

    python -m tools.bench fleet [--json] [--cabinets N] [--seconds S]

Defaults: 10,000 cabinets of the example profile at its default batch policy (a batch every
300 s), 600 s of batches, 2 fleet processes, 2 workers; one worker killed (SIGKILL) and
restarted at 30 % and again at 70 % of the run, the broker restarted at 50 %. Everything runs
on this machine (2 cores shared by the fleet, the broker, the workers and PostgreSQL).

Keys: cabinets, readings_per_s and batches_per_s stored (made in the window, all verified
stored), worker_cpu_pct (per worker slot, % of one core over the run, restarts included),
p50_ms / p99_ms (publish -> acknowledged: the ingest acknowledges only what it committed),
lost, duplicated (exactly-once, tools/fleet/sim.py), pending_after_drain (batches the cabinets
still held unacknowledged when they gave up waiting), ceiling_cabinets (the cabinets the
workers would hold at 100 % of a core each at the measured CPU per reading: an estimate from
this run, not a search).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tools.bench.mqtt import BenchBroker
from tools.fleet import node, sim


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks (USER_HZ 100)


class Workers:
    """`n` ingest workers (`cabinet ingest run`), killable and restartable, CPU counted per slot."""

    def __init__(self, n: int, dsn: str, port: int, key: Path, logs: Path) -> None:
        self.dsn, self.port, self.key, self.logs = dsn, port, key, logs
        self.cpu = [0.0] * n
        self.procs: list[Any] = [self._start(i) for i in range(n)]

    def _start(self, i: int) -> Any:
        import subprocess
        import sys

        log = self.logs / f"worker-{i}-{time.monotonic():.0f}.log"
        cmd = [sys.executable, "-m", "tools.cli", "ingest", "run", "--db", self.dsn]
        cmd += ["--broker", f"127.0.0.1:{self.port}", "--key", str(self.key), "--group", "bench"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        end = time.monotonic() + 30
        while b"ingest subscribed" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"an ingest worker did not start: {log.read_text()[-1000:]}")
            time.sleep(0.05)
        return proc

    def kill_and_restart(self, i: int) -> None:
        self.cpu[i] += _cpu_s(self.procs[i].pid)
        self.procs[i].kill()
        self.procs[i].wait()
        self.procs[i] = self._start(i)

    def stop(self) -> list[float]:
        for i, p in enumerate(self.procs):
            self.cpu[i] += _cpu_s(p.pid)
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except Exception:  # noqa: BLE001 - a hung worker: kill it
                p.kill()
        return self.cpu


def run(cabinets: int = 10_000, seconds: float = 600.0, batch_s: float = 300.0, processes: int = 2) -> dict[str, Any]:
    import psycopg

    from agent.uplink import keys

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    broker = BenchBroker()
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    db = f"bench_fleet_{int(time.time())}"
    admin.execute(f"CREATE DATABASE {db}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
    try:
        pub = keys.new_signing_key(work / "ingest.key")
        workers = Workers(2, dsn, broker.port, work / "ingest.key", work)
        spec = node.Spec(
            cabinets=[],
            profile="example",
            broker="127.0.0.1",
            port=broker.port,
            ingest_key=pub,
            seconds=seconds,
            batch_s=batch_s,
            ack_timeout_s=60.0,
            drain_s=max(120.0, batch_s),
            faults=node.Faults(),
            connect_spread_s=min(60.0, batch_s),
        )
        result: dict[str, Any] = {}
        t0 = time.monotonic()
        fleet = threading.Thread(target=lambda: result.update(sim.run(spec, cabinets, processes, dsn)))
        fleet.start()
        for at, what in ((0.3, "kill 0"), (0.5, "broker"), (0.7, "kill 1")):
            time.sleep(max(0.0, t0 + seconds * at - time.monotonic()))
            if what == "broker":
                broker.restart()
            else:
                workers.kill_and_restart(int(what[-1]))
        fleet.join()
        wall = time.monotonic() - t0
        cpu = workers.stop()
    finally:
        broker.stop()
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
        shutil.rmtree(work, ignore_errors=True)
    stored = result["readings_stored"]
    pct = [round(c / wall * 100, 1) for c in cpu]
    per_reading = sum(cpu) / stored if stored else 0.0
    per_cabinet_rate = stored / seconds / cabinets
    return {
        "cabinets": cabinets,
        "seconds": seconds,
        "batch_s": batch_s,
        "readings_per_s": round(stored / seconds, 1),
        "batches_per_s": round(result["batches_made"] / seconds, 2),
        "worker_cpu_pct": pct,
        "p50_ms": result["ack_p50_ms"],
        "p99_ms": result["ack_p99_ms"],
        "lost": result["lost"],
        "duplicated": result["duplicated"],
        "pending_after_drain": result["pending_at_end"],
        "ceiling_cabinets": int(2 / (per_reading * per_cabinet_rate)) if per_reading else None,
        "wall_s": round(wall, 1),
        "counters": result["counters"],
        "met": {"lost==0": result["lost"] == 0, "duplicated==0": result["duplicated"] == 0},
    }
