"""`cabinet doctor`: on-site checks with one PASS / WARN / FAIL line each and a fix hint.

Checks (docs/doctor.md): config valid, each bus opens, every device answers with its
profile, clock synced, broker reachable with the cabinet's certificate, certificate
validity, outbox health, disk space, active alarms. When the agent runs (its status
socket answers) buses, devices and the uplink are judged from its live health: a
second master on an RS-485 line, or a second session with the cabinet's identity,
would be a fault of its own. Every check has a timeout; exit 0 when nothing failed.
The individual checks live in tools/doctor/checks.py, host.py and uplink.py (tests call
them directly).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.runtime.status_api import SOCKET_NAME, fetch
from tools.doctor import checks as dc
from tools.doctor import host, uplink
from tools.doctor.checks import FAIL, PASS, WARN, Result
from tools.scan.where import SIM_HINT, SimNotRunning, bus_endpoints

DISK_WARN_PCT = 10.0
DISK_FAIL_PCT = 2.0
DISK_FAIL_BYTES = 100 * 2**20
BUS_OPEN_TIMEOUT_S = 10.0
DEVICE_TIMEOUT_S = 20.0
CHECK_TIMEOUT_S = 20.0


def check_disk(
    data_dir: Path,
    *,
    warn_pct: float = DISK_WARN_PCT,
    fail_pct: float = DISK_FAIL_PCT,
    fail_bytes: float = DISK_FAIL_BYTES,
) -> Result:
    """Free space on the file system holding the data dir."""
    p = Path(data_dir)
    while not p.exists() and p != p.parent:
        p = p.parent
    u = shutil.disk_usage(p)
    pct = 100.0 * u.free / u.total if u.total else 0.0
    text = f"{data_dir}: {u.free / 2**20:.0f} MiB free of {u.total / 2**20:.0f} MiB ({pct:.1f} %)"
    hint = (
        "free space: old logs (`journalctl --vacuum-size=50M`), old update bundles; the outbox evicts "
        "telemetry when the disk is full"
    )
    if pct < fail_pct or u.free < fail_bytes:
        return Result("disk", FAIL, text + f" - below {fail_pct:g} % or {fail_bytes / 2**20:.0f} MiB", hint)
    if pct < warn_pct:
        return Result("disk", WARN, text + f" - below {warn_pct:g} %", hint)
    return Result("disk", PASS, text)


def check_alarms(status: Mapping[str, Any] | None) -> Result:
    """Active alarms of the running agent: warnings WARN, anything critical FAIL."""
    if status is None:
        return Result("alarms", WARN, "unknown: no agent running to ask", "start the agent (`cabinet run`)")
    controls = status.get("controls")
    if not controls:
        return Result("alarms", PASS, "no control loop configured: no alarms")
    alarms = controls.get("alarms") or []
    if not alarms:
        return Result("alarms", PASS, "none active")
    text = "; ".join(
        f"{a['severity']} {a['id']} [{a['state']}]" + (f" {a['message']}" if a.get("message") else "") for a in alarms
    )
    hint = "fix the cause on site, then acknowledge latched alarms (`cabinet alarms ack`); docs/climate.md lists them"
    if any(a.get("severity") == "critical" for a in alarms):
        return Result("alarms", FAIL, f"{len(alarms)} active: {text}", hint)
    return Result("alarms", WARN, f"{len(alarms)} active: {text}", hint)


# ------------------------------------------------------------------------------------- running


async def guarded(label: str, work: Awaitable[Any], timeout: float) -> list[Result]:
    """Await a check (a Result or a list of them) within `timeout`; a hang or a crash is a FAIL line."""
    try:
        r = await asyncio.wait_for(work, timeout)
    except TimeoutError:
        return [
            Result(
                label,
                FAIL,
                f"no result within {timeout:g} s",
                "something hangs (a port, the network, the disk): run the doctor again; if it repeats, "
                "check that part by hand",
            )
        ]
    except Exception as e:  # noqa: BLE001 - one broken check must not end the doctor
        return [Result(label, FAIL, f"the check itself failed: {type(e).__name__}: {e}", "report this with the output")]
    return r if isinstance(r, list) else [r]


async def agent_status(data_dir: Path, timeout: float = 3.0) -> tuple[dict | None, str]:
    sock = Path(data_dir) / SOCKET_NAME
    try:
        return await fetch(sock, timeout=timeout), ""
    except (TimeoutError, OSError, ValueError) as e:
        return None, f"no agent answering at {sock} ({e or type(e).__name__})"


def agent_result(status: dict | None, why: str, config: Any) -> Result:
    if status is None:
        return Result(
            "agent",
            WARN,
            f"not running: {why}; buses are opened directly",
            "start it (`cabinet run` or its service) once the checks pass",
        )
    ag = status.get("agent", {})
    text = f"running, version {ag.get('version')}, up {ag.get('uptime_s', 0):.0f} s"
    if config is not None and ag.get("config_sha256") not in (None, config.sha256):
        return Result(
            "agent",
            WARN,
            f"{text}, with another config ({ag.get('config')})",
            "restart the agent so it runs the checked config",
        )
    return Result("agent", PASS, text)


def make_engine(bus: Any, where: tuple | None) -> Any:
    from drivers.modbus.engine import BusEngine  # deferred: heavy (pymodbus)

    if bus.kind == "rtu":
        return BusEngine.rtu(
            bus.name,
            where[1] if where else bus.port,
            baudrate=bus.baudrate,
            parity=bus.parity,
            stopbits=bus.stopbits,
            bytesize=bus.bytesize,
            timeout_ms=bus.timeout_ms,
            inter_frame_ms=bus.inter_frame_ms,
        )
    host, port = (where[1], where[2]) if where else (bus.host, bus.port)
    return BusEngine.tcp(bus.name, host, port, timeout_ms=bus.timeout_ms)


async def check_bus(
    bus: Any,
    devices: list,
    where: tuple | None,
    *,
    open_timeout: float = BUS_OPEN_TIMEOUT_S,
    device_timeout: float = DEVICE_TIMEOUT_S,
) -> list[Result]:
    """Open one bus ourselves and probe its devices (only when no agent owns it)."""
    engine = make_engine(bus, where)
    try:
        out = await guarded(f"bus {bus.name}", dc.open_bus(engine, bus), open_timeout)
        if out[0].status != PASS:
            return out + [
                Result(
                    f"device {d.name}",
                    FAIL,
                    f"unit {d.unit} {d.profile_name}: not reached, bus {bus.name} did not open",
                    "fix the bus first",
                )
                for d in devices
            ]
        for d in devices:
            out += await guarded(f"device {d.name}", dc.probe_device(engine, d), device_timeout)
        return out
    finally:
        await engine.close()


async def run(
    config_path: str | Path,
    data_dir: Path,
    *,
    boards: Mapping[str, Any] | None = None,
    skip_buses: bool = False,
    endpoints: Mapping[str, tuple] | None = None,
    timedatectl: tuple[str, ...] | None = None,
    now: float | None = None,
    disk: Mapping[str, float] | None = None,
    timeout: float = CHECK_TIMEOUT_S,
) -> list[Result]:
    """Every check, in a fixed order; independent groups run concurrently."""
    data_dir = Path(data_dir)
    now = time.time() if now is None else now
    results, config = await _read_config(config_path, boards, timeout)
    status, why = await agent_status(data_dir)
    results.append(agent_result(status, why, config))
    groups: list[Awaitable[list[Result]]] = []
    if config is not None and skip_buses:
        results.append(
            Result(
                "buses", WARN, "buses and devices not checked (--skip-buses)", "run without --skip-buses to check them"
            )
        )
    elif config is not None:
        groups += _bus_groups(config, status, _where(config, status, data_dir, endpoints), timeout)
    if timedatectl is None:
        groups.append(guarded("clock", host.check_clock(status), timeout))
    else:
        groups.append(guarded("clock", host.check_clock(status, timedatectl=timedatectl), timeout))
    if config is not None:
        up = config.uplink
        groups.append(
            guarded(
                "broker",
                uplink.check_broker(
                    up, config.cabinet_id, live=(status or {}).get("uplink"), timeout=min(10.0, timeout / 2)
                ),
                timeout,
            )
        )
        groups.append(guarded("certificate", dc.in_thread(uplink.check_certificate, up, config.cabinet_id), timeout))
        ob_path, max_bytes = data_dir / config.outbox.path, config.outbox.max_mb * 2**20
    else:
        ob_path, max_bytes = data_dir / "outbox.db", None
    outbox = dc.in_thread(lambda: host.check_outbox(ob_path, now, max_bytes=max_bytes))
    groups.append(guarded("outbox", outbox, timeout))
    groups.append(guarded("disk", dc.in_thread(lambda: check_disk(data_dir, **(disk or {}))), timeout))
    groups.append(guarded("alarms", _sync(check_alarms, status), timeout))
    for group in await asyncio.gather(*groups):
        results += group
    return results


async def _read_config(path: str | Path, boards: Mapping[str, Any] | None, timeout: float) -> tuple[list[Result], Any]:
    """The config check's results and the Config (None when invalid), read in a thread within `timeout`."""
    try:
        return await asyncio.wait_for(dc.in_thread(_config, path, boards), timeout)
    except TimeoutError:
        return [
            Result("config", FAIL, f"{path}: not read within {timeout:g} s", "the file system hangs: check the storage")
        ], None


