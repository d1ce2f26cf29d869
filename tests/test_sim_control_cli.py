"""`cabinet sim-control` against a real `cabinet sim` process (issue 14).

The simulator's control messages were in no doc and had no command; rigs wrote JSON
to the socket by hand. The command sends each message, waits for the simulator with
`--wait`, prints for people or `--json`, and exits 0 / 1 (no simulator) / 2 (bad
arguments, refused message) with a one-line error, never a traceback. The test runs
`python -m tools.sim.control` (the same parsers `cabinet sim-control` is built from).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

PY = sys.executable


def ctl(data, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "tools.sim.control", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def sim(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [PY, "-m", "tools.cli", "sim", "--data-dir", str(data), "--speed", "20", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield data
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


@pytest.mark.integration  # a `cabinet sim` process
def test_wait_then_faults_inputs_and_reads_take_effect(sim):
    t0 = time.monotonic()
    up = ctl(sim, "--wait", "30", "state")  # the simulator is starting: --wait rides that out
    assert up.returncode == 0, up.stderr
    assert "door closed" in up.stdout and "faults      none" in up.stdout
    assert time.monotonic() - t0 < 30

    r = ctl(sim, "fault", "meter_main", "--kind", "exception", "--exception-code", "6", "--json")
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["ok"] and reply["state"]["faults"]["meter_main"]["exception_code"] == 6
    assert ctl(sim, "set", "door_open", "true").stdout.strip() == "door_open = true"
    assert ctl(sim, "set", "fan_failed", "on").returncode == 0
    r = ctl(sim, "circuit", "segment1", "--failed", "0.5", "--stuck", "closed")
    assert r.stdout.strip() == "circuit segment1: 50% of the lamps failed, contactor stuck closed"
    st = json.loads(ctl(sim, "state", "--json").stdout)["state"]
    assert st["door_open"] is True and st["circuits"]["segment1"]["on"] is True
    assert st["circuit_faults"]["segment1"] == {"failed": 0.5, "stuck": "closed", "cut": False}
    r = ctl(sim, "circuit", "segment2", "--cut", "yes")
    assert r.stdout.strip() == "circuit segment2: cable cut (supply present, no current)"
    st = json.loads(ctl(sim, "state", "--json").stdout)["state"]
    assert st["circuit_faults"]["segment2"]["cut"] is True and st["circuits"]["segment2"]["power_w"] == 0
    assert "cable cut" in ctl(sim, "state").stdout
    assert (
        ctl(sim, "gps", "no_fix").returncode == 0
        and json.loads(ctl(sim, "--json", "state").stdout)["state"]["gps_mode"] == "no_fix"
    )

    # the relay board's registers as a master sees them: relay 1 is off, address = unit id
    r = ctl(sim, "read", "relays")
    assert r.returncode == 0 and "config.address   20" in r.stdout and "relay_1          false" in r.stdout
    values = json.loads(ctl(sim, "read", "climate", "--json").stdout)["values"]
    assert values["config.address"] == 10 and -40 < values["temperature"] < 80

    assert ctl(sim, "clear", "meter_main").stdout.strip() == "meter_main (rs485 unit 1): healthy again"
    assert ctl(sim, "refuse", "dali").returncode == ctl(sim, "refuse", "dali", "--off").returncode == 0
    assert ctl(sim, "vanish", "rs485").returncode == 0
    assert ctl(sim, "restore", "rs485").stdout.strip() == "bus rs485: serial port back"
    ep = ctl(sim, "endpoints")
    assert ep.returncode == 0 and "rs485      rtu" in ep.stdout and "dali       tcp  127.0.0.1" in ep.stdout


@pytest.mark.integration  # a `cabinet sim` process
def test_errors_are_one_line_with_documented_exit_codes(sim, tmp_path):
    r = ctl(tmp_path / "nowhere", "state")
    assert r.returncode == 1 and r.stderr.startswith("cabinet sim-control: no simulator answering at ")
    no_traceback(r)
    assert ctl(sim, "--wait", "30", "state").returncode == 0
    for args, says in (
        (("fault", "meter_x", "--kind", "silent"), "no device 'meter_x'; known: climate, dali"),
        (("vanish", "dali"), "no RTU bus 'dali'; RTU buses: rs485"),
        (("refuse", "rs485"), "no TCP bus 'rs485'; TCP buses: dali"),
        (("circuit", "nope", "--failed", "1"), "no circuit 'nope'"),
        (("read", "nope"), "no device 'nope'"),
    ):
        r = ctl(sim, *args)
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
        no_traceback(r)
    for bad in (
        ("set", "door_open", "maybe"),
        ("set", "window_open", "true"),
        ("gps", "sometimes"),
        ("circuit", "segment1", "--failed", "2"),
        ("fault", "meter_main", "--kind", "loud"),
        ("frobnicate",),
    ):
        r = ctl(sim, *bad)
        assert r.returncode == 2 and "error:" in r.stderr, (bad, r.stderr)
        no_traceback(r)
    r = ctl(sim, "fault", "meter_main", "--kind", "slow", "--delay-ms", "-5", "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False and "'delay_ms'" in r.stderr
