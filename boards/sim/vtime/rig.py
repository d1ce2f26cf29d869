"""Run the example cabinet and the real agent on one virtual time, and measure.

    python -m boards.sim.vtime.rig [--config FILE] [--seconds N] [--speed S]
        [--check-every N] [--fail CIRCUIT --fail-at N --fail-share X] [--real] [--data-dir DIR] [--json]

Starts a coordinator (2 participants) and `python -m agent run --config FILE` with
$VTIME_SOCKET: the agent runs its normal code path and starts
the simulated cabinet as its child, as on board "sim"; both join the coordinator.
Every `--check-every` virtual seconds it reads the agent's status (GET /status on
its socket) and notes points that are not good and the active alarms; at `--fail-at`
it fails lamps of a circuit through the simulator's control socket. After
`--seconds` virtual seconds it stops the agent and prints the figures: virtual and
wall seconds, virtual seconds per wall second, CPU seconds of each process, the
coordinator's advances and probes, the checks. Exit 0 if no check found a point not
good or an alarm other than the injected lamp failure, and the failure (if any) was
detected. `--real`: the same without a coordinator, in real time (the reference).
Without --data-dir it works in a new temporary directory, removed after a run that
passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boards.sim.vtime import protocol as p

ROOT = Path(__file__).resolve().parents[3]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def http_get(path: Path, target: str = "/status", timeout: float = 10.0) -> dict[str, Any]:
    """The agent's local API (agent/runtime/status_api.py), spoken here without importing the agent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: cabinet\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"agent answered {head[:40]!r}")
    return json.loads(body)


