"""The checks of `cabinet doctor`: each a small function returning a Result (or a list).

Checks never raise for what they find: a fault is a FAIL or WARN Result with a fix
hint. Blocking work (SQLite, files, certificates) runs in a daemon thread so the
runner's timeout (tools.doctor.report) can give up on it without hanging the process.
Thresholds are parameters (defaults documented in docs/doctor.md). This file: the
Result, the config, buses and devices; the uplink (broker, certificate) and the host
(clock, outbox) checks are in tools/doctor/uplink.py and host.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent import config as cfg
from drivers import profiles

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Result:
    check: str  # what was checked: "config", "bus rs485", "device lux", "clock", ...
    status: str  # PASS | WARN | FAIL
    detail: str  # what was found
    hint: str = ""  # how to fix it (when not PASS)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `fn` in a daemon thread (a hung call cannot keep the process alive)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def done(ok: bool, value: Any) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def work() -> None:
        try:
            value, ok = fn(*args), True
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting side
            value, ok = e, False
        try:
            loop.call_soon_threadsafe(done, ok, value)
        except RuntimeError:  # the loop is gone: nobody waits any more
            pass

    threading.Thread(target=work, name="doctor-check", daemon=True).start()
    return await fut


# ------------------------------------------------------------------------------------- config


def check_config(path: str | Path, boards: Mapping[str, Any] | None) -> tuple[list[Result], Any]:
    """Validate the config; one FAIL line per issue. Returns (results, Config or None)."""
    issues = cfg.check(path, boards)
    if issues:
        hint = f"fix the file, then `cabinet config check {path}`"
        return [Result("config", FAIL, str(i), hint) for i in issues], None
    c = cfg.load(path, boards)
    return [
        Result(
            "config",
            PASS,
            f"{path}: valid - cabinet {c.cabinet_id}, {len(c.buses)} buses, "
            f"{len(c.devices)} devices (sha256 {c.sha256[:12]})",
        )
    ], c


# ------------------------------------------------------------------------------------- buses


def bus_hint(kind: str, reason: str, bus: str) -> str:
    r = reason or ""
    if "port missing" in r:
        return (
            f"the serial adapter is not there: plug in the RS-485 adapter, check `ls -l /dev/serial/by-id/` "
            f"and [buses.{bus}] port"
        )
    if kind == "rtu":
        return (
            f"the port exists but does not open: another program may hold it (`fuser {r.rsplit(' ', 1)[-1]}`; "
            f"only one master per line), or the agent's user lacks permission (group dialout)"
        )
    if "refused" in r:
        return f"nothing listens there: check the gateway is powered and its Modbus TCP port, [buses.{bus}] host/port"
    return f"check the gateway's power, cable and IP address (`ping`), and [buses.{bus}] host/port"


def device_hint(reason: str, bus: str, unit: int, *, live: bool = False) -> str:
    """How to fix a device that does not answer well; `live`: the agent is master of the line."""
    r = (reason or "").lower()
    if "crc" in r or "garbled" in r or "short" in r or "wrong unit" in r or "bad_frame" in r:
        return (
            f"replies are corrupt: check baudrate/parity/stopbits of [buses.{bus}] against the device, "
            f"termination (120 ohm at both ends) and the signal ground"
        )
    scan = f"`cabinet scan --bus {bus}` lists who answers"
    if live:
        scan = f"stop the agent, then {scan} (one master per line)"
    return (
        f"no answer at unit {unit}: check the wiring (A/B swapped?), the device's power, its unit id "
        f"and line settings; {scan}"
    )


def live_bus_results(bus_status: Mapping[str, Any], config_devices: Sequence[Any]) -> list[Result]:
    """A bus and its devices judged from the running agent's status (no second master on the line)."""
    name = bus_status["name"]
    state, reason = bus_status.get("state"), bus_status.get("reason")
    target = f"{bus_status.get('kind')} {bus_status.get('target')}"
    if state == "up":
        out = [Result(f"bus {name}", PASS, f"{target}: up (live, from the running agent)")]
    elif state == "down":
        out = [
            Result(
                f"bus {name}",
                FAIL,
                f"{target}: down - {reason} (live)",
                bus_hint(bus_status.get("kind", ""), reason or "", name),
            )
        ]
    else:
        out = [
            Result(
                f"bus {name}",
                WARN,
                f"{target}: {state}, no answer yet (live)",
                "the agent has not completed a transaction yet; run the doctor again in a minute",
            )
        ]
    live = {d["name"]: d for d in bus_status.get("devices", [])}
    out += [_live_device_result(dev, live.get(dev.name), name) for dev in config_devices]
    return out


