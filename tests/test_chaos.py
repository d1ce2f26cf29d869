"""The soak and chaos suite (tools/chaos, docs/reliability.md).

Fast: its bookkeeping (lost, duplicated, recovery), the config it gives the cabinet,
its arguments, its look at a real outbox file. Integration: it notices crashes (an exit it
did not cause, a traceback in a log) of real processes; and the short run CI makes: the
agent SIGKILLed 8 times, the ingest 3 times, the broker stopped once, the cabinet's clock
jumped at 3 reboots, its disk filled twice, with nothing lost, nothing duplicated,
nothing crashed. The long run (200 kills) is `python -m tools.chaos`, recorded in
docs/reliability.md.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import WallClock
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.runtime.entry import board_infos
from agent.wire.batch import decode_body, encode_body
from tools.chaos.__main__ import main
from tools.chaos.ledger import Fault, Ledger, key_of, recoveries, summary
from tools.chaos.procs import Part, group_alive, tracebacks
from tools.chaos.rig import Knobs, Rig, cabinet_config, is_wal
from tools.chaos.suite import failed
from tools.provision import pki

ROOT = Path(__file__).resolve().parent.parent


# bookkeeping ----------------------------------------------------------------------------
def test_a_reading_keeps_its_identity_through_the_batch_codec():
    readings = [Reading("p", 1.8e9 + 0.0004999, 1.5, Quality.GOOD), Reading("q", 1.8e9 + 0.1235, 2, Quality.BAD)]
    back = decode_body(encode_body(readings))
    assert sorted(key_of(r.point, r.t) for r in back) == sorted(key_of(r.point, r.t) for r in readings)


def test_rows_seen_again_are_one_reading_and_rows_sharing_a_millisecond_are_two():
    ledger = Ledger()
    assert ledger.see([(1, "p", 10.0), (2, "p", 11.0)]) == 2
    assert ledger.see([(1, "p", 10.0), (2, "p", 11.0), (3, "q", 10.0)]) == 1  # seen again: not new
    assert ledger.see([(4, "p", 10.0001)]) == 1  # another row, same point and millisecond
    assert ledger.count == 4


def test_lost_is_seen_and_not_stored_duplicated_is_stored_more_often_than_seen():
    ledger = Ledger()
    ledger.see([(1, "p", 10.0), (2, "p", 10.0), (3, "p", 11.0), (4, "q", 12.0)])
    t = ledger.compare([("p", 10.0), ("p", 11.0), ("p", 11.0), ("z", 13.0), ("z", 13.0)])
    assert (t.readings, t.stored, t.lost, t.duplicated, t.unseen) == (4, 5, 2, 2, 2)
    assert t.lost_examples == [("p", 10_000), ("q", 12_000)]
    assert t.duplicated_examples == [("p", 11_000), ("z", 13_000)]  # twice though never seen counts too
    clean = ledger.compare([("p", 10.0), ("p", 10.0), ("p", 11.0), ("q", 12.0), ("r", 1.0)])
    assert (clean.lost, clean.duplicated, clean.unseen) == (0, 0, 1)


def test_recovery_is_the_first_batch_after_the_restart_and_before_the_next_fault():
    faults = [Fault("kill", 10.0, 10.5), Fault("kill", 12.0, 12.2), Fault("broker", 20.0, 25.0)]
    batches = [9.0, 11.0, 11.5, 26.5, 40.0]
    assert recoveries(faults, batches, end_t=30.0) == [0.5, None, 1.5]
    assert recoveries(faults[2:], [], end_t=30.0) == [None]
    assert summary([0.5, None, 1.5, 2.5]) == {"n": 3, "p50": 1.5, "max": 2.5, "none_before_next_fault": 1}


def test_a_run_fails_on_loss_duplicates_crashes_errors_or_no_readings():
    ok = {"lost": 0, "evicted": 0, "duplicated": 0, "crashes": 0, "error": None, "readings": 10, "drained": True}
    assert failed(ok) == ""
    assert failed({**ok, "lost": 3}) == "3 lost"
    assert failed({**ok, "lost": 3, "evicted": 3}) == ""  # the outbox's cap evicted them, and counted them
    assert failed({**ok, "lost": 5, "evicted": 3}) == "5 lost (3 evicted by the outbox's cap, counted)"
    assert failed({**ok, "duplicated": 1, "crashes": 2}) == "1 duplicated; 2 crashes"
    assert "nothing was exercised" in failed({**ok, "readings": 0})
    assert failed({**ok, "drained": False}) == "the drain did not finish"


# what it gives the cabinet -------------------------------------------------------------
def test_the_cabinet_config_is_the_example_with_an_uplink_and_a_clock_start(tmp_path):
    key = tmp_path / "my keys" / "signing.key"
    key.parent.mkdir()
    pki.new_signing_key(key)
    ingest = pki.new_signing_key(tmp_path / "ingest.key").hex()
    text = cabinet_config(
        cfg.EXAMPLE.read_text(),
        port=18883,
        signing_key=key,
        ingest_key=ingest,
        knobs=Knobs(),
        start="2026-01-02T03:04:05+00:00",
    )
    c = cfg.loads(text, "cab.toml", board_infos())
    assert c.uplink is not None
    assert (c.uplink.broker, c.uplink.port, c.uplink.tls) == ("127.0.0.1", 18883, False)
    assert (c.uplink.signing_key, c.uplink.ingest_key) == (str(key), ingest)
    assert (c.uplink.batch_max_age_s, c.uplink.ack_timeout_s) == (1.0, 3.0)
    assert c.sim.start == "2026-01-02T03:04:05+00:00"
    with pytest.raises(ValueError, match=r"\[sim\]"):
        cabinet_config("[cabinet]\n", port=1, signing_key=key, ingest_key=ingest, knobs=Knobs(), start="now")


def test_the_outbox_is_looked_at_only_once_it_is_in_wal_mode(tmp_path):
    db = tmp_path / "o.db"
    assert not is_wal(db)  # not there yet
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    assert not is_wal(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    assert is_wal(db)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kills", "-1"], "--kills -1: give 0 or more"),
        (["--outage", "0"], "--outage 0.0: give a number of seconds above 0"),
        (["--seconds", "nan"], "--seconds nan: give a number of seconds above 0"),
        (["kill", "flood"], "unknown scenario 'flood'; known: kill, ingest, broker, clock, disk"),
    ],
)
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


# noticing crashes (real processes) -------------------------------------------------------
@pytest.mark.integration
def test_an_exit_the_suite_did_not_cause_is_a_crash_and_its_traceback_is_found(tmp_path):
    code = "import time, sys; time.sleep(float(sys.argv[1])); raise ValueError('bad frame at byte 7')"
    part = Part("ingest", [sys.executable, "-c", code, "0"], tmp_path, cwd=tmp_path)
    part.start()
    deadline = time.monotonic() + 20
    crash = None
    while crash is None and time.monotonic() < deadline:
        crash = part.check()
        time.sleep(0.01)
    assert crash is not None and crash.what == "exit code 1" and crash.log.endswith("ingest-0001.log")
    assert [(c.part, c.what) for c in tracebacks(tmp_path)] == [
        ("ingest", "Traceback: ValueError: bad frame at byte 7")
    ]


@pytest.mark.integration
def test_a_kill_of_a_process_group_is_no_crash_and_leaves_nothing_running_a_failed_stop_is(tmp_path):
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    part = Part("agent", [sys.executable, "-c", child + "time.sleep(60)"], tmp_path, cwd=tmp_path, group=True)
    part.start()
    assert part.proc is not None
    pgid = part.proc.pid
    time.sleep(0.3)  # let it start its child
    part.kill()
    assert not group_alive(pgid)
    assert part.check() is None and tracebacks(tmp_path) == []
    part.start()  # a graceful stop must end with exit code 0: this one dies of the signal
    crash = part.stop()
    assert crash is not None and crash.what == "exit code -15 after SIGTERM"


# the short run -----------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.chaos
def test_short_chaos_run_loses_nothing_duplicates_nothing_and_nothing_crashes(tmp_path):
    argv = [sys.executable, "-m", "tools.chaos", "--json", "--seed", "7", "--dir", str(tmp_path / "run")]
    argv += ["--kills", "8", "--ingest-restarts", "3", "--broker-restarts", "1", "--outage", "3"]
    argv += ["--disk-fills", "2", "--full", "3", "--seconds", "150", "--drain-seconds", "60"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert done.stdout, done.stderr
    figures = json.loads(done.stdout)
    where = f"figures: {json.dumps(figures, indent=1)}\n{done.stderr}"
    disk = 0 if "disk" in figures["skipped"] else 2  # the disk scenario needs root to mount its tmpfs
    assert figures["kills"] == {"kill": 8, "ingest": 3, "broker": 1, "clock": 3, "disk": disk}, where
    assert figures["readings"] > 300, where  # the pipeline really carried readings through the faults
    assert (figures["lost"], figures["evicted"], figures["duplicated"], figures["crashes"]) == (0, 0, 0, 0), where
    assert figures["drained"] and figures["error"] is None, where
    assert figures["recovery_s"]["n"] >= 1, where
    assert done.returncode == 0, where


async def test_a_look_at_a_real_outbox_records_every_committed_row_by_point_time_and_id(tmp_path):
    rig = Rig(tmp_path)  # not started: only its outbox reader
    outbox = Outbox(rig.data / "outbox.db", clock=WallClock())
    await outbox.start()
    try:
        rig.look()  # nothing committed yet
        assert rig.ledger.count == 0
        await outbox.put([Reading("a.b", 1.8e9 + i / 1000, i, Quality.GOOD) for i in range(5)])
        await outbox.put([Reading("a.b", 1.8e9, 9, Quality.GOOD)])  # same point and millisecond: another row
        await outbox.flush()
        rig.look()
        rig.look()  # seen again: nothing new
    finally:
        await outbox.close()
    assert rig.ledger.count == 6 and rig.look_errors == 0
    expected = {("a.b", 1_800_000_000_000 + i): 1 + (i == 0) for i in range(5)}
    assert {k: len(ids) for k, ids in rig.ledger.rows.items()} == expected
