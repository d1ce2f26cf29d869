"""The checks of `cabinet doctor`: each a small function returning a Result (or a list).

Checks never raise for what they find: a fault is a FAIL or WARN Result with a fix
hint. Blocking work (SQLite, files, certificates) runs in a daemon thread so the
runner's timeout (tools.doctor.report) can give up on it without hanging the process.
Thresholds are parameters (defaults documented in docs/doctor.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.outbox.schema import APP_ID, MAGIC, SCHEMA_VERSION
from drivers import profiles

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

# thresholds (docs/doctor.md)
CERT_WARN_DAYS = 30
OUTBOX_WARN_AGE_S = 6 * 3600.0  # oldest unsent reading older than this: the uplink is behind
OUTBOX_FAIL_AGE_S = 3 * 86400.0  # ... this much behind: the cloud misses days
OUTBOX_WARN_FILL = 0.8  # stored bytes / max bytes


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


# ------------------------------------------------------------------------------------- clock


async def check_clock(
    status: Mapping[str, Any] | None,
    timedatectl: Sequence[str] = ("timedatectl", "show", "-p", "NTPSynchronized", "--value"),
    timeout: float = 5.0,
) -> Result:
    """NTP (timedatectl) first, else the running agent's GPS time quality, else unknown."""
    ntp, why = None, ""
    try:
        proc = await asyncio.create_subprocess_exec(
            *timedatectl, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            out, err, why = b"", b"", "timedatectl timed out"
        text = out.decode(errors="replace").strip().lower()
        if proc.returncode == 0 and text in ("yes", "no"):
            ntp = text == "yes"
        elif not why:
            why = "timedatectl: " + ((err or out).decode(errors="replace").strip().splitlines() or ["no answer"])[0]
    except OSError as e:
        why = f"timedatectl not available ({e.strerror or e})"
    if ntp:
        return Result("clock", PASS, "NTP synchronized (timedatectl)")
    gps = (status or {}).get("gps") or {}
    quality = gps.get("time_quality")
    if quality == "gps":
        return Result(
            "clock",
            PASS,
            f"GPS time valid on {gps.get('port')} (from the running agent)"
            + ("; NTP not synchronized" if ntp is False else ""),
        )
    seen = "NTP not synchronized" if ntp is False else why
    gps_text = (
        f"GPS time quality {quality!r}"
        if quality
        else ("no GPS in the agent's status" if status else "no agent running to ask for GPS time")
    )
    hint = (
        "let the cabinet reach its NTP servers (`timedatectl timesync-status`), or give the GPS antenna a view "
        "of the sky; until then lighting runs by the photocell and timestamps may be wrong"
    )
    if ntp is False:
        return Result("clock", FAIL, f"{seen}; {gps_text}", hint)
    return Result("clock", WARN, f"unknown: {seen}; {gps_text}", hint)


# ------------------------------------------------------------------------------------- uplink


def _tls_hint(text: str) -> str:
    t = text.lower()
    if "certificate expired" in t or "certificate has expired" in t:
        return (
            "the broker refuses an expired certificate: issue a new one with `cabinet provision` (check the clock too)"
        )
    if "unknown ca" in t or "bad certificate" in t or "certificate required" in t:
        return (
            "the broker does not accept this certificate: it must be issued by the fleet's device CA "
            "(`cabinet provision`)"
        )
    if "verify failed" in t:
        return (
            "the broker's certificate does not verify against [uplink] ca: wrong CA file, wrong broker name, "
            "or the cabinet's clock is far off"
        )
    return "check [uplink] ca/cert/key and that the broker's TLS listener is the one configured"


async def check_broker(
    s: Any, cabinet_id: str, *, live: Mapping[str, Any] | None = None, timeout: float = 10.0
) -> Result:
    """TLS handshake with the cabinet's certificate, then an MQTT v5 CONNECT with the [uplink] settings."""
    if s is None:
        return Result(
            "broker",
            WARN,
            "no [uplink] configured: not checked",
            "add an [uplink] section (docs/uplink.md) for the cabinet to reach the cloud",
        )
    where = f"{s.broker}:{s.port}"
    if live and live.get("state") == "connected":
        # connecting again with the same identity would take over the agent's session
        return Result("broker", PASS, f"{live.get('broker', where)}: the running agent is connected (live)")
    from agent.uplink.client import tls_context  # deferred: heavy (aiomqtt)

    try:
        ctx = tls_context(s)
    except (OSError, ssl.SSLError, ValueError) as e:
        return Result("broker", FAIL, f"{where}: cannot load the TLS files: {e}", "check [uplink] ca, cert and key")
    if ctx is not None:
        refused = await _tls_handshake(s, ctx, where, timeout)
        if refused is not None:
            return refused
    return await _mqtt_connect(s, cabinet_id, where, timeout, tls=ctx is not None)


async def _tls_handshake(s: Any, ctx: ssl.SSLContext, where: str, timeout: float) -> Result | None:
    """A TLS session to the broker with the cabinet's certificate: None when it holds, else the FAIL."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(s.broker, s.port, ssl=ctx), timeout)
    except TimeoutError:
        return Result(
            "broker",
            FAIL,
            f"{where}: TLS connect timed out after {timeout:g} s",
            "check the network route and firewall to the broker",
        )
    except ssl.SSLError as e:
        return Result("broker", FAIL, f"{where}: TLS handshake failed: {e}", _tls_hint(str(e)))
    except OSError as e:
        return Result(
            "broker",
            FAIL,
            f"{where}: cannot connect: {e.strerror or e}",
            "check the broker's host name and port in [uplink], DNS, the network route and firewall",
        )
    try:  # TLS 1.3: a refused client certificate arrives as an alert after the handshake
        await asyncio.wait_for(reader.read(1), 0.5)
    except TimeoutError:
        pass  # the broker waits for CONNECT: the certificate was accepted
    except (ssl.SSLError, OSError) as e:
        return Result("broker", FAIL, f"{where}: the broker rejected the TLS session: {e}", _tls_hint(str(e)))
    finally:
        writer.close()
    return None


async def _mqtt_connect(s: Any, cabinet_id: str, where: str, timeout: float, *, tls: bool) -> Result:
    """An MQTT v5 CONNECT (and DISCONNECT) with the [uplink] settings, under a doctor's client id."""
    # deferred: heavy (aiomqtt)
    import aiomqtt

    from agent.uplink.client import tls_context

    ident = f"{s.client_id or cabinet_id}-doctor"
    try:
        async with aiomqtt.Client(
            s.broker,
            s.port,
            identifier=ident,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_context(s),
            timeout=timeout,
            keepalive=max(5, int(timeout)),
        ):
            pass
    except aiomqtt.MqttError as e:
        return Result(
            "broker",
            FAIL,
            f"{where}: MQTT CONNECT failed: {e}",
            "the broker refused the session: check its ACL / user for this certificate's CN, and [uplink] client_id",
        )
    return Result(
        "broker",
        PASS,
        f"{where}: TLS handshake and MQTT CONNECT accepted"
        + (f" (client id {ident})" if tls else " (no TLS configured)"),
    )


def check_certificate(
    s: Any, cabinet_id: str, now: dt.datetime | None = None, warn_days: float = CERT_WARN_DAYS
) -> Result:
    """The cabinet's client certificate: validity window, CN = cabinet id, key matches."""
    # deferred: heavy (cryptography)
    from cryptography.hazmat.primitives import serialization

    from tools.provision import pki

    if s is None or not s.tls or not s.cert:
        return Result(
            "certificate",
            WARN,
            "no [uplink] client certificate configured: not checked",
            "provisioned cabinets carry a certificate (`cabinet provision`, [uplink] cert/key)",
        )
    now = now or dt.datetime.now(dt.UTC)
    try:
        info = pki.cert_info(Path(s.cert).read_bytes())
    except (OSError, pki.PKIError) as e:
        return Result("certificate", FAIL, f"{s.cert}: {e}", "re-provision the cabinet (`cabinet provision`)")
    name = f"{s.cert} (CN {info['cn']}, until {info['not_after']:%Y-%m-%d})"
    reprov = "issue a new certificate with `cabinet provision` and restart the agent"
    if now < info["not_before"]:
        return Result(
            "certificate",
            FAIL,
            f"{name}: not valid before {info['not_before']:%Y-%m-%d %H:%M} UTC",
            "the cabinet's clock is behind (see the clock check), or the certificate was issued "
            "by a machine whose clock was ahead: " + reprov,
        )
    if now > info["not_after"]:
        return Result("certificate", FAIL, f"{name}: expired {info['not_after']:%Y-%m-%d %H:%M} UTC", reprov)
    if info["cn"] != cabinet_id:
        return Result(
            "certificate",
            FAIL,
            f"{name}: CN {info['cn']!r} is not the cabinet id {cabinet_id!r}",
            "the certificate belongs to another cabinet: provision this one "
            f"(`cabinet provision --id {cabinet_id}`) or fix [cabinet] id",
        )
    try:
        key = serialization.load_pem_private_key(Path(s.key).read_bytes(), None) if s.key else None
    except (OSError, ValueError, TypeError) as e:
        return Result("certificate", FAIL, f"{s.key}: cannot load the key: {e}", reprov)
    cert_pub = pki.load_cert(Path(s.cert).read_bytes()).public_key()
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key is None or key.public_key().public_bytes(*raw) != cert_pub.public_bytes(*raw):
        return Result(
            "certificate",
            FAIL,
            f"{name}: the key {s.key} does not belong to this certificate",
            "put the key the certificate was issued for in [uplink] key, or " + reprov,
        )
    left = info["not_after"] - now
    if left < dt.timedelta(days=warn_days):
        return Result("certificate", WARN, f"{name}: expires in {left.days} days", "renew it: " + reprov)
    return Result("certificate", PASS, f"{name}: valid, {left.days} days left, key matches")


# ------------------------------------------------------------------------------------- storage


def check_outbox(
    path: Path,
    now: float,
    *,
    max_bytes: float | None = None,
    warn_age_s: float = OUTBOX_WARN_AGE_S,
    fail_age_s: float = OUTBOX_FAIL_AGE_S,
    warn_fill: float = OUTBOX_WARN_FILL,
) -> Result:
    """Open the outbox read-only: header, schema version, rows pending, oldest unsent age, evictions."""
    path = Path(path)
    keep = "move the file aside (never delete readings without need) and restart the agent; it starts a new outbox"
    if not path.exists():
        return Result("outbox", WARN, f"{path}: no outbox yet", "the agent creates it on its first run")
    with open(path, "rb") as f:
        head = f.read(100)
    if head and (len(head) < 100 or not head.startswith(MAGIC)):
        return Result("outbox", FAIL, f"{path}: not an SQLite database ({path.stat().st_size} bytes)", keep)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APP_ID:
                return Result(
                    "outbox", FAIL, f"{path}: an SQLite database of something else (application_id {app_id:#x})", keep
                )
            if version != SCHEMA_VERSION:
                return Result(
                    "outbox",
                    FAIL,
                    f"{path}: schema version {version}, this agent writes {SCHEMA_VERSION}",
                    "a newer agent wrote it: install that version again" if version > SCHEMA_VERSION else keep,
                )
            pending = con.execute("SELECT count(*) FROM rows WHERE batch IS NULL").fetchone()[0]
            batches = con.execute("SELECT count(*) FROM batches").fetchone()[0]
            oldest = con.execute("SELECT min(t) FROM rows").fetchone()[0]
            meta = dict(con.execute("SELECT key, value FROM meta"))
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return Result("outbox", FAIL, f"{path}: unreadable: {e}", keep)
    evicted = sum(v for k, v in meta.items() if k.startswith("evicted_rows_"))
    size = path.stat().st_size + sum(p.stat().st_size for p in (path.with_name(path.name + "-wal"),) if p.exists())
    age = None if oldest is None else max(0.0, now - oldest)
    text = (
        f"{path}: schema {version}, {pending} readings pending, {batches} sealed batches unacknowledged, "
        f"{size / 2**20:.1f} MiB"
        + (f", oldest unsent {age / 3600:.1f} h old" if age is not None else "")
        + (f", {evicted} readings evicted" if evicted else "")
    )
    uplink_hint = "the uplink is not delivering: see the broker check and `cabinet status` (uplink line)"
    if age is not None and age > fail_age_s:
        return Result("outbox", FAIL, text, uplink_hint)
    if age is not None and age > warn_age_s:
        return Result("outbox", WARN, text, uplink_hint)
    if max_bytes and size > warn_fill * max_bytes:
        return Result(
            "outbox",
            WARN,
            text + f" of {max_bytes / 2**20:.0f} MiB",
            "nearly full: oldest telemetry gets evicted next; restore the uplink or raise [outbox] max_mb",
        )
    if evicted:
        return Result(
            "outbox",
            WARN,
            text,
            "readings were lost to the size cap while the uplink was down; consider a larger [outbox] max_mb",
        )
    return Result("outbox", PASS, text)
