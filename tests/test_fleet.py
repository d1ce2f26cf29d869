"""The fleet simulator (tools/fleet): a simulated cabinet's protocol logic on its own, and a
fleet of a few hundred cabinets through a real Mosquitto into two ingest workers on a real
PostgreSQL, with reboots, duplicates, dropped links and a worker killed and restarted —
every reading stored exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.outbox.store import SEQ_BLOCK
from agent.wire import cose
from agent.wire.batch_v2 import is_v2
from agent.wire.catalogue_seal import open_catalogue, seal_reply
from tests.broker import Broker
from tests.pgdb import fresh_database
from tools.fleet import profiles, sim
from tools.fleet.cabinet import VirtualCabinet

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000.0


def cabinet(ingest: Ed25519PrivateKey, profile: str = "example") -> VirtualCabinet:
    return VirtualCabinet("CAB-F1", Ed25519PrivateKey.generate(), profiles.profile(profile), ingest.public_key(), T0)


def body_of(c: VirtualCabinet, payload: bytes) -> bytes:
    keys = {c.kid: c.key.public_key()}
    return cose.open_batch(payload, topic=c.topic, keys=keys.get).body


def test_the_profiles_carry_the_measured_rates():
    ex, w1 = profiles.profile("example"), profiles.profile("w1")
    assert 4.5 < ex.readings_per_s < 6.0  # 9,355 readings in 1,800 s measured
    assert len(ex.points) >= 120 and w1.readings_per_s == 200.0
    with pytest.raises(ValueError, match="known profiles are example, w1"):
        profiles.profile("nope")


def test_a_cabinet_sends_v1_until_its_catalogue_is_acknowledged_then_v2():
    ingest = Ed25519PrivateKey.generate()
    c = cabinet(ingest)
    (cat,) = c.on_connect()
    opened = open_catalogue(cat, topic=c.topic, keys={c.kid: c.key.public_key()}.get)
    assert opened.id == c.catalogue_id and opened.cabinet == "CAB-F1"
    first = c.batch(T0 + 300, 0.0)
    assert first is not None and first[1] == 1 and not is_v2(body_of(c, first[0]))
    kid = cose.key_id(ingest.public_key())
    reply = seal_reply(cabinet="CAB-F1", acked=c.catalogue_id, key=ingest, kid=kid, topic=c.ack_topic)
    assert c.on_ack_topic(reply, 1.0) == [first[0]]  # the pending batch goes again at once
    second = c.batch(T0 + 600, 2.0)
    assert second is not None and second[1] == 2 and is_v2(body_of(c, second[0]))
    assert c.on_connect() == []  # acknowledged: not sent again


def test_acks_retire_batches_re_sends_wait_for_the_timeout_and_a_reboot_skips_the_block():
    ingest = Ed25519PrivateKey.generate()
    c = cabinet(ingest)
    made = [c.batch(T0 + 60 * i, float(i)) for i in range(1, 4)]
    assert [m[1] for m in made if m] == [1, 2, 3]
    assert c.due_again(3.0, 30.0) == []
    assert len(c.due_again(32.5, 30.0)) == 2  # seqs 1 and 2 (sent at 1 s, 2 s); seq 3 (3 s) is not due yet
    ack = cose.seal_ack([1, 3], key=ingest, kid=cose.key_id(ingest.public_key()), cabinet="CAB-F1", topic=c.ack_topic)
    c.on_ack_topic(ack, 32.0)
    assert sorted(c.pending) == [2]
    forged = cose.seal_ack([2], key=Ed25519PrivateKey.generate(), kid=b"x" * 8, cabinet="CAB-F1", topic=c.ack_topic)
    c.on_ack_topic(forged, 33.0)
    assert sorted(c.pending) == [2] and c.counters.bad_acks == 1
    c.reboot()
    nxt = c.batch(T0 + 600, 40.0)
    assert nxt is not None and nxt[1] == SEQ_BLOCK + 1 and c.boot == 2  # the rest of the block skipped
    assert sorted(c.pending) == [2, SEQ_BLOCK + 1]  # what was pending survives the reboot
    assert c.injected() in {m[0] for m in made if m}  # a duplicate of an acknowledged batch


def test_verify_counts_lost_and_duplicated_readings():
    made = [("A", 1, 10), ("A", 2, 5), ("B", 1, 7)]
    rows = Counter({("A", 1): 10, ("A", 2): 3, ("B", 1): 14, ("B", 9): 2})
    v = sim.verify(made, rows)
    assert v["lost"] == 2 and v["duplicated"] == 7 + 2 and v["batches_missing"] == 0
    assert sim.verify(made, Counter({("A", 1): 10, ("A", 2): 5, ("B", 1): 7}))["lost"] == 0


def _worker(dsn: str, port: int, key: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tools.cli", "ingest", "run", "--db", dsn, "--broker", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*cmd, "--key", str(key), "--group", "fleet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    end = time.monotonic() + 30
    while b"ingest subscribed" not in log.read_bytes():
        assert proc.poll() is None and time.monotonic() < end, log.read_text()[-2000:]
        time.sleep(0.05)
    return proc


@pytest.mark.integration
def test_a_fleet_through_mosquitto_and_two_workers_is_stored_exactly_once(tmp_path: Path):
    broker = Broker(tmp_path / "mqtt", tls=False)
    broker.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with fresh_database("cabinet_fleet") as dsn:
            key = tmp_path / "ingest.key"
            pub = subprocess.run(
                [sys.executable, "-m", "tools.cli", "ingest", "init", "--key", str(key)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            port = broker.plain_port
            assert port is not None
            workers = [_worker(dsn, port, key, tmp_path / f"w{i}.log") for i in range(2)]
            cmd = [sys.executable, "-m", "tools.cli", "fleet", "sim", "--cabinets", "200", "--processes", "2"]
            cmd += ["--seconds", "20", "--batch-s", "4", "--ack-timeout-s", "5", "--drain-s", "45"]
            cmd += ["--reboots", "0.05", "--duplicates", "0.1", "--disconnects", "0.05", "--json"]
            cmd += ["--broker", f"mqtt://127.0.0.1:{port}", "--db", dsn, "--ingest-key", pub]
            fleet = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(12)
            workers[0].send_signal(signal.SIGKILL)  # mid-run: what it held unacknowledged comes again
            workers[0].wait()
            workers[0] = _worker(dsn, port, key, tmp_path / "w2.log")
            out, err = fleet.communicate(timeout=240)
            assert fleet.returncode == 0, f"{out}\n{err}"
            result = json.loads(out)
            assert result["lost"] == 0 and result["duplicated"] == 0 and result["materialized"]
            assert result["readings_made"] == result["readings_stored"] > 0
            c = result["counters"]
            assert c["reboots"] > 0 and c["injected"] > 0 and c["resends"] > 0  # the faults happened
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()
        broker.stop()


def test_bad_arguments_are_refused_with_exit_2(capsys):
    from tools.cli.table import main as cli_main

    base = ["fleet", "sim", "--cabinets", "5", "--db", "x.db", "--ingest-key", "00" * 32]
    assert cli_main([*base, "--broker", "mqtts://h:8883"]) == 2
    assert "plain MQTT" in capsys.readouterr().err
    assert cli_main([*base, "--broker", "h", "--reboots", "2"]) == 2
    assert "--reboots must be a probability 0..1" in capsys.readouterr().err
    assert cli_main(["fleet", "sim", "--cabinets", "5", "--db", "x.db", "--ingest-key", "abc", "--broker", "h"]) == 2
    assert "--ingest-key must be 64 hex digits" in capsys.readouterr().err
