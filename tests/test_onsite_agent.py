"""The technician's commands against a running agent (issue 14): `cabinet run` on the
simulated cabinet in a subprocess, then `cabinet status`, `light override|cancel` and
`alarms list|ack` as a technician runs them, and the agent's log lines for overrides and
alarms. One agent for the whole module (it takes a few seconds to start)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a `cabinet run` process and `cabinet` CLI runs

CLI = [sys.executable, "-m", "tools.cli"]


def cabinet(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*CLI, *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def sim_control(data_dir: Path, request: dict) -> dict:
    """One request to the simulated cabinet's control socket (JSON lines)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(data_dir / "sim" / "control.sock"))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(data dir, the agent's log file) of a running `cabinet run`."""
    data_dir = tmp_path_factory.mktemp("onsite")
    log = data_dir.parent / "onsite-agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "run", "--data-dir", str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        cabinet("status", "--wait", "60", "--summary", data_dir=data_dir)
        yield data_dir, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def good_points(data_dir: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        doc = json.loads(cabinet("status", "--json", data_dir=data_dir).stdout)
        if all(p["quality"] == "good" for p in doc["points"]):
            return
        assert time.monotonic() < deadline, [p["name"] for p in doc["points"] if p["quality"] != "good"]
        time.sleep(0.3)


# ------------------------------------------------------------------------------------- status


def test_status_summary_first_then_points_in_local_time(agent: tuple[Path, Path]) -> None:
    data_dir, _ = agent
    good_points(data_dir)
    out = cabinet("status", data_dir=data_dir).stdout.splitlines()
    first_point = next(i for i, line in enumerate(out) if line.startswith("POINT "))
    for prefix in ("bus rs485", "bus dali", "outbox:", "lighting:", "climate:", "alarms:"):
        at = next(i for i, line in enumerate(out) if line.startswith(prefix))
        assert at < first_point, f"{prefix!r} comes after the points"
    assert re.search(r"\d+/\d+ points good", "\n".join(out[:first_point]))
    # Berlin: the site's local time (CET or CEST), never UTC "Z" times
    assert re.search(r"clock \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T$", out[0]), out[0]
    lighting = next(line for line in out if line.startswith("lighting:"))
    assert re.search(r"dark \d\d:\d\d-\d\d:\d\d CES?T", lighting) and "Z" not in lighting.split("dark")[1], lighting

    summary = cabinet("status", "--summary", data_dir=data_dir).stdout
    assert "POINT" not in summary and "bus rs485" in summary

    only = cabinet("status", "--points", "climate.*", "lux.*", data_dir=data_dir).stdout.splitlines()
    assert only[0].startswith("POINT") and {line.split()[0] for line in only[1:]} == {
        "climate.temperature",
        "climate.humidity",
        "lux.lux",
    }
    doc = json.loads(cabinet("status", "--json", "--points", "meter_main.*", data_dir=data_dir).stdout)
    assert doc["points"] and all(p["name"].startswith("meter_main.") for p in doc["points"])
    none = cabinet("status", "--points", "nothing.*", data_dir=data_dir, check=False)
    assert none.returncode == 1 and "no point matches" in none.stderr


def test_status_is_light_and_never_loads_the_heavy_parts(agent: tuple[Path, Path]) -> None:
    """`cabinet status` took 1.2-1.6 s: the command table imported every command's modules
    (the config parsers, OTA, the doctor, cryptography ...) before answering."""
    data_dir, _ = agent
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from tools.cli import table\n"
        f"rc = table.main(['status', '--data-dir', {str(data_dir)!r}])\n"
        "heavy = [m for m in ('pymodbus', 'aiomqtt', 'cryptography', 'agent.config.loader', 'tools.ota.cli',"
        " 'tools.doctor.report', 'tools.ingest.cli', 'agent.control.lighting.controller') if m in sys.modules]\n"
        "print('RESULT', rc, heavy, round(time.perf_counter() - t, 3), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = next(x for x in r.stderr.splitlines() if x.startswith("RESULT"))
    assert line.startswith("RESULT 0 []"), line


def test_status_wait_and_no_agent(tmp_path: Path) -> None:
    started = time.monotonic()
    r = cabinet("status", "--wait", "1", data_dir=tmp_path, check=False)
    took = time.monotonic() - started
    assert r.returncode == 1 and r.stdout == ""
    assert "no agent answering" in r.stderr and "within 1 s" in r.stderr and "cabinet run" in r.stderr
    assert 1.0 <= took < 10, took


@pytest.mark.parametrize(
    "command",
    [
        "status",
        "status --json",
        "alarms list",
        "doctor --skip-buses",
        "config check boards/sim/cabinet.toml",
        "scan --bus dali --units 1",
    ],
)
def test_a_closed_pipe_ends_quietly(agent: tuple[Path, Path], command: str) -> None:
    """`cabinet status | head -1` ended in a BrokenPipeError traceback; `| true` closes the
    pipe before the command writes, every time."""
    data_dir, _ = agent
    root = Path(__file__).resolve().parent.parent
    line = f"{sys.executable} -m tools.cli {command} --data-dir {data_dir} | true; echo rc=${{PIPESTATUS[0]}} >&2"
    if command.startswith("config"):
        line = line.replace(f" --data-dir {data_dir}", "")
    r = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=root, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert "rc=0" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------- lighting overrides


def test_light_override_prints_a_summary_and_status_shows_it_readably(agent: tuple[Path, Path]) -> None:
    data_dir, log = agent
    r = cabinet("light", "override", "--on", "--level", "40", "--segment", "seg3", "--minutes", "30",
                "--note", "test", data_dir=data_dir)  # fmt: skip
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout  # was ~100 lines of JSON
    assert re.match(r"override seg3: on 40 % until \d{4}-\d\d-\d\d \d\d:\d\d CES?T, by local: test; now ON", lines[0])
    full = json.loads(
        cabinet("light", "override", "--on", "--level", "40", "--segment", "seg3", "--json", data_dir=data_dir).stdout
    )
    assert full["override"]["level"] == 40 and "segments" in full["lighting"]

    status = cabinet("status", "--summary", data_dir=data_dir).stdout
    shown = [line for line in status.splitlines() if "override seg3" in line]
    assert shown and "{" not in shown[0] and re.search(r"on 40 % until .* CES?T, by local", shown[0]), status

    assert cabinet("light", "cancel", "--segment", "seg3", data_dir=data_dir).stdout.startswith(
        "override cancelled: seg3"
    )
    assert cabinet("light", "cancel", data_dir=data_dir).stdout.startswith("no override was set")
    refused = cabinet("light", "override", "--on", "--segment", "nope", data_dir=data_dir, check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("cabinet: the agent refused:"), refused.stderr
    text = log.read_text()
    assert re.search(r"INFO \S+ lighting seg3: override on 40 % until \S+ by local", text), text[-3000:]
    assert re.search(r"INFO \S+ lighting seg3: override cancelled by local", text), text[-3000:]


# ------------------------------------------------------------------------------------- alarms


def test_alarms_list_ack_and_the_log(agent: tuple[Path, Path]) -> None:
    data_dir, log = agent
    assert cabinet("alarms", "list", data_dir=data_dir).stdout.strip() == "no active or latched alarms"
    assert json.loads(cabinet("alarms", "list", "--json", data_dir=data_dir).stdout) == []
    late = cabinet(
        "alarms", "list", "--wait-for", "climate.door_open", "--timeout", "1", data_dir=data_dir, check=False
    )
    assert late.returncode == 1 and "not listed within 1 s" in late.stderr

    assert sim_control(data_dir, {"cmd": "set", "input": "door_open", "value": True})["ok"]
    out = cabinet("alarms", "list", "--wait-for", "climate.door_open", data_dir=data_dir).stdout.splitlines()
    assert out[0].split() == ["ID", "SEVERITY", "STATE", "SINCE", "ACKED", "MESSAGE"]
    row = next(line for line in out if line.startswith("climate.door_open"))
    assert re.search(r"warning\s+active\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T\s+no\s+cabinet door open", row), row
    listed = json.loads(cabinet("alarms", "list", "--json", data_dir=data_dir).stdout)
    assert [a["id"] for a in listed] == ["climate.door_open"]

    acked = cabinet("alarms", "ack", "climate.door_open", data_dir=data_dir).stdout
    assert acked.startswith("alarm climate.door_open acknowledged")
    row = next(line for line in cabinet("alarms", "list", data_dir=data_dir).stdout.splitlines() if "door" in line)
    assert re.search(r"acknowledged\s+\S+ \S+ CES?T\s+yes", row), row
    again = cabinet("alarms", "ack", "climate.door_open", data_dir=data_dir, check=False)
    assert again.returncode == 1 and "not active or latched" in again.stderr

    assert sim_control(data_dir, {"cmd": "set", "input": "door_open", "value": False})["ok"]
    deadline = time.monotonic() + 30
    while "cleared, now cleared" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    text = log.read_text()
    assert re.search(r"WARNING \S+ alarm climate.door_open raised \(warning\): cabinet door open", text)
    assert re.search(r"INFO \S+ alarm climate.door_open acknowledged by local, now acknowledged", text)
    assert re.search(r"INFO \S+ alarm climate.door_open cleared, now cleared", text)


# ------------------------------------------------------------------------------------- scan and doctor


def test_scan_refuses_a_line_the_agent_polls_and_doctor_judges_live(agent: tuple[Path, Path]) -> None:
    data_dir, _ = agent
    r = cabinet("scan", "--bus", "rs485", data_dir=data_dir, check=False)
    assert r.returncode == 1 and "the running agent polls this line" in r.stderr, r.stderr
    dali = cabinet("scan", "--bus", "dali", "--units", "1-2", "--json", data_dir=data_dir)  # TCP: two clients are fine
    assert [(f["unit"], f["profile"]) for f in json.loads(dali.stdout)] == [(1, "dali-gateway")]
    doc = json.loads(cabinet("doctor", "--json", data_dir=data_dir, check=False).stdout)
    results = {r["check"]: r for r in doc["results"]}
    assert results["bus rs485"]["status"] == "PASS" and "live" in results["bus rs485"]["detail"]