def _where(
    config: Any, status: Mapping[str, Any] | None, data_dir: Path, endpoints: Mapping[str, tuple] | None
) -> Mapping[str, tuple] | str:
    """Where the buses the doctor opens itself are (tools.scan.where), or why they cannot be reached
    (board "sim" without a running simulated cabinet)."""
    if endpoints is not None:
        return dict(endpoints)
    live = {b["name"] for b in (status or {}).get("buses", [])}
    if all(name in live for name in config.buses):
        return {}  # the agent owns every bus: nothing to open
    try:
        return bus_endpoints(config, data_dir)
    except SimNotRunning as e:
        return str(e)


def _bus_groups(
    config: Any, status: Mapping[str, Any] | None, where: Mapping[str, tuple] | str, timeout: float
) -> list[Awaitable[list[Result]]]:
    """Per bus: judged from the running agent's live status when it owns the bus, else opened and probed."""
    live = {b["name"]: b for b in (status or {}).get("buses", [])}
    groups: list[Awaitable[list[Result]]] = []
    for name, bus in config.buses.items():
        devs = [d for d in config.devices.values() if d.bus == name]
        if name in live:
            groups.append(guarded(f"bus {name}", _sync(dc.live_bus_results, live[name], devs), timeout))
        elif isinstance(where, str):
            groups.append(_sync(_unreachable, name, devs, where))
        else:
            groups.append(check_bus(bus, devs, where.get(name)))
    return groups


