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

The clock actions set the agent's virtual clock at boot: unset until the `clock_sync` time
(boards/sim/unset_clock.py). With `[scenario] uplink = true` a broker and an ingest run
beside the agent (tools/rig/uplink.py), paced at UPLINK_SPEED at most; the `broker`,
`ingest` and signed `command` actions are carried out on them when the agent's clock
reaches them, what the agent produced is tapped from its outbox (tools/rig/tap.py), and
after the end the run goes on until every reading up to the end was acknowledged (at most
the agent's batch age and acknowledgement timeout and a minute).

An agent that exits before the end is a crashed run (its log tail in the record), never a
hang. Actions the runner cannot carry out yet (OTA offers) refuse the scenario before
anything starts.

Time: the agent and the simulator run on one virtual time (boards/sim/vtime,
docs/virtual-time.md): wire time, Modbus timeouts, poll periods and alarm delays all pass
in simulated seconds, so a run as fast as the machine allows makes the decisions of a
real-time run. `speed` paces it (at most that many simulated seconds per second).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
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
from boards.sim.unset_clock import ENV as UNSET_ENV
from boards.sim.vtime.protocol import time_file
from tools.ingest.store import Store as IngestStore
from tools.ingest.store import StoreError as IngestStoreError
from tools.rig import collect, expect, tap, wiring
from tools.rig.actions import Action
from tools.rig.procs import stop_group
from tools.rig.record import AgentExit, Injected, RunRecord
from tools.rig.scenario import Scenario
from tools.rig.uplink import RigUplink, UplinkError
from tools.sim.control import NoSimulator
from tools.sim.control import send as sim_send

SLOWEST_MAX_SPEED = 20.0  # the least "as fast as possible" reaches (~100x measured): the hang budget
VT_SOCKET = "vt.sock"
RIG_ACTIONS = {"override", "override_cancel", "alarm_ack"}  # carried out on the agent's socket
CLOCK_ACTIONS = {"clock_unset", "clock_sync"}  # carried out by the agent's clock ($VTIME_CLOCK_UNSET_UNTIL)
UPLINK_ACTIONS = {"broker", "ingest", "command"}  # carried out on the run's broker and ingest (tools/rig/uplink.py)
NOT_YET = {  # why an action kind is refused
    "ota_offer": " (an offer needs the agent under cabinet-boot, with A/B slots, and an update repository)"
}
UPLINK_SPEED = 50.0  # the fastest pace of an uplink scenario (tools/rig/uplink.py, docs/rig.md)
STOP_GRACE_S = 20.0
POLL_S = 0.2
MIN_POLL_S = 0.02
SOCKET_PATH_MAX = 100
UPLINK_REPLACED = ("broker", "port", "tls", "ca", "cert", "key", "signing_key", "ingest_key", "topic_prefix")


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
    for a in sc.actions:
        if a.message() is None and a.kind not in RIG_ACTIONS | CLOCK_ACTIONS | UPLINK_ACTIONS:
            why = NOT_YET.get(a.kind, "")
            raise RunError(
                f"{sc.file}: [[action]] {a.index} kind {a.kind!r} is not carried out by this runner yet{why}"
            )


def run_config(
    sc: Scenario, speed: float, uplink: dict[str, Any] | None = None, trust: dict[str, Any] | None = None
) -> str:
    """The TOML the agent under test runs (see the module's docstring, step 1). Under
    virtual time its [sim] start and speed are the coordinator's epoch and pace. `uplink`:
    the run's broker and keys, in place of the config's [uplink] (tools/rig/uplink.py); `trust`:
    the rig's operator key for signed commands."""
    doc: dict[str, Any] = tomllib.loads(wiring.config_text(sc))
    if uplink is not None:
        doc["uplink"] = {k: v for k, v in (doc.get("uplink") or {}).items() if k not in UPLINK_REPLACED} | uplink
    if trust is not None:  # the rig's operator key beside the config's own operators
        mine = dict(doc.get("trust") or {})
        mine["operators"] = {**(mine.get("operators") or {}), **trust["operators"]}
        doc["trust"] = mine
    sim = dict(doc.get("sim") or {})
    sim["start"] = dt.datetime.fromtimestamp(sc.start, dt.UTC).isoformat()
    sim["speed"] = speed
    if sc.seed is not None:
        sim["seed"] = sc.seed
    steps = [{"at_s": round(a.t - sc.start, 3), **m} for a in sc.actions if (m := a.message()) is not None]
    sim["script"] = [*sim.get("script", []), *steps]
    w = sc.weather
    weather = {
        key: [[round(t - sc.start, 3), v] for t, v in curve.points]
        for key, curve in (("temperature", w.temperature), ("humidity", w.humidity), ("cloud", w.cloud))
        if curve is not None
    }
    if weather:
        sim["weather"] = weather
    doc["sim"] = sim
    return tomli_w.dumps(doc)


def clock_env(sc: Scenario) -> dict[str, str]:
    """The agent's clock at boot: with a `clock_unset` action it says it is unset until the
    first `clock_sync` (or the whole run), exactly at that simulated time
    (boards/sim/unset_clock.py)."""
    if not any(a.kind == "clock_unset" for a in sc.actions):
        return {}
    sync = next((a.t for a in sc.actions if a.kind == "clock_sync"), None)
    return {UNSET_ENV: "never" if sync is None else repr(sync)}


def pace_of(sc: Scenario, speed: float | None) -> float | None:
    """Simulated seconds per wall second (None: as fast as possible); uplink scenarios at
    most UPLINK_SPEED (their broker and ingest run in real time: tools/rig/uplink.py)."""
    pace = speed or sc.speed
    if sc.uplink:
        pace = min(pace or UPLINK_SPEED, UPLINK_SPEED)
    return pace


def run(sc: Scenario, out: Path, speed: float | None = None) -> Result:
    """Run `sc` with its output (config, data dir, agent log) in `out`; see the module's docstring."""
    supported(sc)
    pace = pace_of(sc, speed)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if len(str(data / "sim" / "control.sock")) > SOCKET_PATH_MAX:  # Unix socket paths: 107 bytes at most
        data = Path(tempfile.mkdtemp(prefix="cabinet-rig-"))  # moved to out/data after the run
    up = RigUplink(out, sc.config.cabinet_id) if sc.uplink else None
    cfg_path = out / "cabinet.toml"
    log_path = out / "agent.log"
    rec = replace(wiring.new_record(sc), speed=pace)
    wall0 = time.monotonic()
    data.mkdir(parents=True, exist_ok=True)
    if up is not None:
        try:
            tap.prepare(data / "outbox.db")
            up.start()
        except (tap.TapError, UplinkError, OSError) as e:
            up.stop()
            raise RunError(f"{sc.file}: {e}") from None
    cfg_path.write_text(
        run_config(sc, pace or 1.0, up.config_table() if up else None, up.trust_table() if up else None)
    )
    try:
        coord = _coordinator(data, sc.start, pace, out / "coordinator.log")
    except RunError:
        if up is not None:
            up.stop()
        raise
    env = {**os.environ, "VTIME_SOCKET": str(data / VT_SOCKET)}  # the agent and its simulator join
    env.update(clock_env(sc))
    drain = _drain_s(sc) if up is not None else 0.0
    budget = (sc.end + drain - sc.start) / min(pace or SLOWEST_MAX_SPEED, SLOWEST_MAX_SPEED) * 1.5 + 120
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
            status = _follow(sc, proc, data, rec, deadline=wall0 + budget, up=up, drain=drain, pace=pace)
        finally:
            code = _stop(proc)
            if up is not None:
                up.stop()
            _stop(coord)
    tail = tuple(deque(log_path.read_text(errors="replace").splitlines(), maxlen=40))
    exit_ = AgentExit(status, code, _exit_message(status, code), tail if status != "stopped" else ())
    rec = replace(rec, exit=exit_, wall_s=round(time.monotonic() - wall0, 3))
    try:
        if up is None:
            made = collect.readings(data / "outbox.db")
        else:  # delivered rows left the outbox: what the tap saw, up to the end of the run
            made = [r for r in tap.produced(data / "outbox.db") if r.t <= sc.end]
            rec = replace(rec, deliveries=tap.deliveries(made, _stored(up, sc.end)))
        rec = collect.fill(rec, made, sc.config)
    except (collect.CollectError, tap.TapError) as e:
        rec = replace(rec, exit=replace(exit_, status="crashed", message=str(e), log_tail=tail))
    if data != out / "data":
        shutil.rmtree(out / "data", ignore_errors=True)
        shutil.move(data, out / "data")
    rec.actions.sort(key=lambda i: i.t)
    verdicts = tuple(expect.judge_all(list(sc.expectations), rec))
    return Result(rec, verdicts, out)


def _drain_s(sc: Scenario) -> float:
    """Simulated seconds an uplink run may go on after its end until every reading of the run
    is acknowledged: the agent's batch age bound and acknowledgement timeout, and a minute."""
    u = sc.config.uplink
    return (u.batch_max_age_s + u.ack_timeout_s if u is not None else 360.0) + 60.0


def _stored(up: RigUplink, end: float) -> list[tuple[str, float]]:
    """(point, t) of every reading the ingest stored for the run's cabinet, up to `end`."""
    try:
        store = IngestStore(str(up.db))
    except (IngestStoreError, OSError) as e:
        raise tap.TapError(f"{up.db}: cannot read the ingest's database: {e}") from None
    try:
        return [(str(row[1]), float(row[2])) for row in store.readings(up.cabinet_id) if float(row[2]) <= end]
    finally:
        store.close()


def _follow(
    sc: Scenario,
    proc: subprocess.Popen[bytes],
    data: Path,
    rec: RunRecord,
    deadline: float,
    up: RigUplink | None = None,
    drain: float = 0.0,
    pace: float | None = None,
) -> str:
    """Watch the agent's clock until the end of the run; carry out the rig's actions on time.
    With an uplink, go on after the end (at most `drain` simulated seconds) until every
    reading stamped up to the end left the outbox (acknowledged by the ingest).
    Returns "stopped" (the run reached its end), "crashed" (the agent exited) or "hung"."""
    sock = data / SOCKET_NAME
    plant = [a for a in sc.actions if a.message() is not None]
    rec.actions.extend(Injected(a.t, a.kind, dict(a.args), "sent to the simulator at its time") for a in plant)
    clock = [a for a in sc.actions if a.kind in CLOCK_ACTIONS]
    rec.actions.extend(Injected(a.t, a.kind, dict(a.args), "the agent's virtual clock at its time") for a in clock)
    pending = [a for a in sc.actions if a.kind in RIG_ACTIONS | UPLINK_ACTIONS]
    energy0: dict[str, float] | None = None  # the plant's energy per circuit when the agent first answered
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
        if energy0 is None:
            energy0 = plant_energy(data)
        while pending and pending[0].t <= now:
            a = pending.pop(0)
            rec.actions.append(_uplink_action(a, up, now) if a.kind in UPLINK_ACTIONS else _carry_out(a, sock, now))
        if now >= sc.end + drain or (now >= sc.end and tap.pending_before(data / "outbox.db", sc.end) == 0):
            energy1 = plant_energy(data)
            for seg, circuit in wiring.segment_circuits(sc).items():
                if energy0 and energy1 and circuit in energy0 and circuit in energy1:
                    rec.plant_energy_kwh[seg] = round(energy1[circuit] - energy0[circuit], 6)
            return "stopped"
        time.sleep(_nap(pending[0].t - now if pending else None, pace))


def plant_energy(data: Path) -> dict[str, float] | None:
    """Energy per circuit the simulated plant has drawn (its `state`), None if it did not answer."""
    try:
        reply = sim_send(data / "sim" / "control.sock", {"cmd": "state"}, wait=0.0, timeout=10.0)
        circuits = reply["state"]["circuits"]
        return {name: float(c["energy_kwh"]) for name, c in circuits.items()}
    except (NoSimulator, KeyError, TypeError, ValueError):
        return None


def _uplink_action(a: Action, up: RigUplink | None, now: float) -> Injected:
    args = dict(a.args)
    if up is None:  # parse_action refuses these without [scenario] uplink = true
        return Injected(now, a.kind, args, "refused: the scenario has no uplink", ok=False)
    try:
        if a.kind == "command":
            ok, done = up.command(str(args["command"]), dict(args.get("args") or {}), now)
            return Injected(now, a.kind, args, done, ok=ok)
        done = up.broker(bool(args["up"])) if a.kind == "broker" else up.ingest(bool(args["up"]))
    except (UplinkError, OSError) as e:
        return Injected(now, a.kind, args, f"refused: {e}", ok=False)
    return Injected(now, a.kind, args, done)


def _nap(ahead: float | None, pace: float | None) -> float:
    """Wall seconds to wait before looking at the agent's clock again: POLL_S, shorter when
    the next rig action is due sooner at a known pace (so it lands within a few simulated
    seconds of its time)."""
    if ahead is None or pace is None:
        return POLL_S
    return min(POLL_S, max(MIN_POLL_S, ahead / pace))


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
    return stop_group(proc, STOP_GRACE_S)


def _exit_message(status: str, code: int | None) -> str:
    if status == "crashed":
        return f"the agent exited before the end of the run (exit code {code})"
    if status == "hung":
        return "the agent's clock did not reach the end of the run in time; killed"
    return ""
