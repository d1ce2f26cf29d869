"""Running one scenario: the real agent, as its own process, on the simulated cabinet.

    run(scenario, out_dir, speed=None) -> Result(record, verdicts, files)

1. The agent's config is the scenario's (its `[site]` patched in, tools/rig/wiring.py) with
   a `[sim]` table for the run: the start time, the speed, the seed, and every plant action
   of the timeline as a `[[sim.script]]` step at its simulated second — so faults land at
   exactly their time in the simulator's clock, whatever the speed.
2. `python -m agent run --config <that> --data-dir <out>/data` starts the agent, which
   starts the simulated cabinet as its child, as on a bench. The rig watches the agent's
   clock through its status socket and carries out the actions that are not the plant's
   (a local override, a cancel, an alarm acknowledgement) when the clock reaches them.
3. At the end of the run the agent is stopped (SIGTERM; SIGKILL 20 s later: a hang), and
   what it did is read back from its outbox (tools/rig/collect.py) into the record, which
   the expectations judge.

An agent that exits before the end is a crashed run (its log tail in the record), never a
hang. Actions the runner cannot carry out yet (the clock, the broker and the ingest,
signed commands, OTA offers) refuse the scenario before anything starts.

Time: the agent and the simulator run on one virtual time (boards/sim/vtime,
docs/virtual-time.md): wire time, Modbus timeouts, poll periods and alarm delays all pass
in simulated seconds, so a run as fast as the machine allows makes the decisions of a
real-time run. `speed` paces it (at most that many simulated seconds per second).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomli_w

from agent.runtime.status_api import SOCKET_NAME, AgentRefused, request
from boards.sim.vtime.protocol import time_file
from tools.rig import collect, expect, wiring
from tools.rig.actions import Action
from tools.rig.record import AgentExit, Injected, RunRecord
from tools.rig.scenario import Scenario

SLOWEST_MAX_SPEED = 20.0  # the least "as fast as possible" reaches (~100x measured): the hang budget
VT_SOCKET = "vt.sock"
RIG_ACTIONS = {"override", "override_cancel", "alarm_ack"}  # carried out on the agent's socket
STOP_GRACE_S = 20.0
POLL_S = 0.2
SOCKET_PATH_MAX = 100


class RunError(Exception):
    """The scenario cannot be run (one line saying why)."""


@dataclass(frozen=True)
class Result:
    record: RunRecord
    verdicts: tuple[expect.Verdict, ...]
    work: Path

    @property
    def passed(self) -> bool:
        return not self.record.exit.crashed and all(v.passed for v in self.verdicts)


def supported(sc: Scenario) -> None:
    """RunError naming the first action or setting this runner cannot carry out."""
    if sc.uplink:
        raise RunError(f"{sc.file}: scenarios with an uplink (broker, ingest) are not run by this runner yet")
    for a in sc.actions:
        if a.message() is None and a.kind not in RIG_ACTIONS:
            raise RunError(f"{sc.file}: [[action]] {a.index} kind {a.kind!r} is not carried out by this runner yet")


def run_config(sc: Scenario, speed: float) -> str:
    """The TOML the agent under test runs (see the module's docstring, step 1). Under
    virtual time its [sim] start and speed are the coordinator's epoch and pace."""
    doc: dict[str, Any] = tomllib.loads(wiring.config_text(sc))
    sim = dict(doc.get("sim") or {})
    sim["start"] = dt.datetime.fromtimestamp(sc.start, dt.UTC).isoformat()
    sim["speed"] = speed
    if sc.seed is not None:
        sim["seed"] = sc.seed
    steps = [{"at_s": round(a.t - sc.start, 3), **m} for a in sc.actions if (m := a.message()) is not None]
    sim["script"] = [*sim.get("script", []), *steps]
    doc["sim"] = sim
    return tomli_w.dumps(doc)


def run(sc: Scenario, out: Path, speed: float | None = None) -> Result:
    """Run `sc` with its output (config, data dir, agent log) in `out`; see the module's docstring."""
    supported(sc)
    pace = speed or sc.speed  # None: as fast as the machine allows
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if len(str(data / "sim" / "control.sock")) > SOCKET_PATH_MAX:  # Unix socket paths: 107 bytes at most
        data = Path(tempfile.mkdtemp(prefix="cabinet-rig-"))  # moved to out/data after the run
    cfg_path = out / "cabinet.toml"
    cfg_path.write_text(run_config(sc, pace or 1.0))
    log_path = out / "agent.log"
    rec = replace(wiring.new_record(sc), speed=pace)
    wall0 = time.monotonic()
    data.mkdir(parents=True, exist_ok=True)
    coord = _coordinator(data, sc.start, speed or sc.speed, out / "coordinator.log")
    env = {**os.environ, "VTIME_SOCKET": str(data / VT_SOCKET)}  # the agent and its simulator join
    budget = (sc.end - sc.start) / (speed or sc.speed or SLOWEST_MAX_SPEED) * 1.5 + 120
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(cfg_path), "--data-dir", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            status = _follow(sc, proc, data / SOCKET_NAME, rec, deadline=wall0 + budget)
        finally:
            code = _stop(proc)
            _stop(coord)
    tail = tuple(deque(log_path.read_text(errors="replace").splitlines(), maxlen=40))
    exit_ = AgentExit(status, code, _exit_message(status, code), tail if status != "stopped" else ())
    rec = replace(rec, exit=exit_, wall_s=round(time.monotonic() - wall0, 3))
    try:
        rec = collect.fill(rec, collect.readings(data / "outbox.db"), sc.config)
    except collect.CollectError as e:
        rec = replace(rec, exit=replace(exit_, status="crashed", message=str(e), log_tail=tail))
    if data != out / "data":
        shutil.rmtree(out / "data", ignore_errors=True)
        shutil.move(data, out / "data")
    rec.actions.sort(key=lambda i: i.t)
    verdicts = tuple(expect.judge_all(list(sc.expectations), rec))
    return Result(rec, verdicts, out)


def _follow(sc: Scenario, proc: subprocess.Popen[bytes], sock: Path, rec: RunRecord, deadline: float) -> str:
    """Watch the agent's clock until the end of the run; carry out the rig's actions on time.
    Returns "stopped" (the run reached its end), "crashed" (the agent exited) or "hung"."""
    plant = [a for a in sc.actions if a.message() is not None]
    rec.actions.extend(Injected(a.t, a.kind, dict(a.args), "sent to the simulator at its time") for a in plant)
    pending = [a for a in sc.actions if a.kind in RIG_ACTIONS]
    while True:
        if proc.poll() is not None:
            return "crashed"
        if time.monotonic() > deadline:
            return "hung"
        try:
            now = float(request(sock, "/status", timeout=5.0)["agent"]["wall_time"])
        except (OSError, KeyError, ValueError, TypeError, AgentRefused):
            time.sleep(POLL_S)
            continue
        while pending and pending[0].t <= now:
            rec.actions.append(_carry_out(pending.pop(0), sock, now))
        if now >= sc.end:
            return "stopped"
        time.sleep(POLL_S)


def _carry_out(a: Action, sock: Path, now: float) -> Injected:
    args = dict(a.args)
    if a.kind == "override":
        body = {k: v for k, v in args.items() if k in ("on", "level", "until", "forever") and v is not None}
        if args.get("segments"):
            body["segments"] = args["segments"]
        if "for_s" in args:
            body["minutes"] = args["for_s"] / 60
        target, body = "/lighting/override", {**body, "source": "rig"}
    elif a.kind == "override_cancel":
        target, body = "/lighting/cancel", {"segments": args.get("segments") or None, "source": "rig"}
    else:
        target, body = "/alarms/ack", {"id": args.get("alarm"), "by": "rig"}
    try:
        request(sock, target, timeout=5.0, post=body)
    except (OSError, AgentRefused) as e:
        return Injected(now, a.kind, args, f"refused: {e}", ok=False)
    return Injected(now, a.kind, args, f"done on the agent's socket ({target})")


def _coordinator(data: Path, epoch: float, speed: float | None, log_path: Path) -> subprocess.Popen[bytes]:
    """The virtual-time coordinator of the run (boards/sim/vtime): the agent and the simulator
    are its two participants; its epoch is the scenario's start; `speed` paces it (None: no limit)."""
    sock = data / VT_SOCKET
    cmd = [sys.executable, "-m", "boards.sim.vtime.coordinator", "--socket", str(sock), "--participants", "2"]
    cmd += ["--epoch", repr(epoch)] + (["--speed", repr(speed)] if speed else [])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    ready = Path(time_file(str(sock)))
    for _ in range(500):
        if ready.exists() or proc.poll() is not None:
            break
        time.sleep(0.01)
    if not ready.exists():
        _stop(proc)
        raise RunError(f"the virtual-time coordinator did not start (see {log_path})")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    return proc.returncode


def _exit_message(status: str, code: int | None) -> str:
    if status == "crashed":
        return f"the agent exited before the end of the run (exit code {code})"
    if status == "hung":
        return "the agent's clock did not reach the end of the run in time; killed"
    return ""