def _unreachable(bus: str, devices: list, why: str) -> list[Result]:
    """A bus of the simulated board while no simulated cabinet runs, and its devices."""
    return [Result(f"bus {bus}", FAIL, why, SIM_HINT)] + [
        Result(
            f"device {d.name}",
            FAIL,
            f"unit {d.unit} {d.profile_name}: not reached, bus {bus} is not there",
            "fix the bus first",
        )
        for d in devices
    ]


def _config(path: str | Path, boards: Any) -> tuple[list[Result], Any]:
    try:
        return dc.check_config(path, boards)
    except Exception as e:  # noqa: BLE001 - a crashing config check is a FAIL line, not the doctor's end
        return [Result("config", FAIL, f"{path}: {type(e).__name__}: {e}", "report this with the file")], None


async def _sync(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


# ------------------------------------------------------------------------------------- output


def render(results: list[Result]) -> str:
    w = max([len(r.check) for r in results] + [6])
    lines = []
    for r in results:
        lines.append(f"{r.status}  {r.check:<{w}}  {r.detail}")
        if r.hint and r.status != PASS:
            lines.append(f"{'':4}  {'':<{w}}  fix: {r.hint}")
    n = {s: sum(1 for r in results if r.status == s) for s in (PASS, WARN, FAIL)}
    lines.append(f"{len(results)} checks: {n[PASS]} passed, {n[WARN]} warnings, {n[FAIL]} failed")
    return "\n".join(lines)


def exit_code(results: list[Result]) -> int:
    return 1 if any(r.status == FAIL for r in results) else 0


def main(args: argparse.Namespace, data_dir: Path, boards: Mapping[str, Any]) -> int:
    logging.getLogger("drivers").setLevel(logging.CRITICAL)  # the bus's own log lines would repeat the results
    results = asyncio.run(run(args.config or cfg.EXAMPLE, data_dir, boards=boards, skip_buses=args.skip_buses))
    if args.json:
        json.dump({"ok": exit_code(results) == 0, "results": [r.to_dict() for r in results]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(results))
    return exit_code(results)


def add_parsers(
    sub: Any,
    common: Callable,
    data_dir_of: Callable[[argparse.Namespace], Path],
    boards: Callable[[], Mapping[str, Any]],
) -> None:
    """`cabinet doctor [--config FILE] [--data-dir DIR] [--json] [--skip-buses]`."""
    d = sub.add_parser(
        "doctor",
        help="on-site checks: config, buses, devices, clock, broker, certificate, "
        "outbox, disk, alarms; exit 1 if any failed",
    )
    common(d)
    d.add_argument("--json", action="store_true", help="print the results as JSON")
    d.add_argument("--skip-buses", action="store_true", help="do not open buses or probe devices")
    d.set_defaults(func=lambda a: main(a, data_dir_of(a), boards()))