def _live_device_result(dev: Any, d: Mapping[str, Any] | None, bus: str) -> Result:
    """A configured device judged from its entry in the running agent's bus status (None: absent)."""
    label = f"device {dev.name}"
    if d is None:
        return Result(
            label,
            WARN,
            f"unit {dev.unit}: not polled by the running agent",
            "the agent runs another config: restart it with this one",
        )
    if d.get("profile") != dev.profile_name:
        return Result(
            label,
            WARN,
            f"unit {dev.unit}: the agent polls it as {d.get('profile')}, the config says {dev.profile_name}",
            "the agent runs another config: restart it with this one",
        )
    what = f"unit {dev.unit} {dev.profile_name}"
    if d.get("state") == "ok":
        return Result(label, PASS, f"{what}: answers the agent's polls (live; profile not re-probed)")
    if d.get("state") == "failing":
        return Result(
            label,
            FAIL,
            f"{what}: failing - {d.get('reason')} (live)",
            device_hint(d.get("reason") or "", bus, dev.unit, live=True),
        )
    return Result(label, WARN, f"{what}: not polled yet (live)", "run the doctor again in a minute")


async def open_bus(engine: Any, bus: Any) -> Result:
    """Open the bus's port (RTU, with its configured line settings) or connect (TCP)."""
    label = f"bus {bus.name}"
    if bus.kind == "rtu":
        settings = f"rtu {engine.target} {bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
    else:
        settings = f"tcp {engine.target}"
    if await engine.connect():
        return Result(label, PASS, f"{settings}: opened")
    return Result(label, FAIL, f"{settings}: {engine.reason}", bus_hint(bus.kind, engine.reason or "", bus.name))


async def probe_device(engine: Any, dev: Any) -> Result:
    """Probe one device with every profile's probe reads (tools.scan.probe) and compare the best match."""
    from tools.scan.probe import MIN_CONFIDENCE, scan  # deferred: heavy (pymodbus)

    label, what = f"device {dev.name}", f"unit {dev.unit} {dev.profile_name}"
    spec = profiles.get(dev.profile_name)
    found = await scan(engine, [dev.unit])
    if not found:
        reason = engine.reason if engine.state == "down" else "no response"
        return Result(label, FAIL, f"{what}: {reason}", device_hint(reason, dev.bus, dev.unit))
    f = found[0]
    if spec.probe is None:
        return Result(
            label,
            WARN,
            f"{what}: answers; profile {dev.profile_name} has no probe to confirm it",
            f"check the model on the device's label against [devices.{dev.name}] profile",
        )
    scores = dict(f.candidates)
    mine = scores.get(dev.profile_name, 0.0)
    if f.profile == dev.profile_name or (mine >= MIN_CONFIDENCE and mine >= f.confidence):
        return Result(label, PASS, f"{what}: answers as {dev.profile_name} (confidence {max(mine, f.confidence):.2f})")
    if f.profile is not None:
        return Result(
            label,
            FAIL,
            f"{what}: answers like {f.profile} (confidence {f.confidence:.2f}), not {dev.profile_name} ({mine:.2f})",
            f"another device is at unit {dev.unit}: a replaced device or a wrong address. Set "
            f'[devices.{dev.name}] profile = "{f.profile}" if it was replaced on purpose, or set the '
            f"device's address / the config's unit id so the right device answers",
        )
    best = ", ".join(f"{n} {c:.2f}" for n, c in f.candidates) or "no candidate"
    return Result(
        label,
        WARN,
        f"{what}: answers but is not recognized as {dev.profile_name} ({best})",
        f"check the model on the device's label and its register map; `cabinet scan --bus {dev.bus}`",
    )
