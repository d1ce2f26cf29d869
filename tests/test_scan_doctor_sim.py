"""`cabinet scan` and `cabinet doctor` on the simulated cabinet started by plain `cabinet sim`
(issue 14): they failed with `port missing: rs485-1` unless the simulator had been given the
undocumented `--ready-file`, `scan --bus dali` probed the config's placeholder host and said
"no devices answered" with exit 0, and the doctor's fix hint named a command that failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # `cabinet sim` processes and `cabinet` CLI runs

CLI = [sys.executable, "-m", "tools.cli"]


def cabinet(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*CLI, *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=180)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def start_sim(data_dir: Path) -> subprocess.Popen[bytes]:
    """`cabinet sim` exactly as the docs start it: no --ready-file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_")}
    return subprocess.Popen(
        [*CLI, "sim", "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Path]:
    proc = start_sim(tmp_path)
    try:
        yield tmp_path
    finally:
        stop(proc)


def found(r: subprocess.CompletedProcess[str]) -> list[tuple[int, str]]:
    return [(f["unit"], f["profile"]) for f in json.loads(r.stdout)]


def test_scan_reaches_the_simulated_buses(sim: Path) -> None:
    r = cabinet("scan", "--bus", "rs485", "--units", "1-3,10", "--wait", "30", "--json", data_dir=sim)
    assert r.returncode == 0, r.stderr
    assert found(r) == [(1, "sdm630"), (2, "sdm120"), (3, "sdm120"), (10, "xy-md02")]
    # the DALI gateway: the simulator's loopback port for bus dali, not the config's host/port
    r = cabinet("scan", "--bus", "dali", "--units", "1-2", "--json", data_dir=sim)
    assert r.returncode == 0 and found(r) == [(1, "dali-gateway")], r.stderr
    text = cabinet("scan", "--bus", "dali", "--units", "1", data_dir=sim).stdout
    assert "dali-gateway" in text.splitlines()[1]


def test_no_devices_answered_is_exit_1(sim: Path) -> None:
    assert cabinet("scan", "--bus", "rs485", "--units", "1", "--wait", "30", data_dir=sim).returncode == 0
    r = cabinet("scan", "--bus", "rs485", "--units", "100-101", data_dir=sim)
    assert r.returncode == 1 and r.stdout == ""
    assert "no devices answered on rtu" in r.stderr and "units 100-101" in r.stderr
    r = cabinet("scan", "--bus", "rs485", "--units", "100", "--json", data_dir=sim)
    assert r.returncode == 1 and json.loads(r.stdout) == []
    r = cabinet("scan", "--bus", "nope", data_dir=sim)
    assert r.returncode == 2 and "no bus 'nope'" in r.stderr
    r = cabinet("scan", "--bus", "rs485", "--units", "0-3", data_dir=sim)
    assert r.returncode == 2 and "--units" in r.stderr


def test_doctor_opens_the_simulated_buses_and_probes_the_devices(sim: Path) -> None:
    assert cabinet("scan", "--bus", "dali", "--units", "1", "--wait", "30", data_dir=sim).returncode == 0
    doc = json.loads(cabinet("doctor", "--json", data_dir=sim).stdout)
    r = {x["check"]: x for x in doc["results"]}
    assert r["bus rs485"]["status"] == "PASS" and "9600 8N1: opened" in r["bus rs485"]["detail"], r["bus rs485"]
    assert r["bus dali"]["status"] == "PASS", r["bus dali"]
    for name in ("meter_main", "meter_seg1", "meter_seg2", "climate", "relays", "lux", "dali"):
        assert r[f"device {name}"]["status"] == "PASS", r[f"device {name}"]


def test_without_a_simulator_the_hint_is_a_command_that_works(tmp_path: Path) -> None:
    r = cabinet("scan", "--bus", "rs485", "--units", "1", data_dir=tmp_path)
    assert r.returncode == 1 and "the simulated cabinet is not running" in r.stderr and "`cabinet sim`" in r.stderr
    doc = json.loads(cabinet("doctor", "--json", data_dir=tmp_path).stdout)
    bus = next(x for x in doc["results"] if x["check"] == "bus rs485")
    assert bus["status"] == "FAIL" and "not running" in bus["detail"] and "port missing" not in bus["detail"]
    assert "`cabinet sim`" in bus["hint"] and "`cabinet run`" in bus["hint"]
    assert doc["ok"] is False
    proc = start_sim(tmp_path)  # what the hint says
    try:
        assert cabinet("scan", "--bus", "rs485", "--units", "1", "--wait", "30", data_dir=tmp_path).returncode == 0
        doc = json.loads(cabinet("doctor", "--json", data_dir=tmp_path).stdout)
        assert next(x for x in doc["results"] if x["check"] == "bus rs485")["status"] == "PASS"
    finally:
        stop(proc)


def test_a_dead_simulators_endpoints_are_not_used(tmp_path: Path) -> None:
    proc = start_sim(tmp_path)
    assert cabinet("scan", "--bus", "dali", "--units", "1", "--wait", "30", data_dir=tmp_path).returncode == 0
    proc.kill()  # no clean stop: its endpoints file and control socket stay behind
    proc.wait(timeout=10)
    assert (tmp_path / "sim" / "endpoints.json").exists()
    r = cabinet("scan", "--bus", "dali", "--units", "1", data_dir=tmp_path)
    assert r.returncode == 1 and "not running" in r.stderr, r.stderr