def sim_control(path: Path, req: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def sim_start(config: str) -> float | None:
    """The config's [sim] start (ISO 8601, s since 1970), None when "now" or unset."""
    try:
        start = tomllib.loads(Path(config).read_text()).get("sim", {}).get("start", "now")
    except (OSError, tomllib.TOMLDecodeError):
        return None  # the agent names the problem when it reads the file
    if not isinstance(start, str) or start == "now":
        return None
    try:
        return dt.datetime.fromisoformat(start).timestamp()
    except ValueError:
        return None


class VirtualNow:
    def __init__(self, sock: str) -> None:
        self.file = p.time_file(sock)

    def __call__(self) -> float:
        with open(self.file, "rb") as f:
            return p.TIME.unpack(f.read(p.TIME.size))[0] - p.START


def check(status: dict[str, Any], t: float) -> dict[str, Any]:
    bad = [f"{q['name']}: {q['quality']} ({q.get('reason')})" for q in status["points"] if q["quality"] != "good"]
    alarms = [a.get("id") for a in status.get("controls", {}).get("alarms", []) if a.get("active", True)]
    controls = status.get("controls", {})
    segments = controls.get("lighting", {}).get("segments", {})
    outputs = controls.get("climate", {}).get("outputs", {})
    return {
        "t": round(t, 3),
        "not_good": bad,
        "alarms": alarms,
        "points": len(status["points"]),
        "segments": {k: [v.get("on"), v.get("level")] for k, v in segments.items()},
        "climate": {k: v.get("on") for k, v in outputs.items()},
        "bus_failures": {b["name"]: b.get("failures") for b in status.get("buses", [])},
    }


def run(args: argparse.Namespace, status: Callable[[Path], dict[str, Any]] = http_get) -> dict[str, Any]:
    """The run `args` (main's options) describe; `status(socket)` reads the agent's status."""
    work = Path(args.data_dir or tempfile.mkdtemp(prefix="vtime-rig-"))
    work.mkdir(parents=True, exist_ok=True)
    sock = str(work / "vt.sock")
    coord = None
    env = dict(os.environ)
    if not args.real:
        coord_cmd = [sys.executable, "-m", "boards.sim.vtime.coordinator", "--socket", sock, "--participants", "2"]
        if args.speed:
            coord_cmd += ["--speed", str(args.speed)]
        epoch = sim_start(args.config)
        if epoch is not None:  # virtual wall time starts where the simulator's clock would
            coord_cmd += ["--epoch", repr(epoch)]
        with open(work / "coordinator.log", "w") as log:
            coord = subprocess.Popen(coord_cmd, cwd=ROOT, stderr=log)
        while not Path(p.time_file(sock)).exists():
            time.sleep(0.01)
        env.update(VTIME_SOCKET=sock)  # the agent and its simulator child join (agent/runtime/entry.py)
    data = work / "agent"
    agent_cmd = [sys.executable, "-m", "agent", "run", "--config", args.config, "--data-dir", str(data)]
    with open(work / "agent.log", "w") as log:
        agent = subprocess.Popen(agent_cmd, cwd=ROOT, env=env, stderr=log)
    w0 = time.monotonic()
    now: Callable[[], float] = (lambda: time.monotonic() - w0) if args.real else VirtualNow(sock)
    checks: list[dict[str, Any]] = []
    failed_at = None
    detected_at = None
    sim_pid = None
    next_check = args.check_every
    out: dict[str, Any] = {"dir": str(work)}
    try:
        while (t := now()) < args.seconds:
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited with {agent.returncode} at virtual {t:.1f} s ({work}/agent.log)")
            sim_pid = sim_pid or next(iter(children(agent.pid)), None)
            if args.fail and failed_at is None and t >= args.fail_at:
                sim_control(
                    data / "sim" / "control.sock", {"cmd": "circuit", "circuit": args.fail, "failed": args.fail_share}
                )
                failed_at = now()
            if t >= next_check:
                try:
                    c = check(status(data / "agent.sock"), now())
                except OSError as e:
                    c = {"t": round(t, 3), "error": str(e)}
                checks.append(c)
                if (
                    failed_at is not None
                    and detected_at is None
                    and any("lamp_failure" in a for a in c.get("alarms", []))
                ):
                    detected_at = c["t"]
                next_check += args.check_every
            time.sleep(0.02)
        wall = time.monotonic() - w0
        out.update(virtual_s=round(now(), 3), wall_s=round(wall, 3))
        out["virtual_per_wall"] = round(out["virtual_s"] / wall, 1)
        out["cpu_s"] = {
            "agent": cpu_s(agent.pid),
            "sim": cpu_s(sim_pid) if sim_pid else None,
            "coordinator": cpu_s(coord.pid) if coord else None,
        }
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
        if coord is not None:
            try:
                coord.wait(timeout=10)
            except subprocess.TimeoutExpired:
                coord.kill()
    out["coordinator"] = (work / "coordinator.log").read_text().strip().splitlines()[-1:] if coord else None
    out["checks"] = checks
    out["fail"] = {"circuit": args.fail, "at": failed_at, "detected_at": detected_at} if args.fail else None
    bad = [c for c in checks if c.get("error") or c["not_good"] or [a for a in c["alarms"] if "lamp_failure" not in a]]
    out["ok"] = not bad and (not args.fail or detected_at is not None)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m boards.sim.vtime.rig", description="example cabinet + agent on virtual time"
    )
    ap.add_argument("--config", default="boards/sim/cabinet.toml")
    ap.add_argument("--seconds", type=float, default=600.0, help="virtual seconds to run (default 600)")
    ap.add_argument("--speed", type=float, help="pace: at most this many virtual seconds per wall second")
    ap.add_argument("--check-every", type=float, default=60.0, help="read the agent's status every N virtual s")
    ap.add_argument("--fail", metavar="CIRCUIT", help="fail lamps of this circuit (sim control 'circuit')")
    ap.add_argument("--fail-at", type=float, default=120.0, help="virtual second of the failure (default 120)")
    ap.add_argument("--fail-share", type=float, default=0.5, help="share of the lamps that fail (default 0.5)")
    ap.add_argument("--data-dir", help="working directory (default: a new temporary one)")
    ap.add_argument("--real", action="store_true", help="no coordinator: the agent in real time (the reference)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = run(args)
    if out["ok"] and not args.data_dir:
        shutil.rmtree(out["dir"], ignore_errors=True)  # a temporary dir: kept only to read the logs of a failure
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"virtual {out['virtual_s']} s in {out['wall_s']} s wall: {out['virtual_per_wall']} virtual s per wall s")
        print(f"cpu s: {out['cpu_s']}; {out['coordinator']}")
        for c in out["checks"]:
            what = c.get("error") or (
                f"{len(c['not_good'])} not good {c['not_good'][:3]}, alarms {c['alarms']}, "
                f"segments {c['segments']}, climate {c['climate']}, bus failures {c['bus_failures']}"
            )
            print(f"  t={c['t']}: {what}")
        if out["fail"]:
            f = out["fail"]
            print(f"lamp failure on {f['circuit']} at {f['at']}: detected at {f['detected_at']}")
        print("ok" if out["ok"] else "FAILED")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
