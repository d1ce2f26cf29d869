"""Parsers for the smaller config sections ([cabinet], [site], [agent], [report],
[buses.NAME], [gps], [inputs.NAME], [outputs.NAME], [uplink], [outbox]): raw TOML
tables in, model dataclasses out. The larger sections have their own modules
(devices, sim, climate, lighting, trust, ota).

Each parser records every problem in the shared Issues and returns its best result,
so one pass over a file reports all errors.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.config.model import (
    AgentSettings,
    Backoff,
    Gps,
    Input,
    OutboxSettings,
    Output,
    RtuBus,
    Site,
    TcpBus,
    Uplink,
)
from agent.config.schema import MISSING, NAME_RE, F, Issues, Section, key_name, or_default
from agent.model import Point

BAUDRATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
ID_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


def _tz_check(v: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "unknown time zone"
    return None


def _port_check(ports: frozenset[str] | None) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        if v.startswith("/") or ports is None or v in ports:
            return None
        return f"neither an absolute device path nor a port of the board ({', '.join(sorted(ports)) or 'none'})"

    return check


def parse_cabinet(s: Section) -> tuple[str, str, tuple[str, ...], int]:
    cid = s.get("id", F("str", pattern=ID_RE, help="letters, digits, '.', '_' or '-', up to 64"))
    name = s.get("name", F("str", default=""))
    tags = s.get("tags", F("list", default=[], items="str"))
    version = s.get(
        "config_version",
        F("int", default=0, min=0, max=2**53, help="the remote configuration's version (docs/commands.md)"),
    )
    s.finish()
    return cid or "", name or "", tuple(tags or ()), int(version or 0)


def parse_site(s: Section) -> Site:
    lat = s.get("latitude", F("float", min=-90, max=90, help="degrees, north positive"))
    lon = s.get("longitude", F("float", min=-180, max=180, help="degrees, east positive"))
    elev = s.get("elevation", F("float", default=0.0, min=-500, max=9000, help="metres"))
    tz = s.get("timezone", F("str", check=_tz_check, help="an IANA time zone such as Europe/Berlin"))
    s.finish()
    return Site(lat or 0.0, lon or 0.0, elev or 0.0, tz or "UTC")


def parse_agent(s: Section) -> AgentSettings:
    a = AgentSettings(
        log_level=s.get("log_level", F("str", default="info", choices=("debug", "info", "warning", "error"))) or "info",
        log_format=s.get("log_format", F("str", default="text", choices=("text", "json"))) or "text",
        stale_factor=s.get(
            "stale_factor",
            F("float", default=3.0, min=1.5, max=100, help="a point is stale after this many poll periods"),
        )
        or 3.0,
    )
    s.finish()
    return a


def parse_report(s: Section) -> tuple[float, float]:
    deadband = s.get("deadband", F("float", default=0.0, min=0))
    heartbeat = s.get("heartbeat_s", F("float", default=300.0, min=1, max=86400))
    s.finish()
    return deadband or 0.0, heartbeat or 300.0


def _backoff(s: Section) -> Backoff:
    ini = s.get("backoff_initial_s", F("float", default=1.0, min=0.05, max=3600))
    mx = s.get("backoff_max_s", F("float", default=60.0, min=0.05, max=86400))
    if ini is not None and mx is not None and mx < ini:
        s.error("backoff_max_s", mx, f">= backoff_initial_s ({ini:g})", "smaller than backoff_initial_s")
    return Backoff(ini or 1.0, max(mx or 60.0, ini or 1.0))


def parse_bus(name: str, s: Section, ports: frozenset[str] | None) -> RtuBus | TcpBus | None:
    kind = s.get("type", F("str", choices=("rtu", "tcp")))
    bus: RtuBus | TcpBus | None
    if kind == "rtu":
        bus = RtuBus(
            name=name,
            port=s.get("port", F("str", check=_port_check(ports))) or "",
            baudrate=s.get("baudrate", F("int", default=9600, choices=BAUDRATES)) or 9600,
            parity=s.get("parity", F("str", default="N", choices=("N", "E", "O"))) or "N",
            stopbits=s.get("stopbits", F("int", default=1, choices=(1, 2))) or 1,
            bytesize=s.get("bytesize", F("int", default=8, choices=(7, 8))) or 8,
            timeout_ms=s.get(
                "timeout_ms",
                F("float", default=300.0, min=10, max=10000, help="device answer time; the wire time is added"),
            )
            or 300.0,
            retries=s.get("retries", F("int", default=0, min=0, max=5)) or 0,
            inter_frame_ms=s.get(
                "inter_frame_ms", F("float", default=None, min=0, max=1000, help="default 3.5 character times")
            ),
            rs485=s.get("rs485", F("bool", default=False)) or False,
            backoff=_backoff(s),
        )
    elif kind == "tcp":
        bus = TcpBus(
            name=name,
            host=s.get("host", F("str", pattern=r"[A-Za-z0-9.:_-]{1,253}", help="host name or IP address")) or "",
            port=s.get("port", F("int", default=502, min=1, max=65535)) or 502,
            timeout_ms=s.get("timeout_ms", F("float", default=1000.0, min=10, max=60000)) or 1000.0,
            retries=s.get("retries", F("int", default=0, min=0, max=5)) or 0,
            inter_frame_ms=s.get("inter_frame_ms", F("float", default=0.0, min=0, max=1000)) or 0.0,
            backoff=_backoff(s),
        )
    else:
        bus = None
    s.finish(also_known=("port", "host", "baudrate", "parity", "stopbits", "bytesize", "rs485") if bus is None else ())
    return bus


def parse_gps(s: Section, ports: frozenset[str] | None) -> Gps | None:
    enabled = s.get("enabled", F("bool", default=True))
    gps = Gps(
        port=s.get("port", F("str", check=_port_check(ports), default=MISSING if enabled is not False else "")) or "",
        baudrate=s.get("baudrate", F("int", default=9600, choices=BAUDRATES)) or 9600,
        stale_s=s.get("stale_s", F("float", default=5.0, min=1, max=3600)) or 5.0,
    )
    s.finish()
    return gps if enabled else None


def _pin_check(pins: frozenset[str] | None) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        if pins is None or v in pins:
            return None
        return f"not a pin of the board ({', '.join(sorted(pins)) or 'none'})"

    return check


def parse_input(name: str, s: Section, pins: frozenset[str] | None, heartbeat: float) -> Input:
    pin_check = _pin_check(pins)
    poll = s.get("poll_s", F("float", default=0.2, min=0.01, max=3600)) or 0.2
    inp = Input(
        name=name,
        pin=s.get("pin", F("str", check=pin_check)) or "",
        invert=s.get("invert", F("bool", default=False)) or False,
        pull=s.get("pull", F("str", default=None, choices=("up", "down"))),
        poll_s=poll,
        point=Point(f"dio.{name}", unit="", source="dio", heartbeat_s=heartbeat, stale_after_s=max(2.0, poll * 5)),
    )
    s.finish()
    return inp


def parse_output(name: str, s: Section, pins: frozenset[str] | None, heartbeat: float) -> Output:
    out = Output(
        name=name,
        pin=s.get("pin", F("str", check=_pin_check(pins))) or "",
        invert=s.get("invert", F("bool", default=False)) or False,
        initial=s.get("initial", F("bool", default=False, help="the state set at start")) or False,
        point=Point(f"dio.{name}", unit="", source="dio", heartbeat_s=heartbeat, stale_after_s=10.0, writable=True),
    )
    s.finish()
    return out


def parse_named_tables(issues: Issues, section: str, data: Any) -> dict[str, Mapping[str, Any]]:
    """[section.NAME] tables: checks names, returns NAME -> table."""
    out: dict[str, Mapping[str, Any]] = {}
    if data is MISSING or data is None:
        return out
    if not isinstance(data, Mapping):
        issues.add("", section, data, "a table of named tables", f"[{section}] must be a table")
        return out
    for name, table in data.items():
        if not re.fullmatch(NAME_RE, name):
            issues.add(
                section, key_name(name), MISSING, "a letter, then letters, digits, '_' or '-' (max 64)", "bad name"
            )
            continue
        if not isinstance(table, Mapping):
            issues.add(section, name, table, "a table", f"[{section}.{name}] must be a table")
            continue
        out[name] = table
    return out


TOPIC_LEVEL = r"[^/#+\x00]{1,128}"


def _file_field(base: Path | None, help_: str, required: bool = False) -> F:
    def check(v: str) -> str | None:
        p = Path(v) if Path(v).is_absolute() or base is None else base / v
        return None if p.is_file() else f"no such file: {p}"

    return F("str", default=MISSING if required else None, check=check, help=help_)


def _resolve(base: Path | None, v: str | None) -> str | None:
    if v is None or base is None or Path(v).is_absolute():
        return v
    return str(base / v)


def _ingest_key_check(base: Path | None) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        if re.fullmatch(r"[0-9a-fA-F]{64}", v):
            return None
        p = Path(v) if Path(v).is_absolute() or base is None else base / v
        return None if p.is_file() else "neither 64 hex digits (a raw Ed25519 public key) nor an existing key file"

    return check


def parse_uplink(s: Section, base: Path | None) -> Uplink | None:
    enabled = s.get("enabled", F("bool", default=True))
    tls = s.get("tls", F("bool", default=True))
    u = Uplink(
        broker=s.get("broker", F("str", pattern=r"[A-Za-z0-9.:_-]{1,253}", help="MQTT broker host name or IP")) or "",
        port=s.get("port", F("int", default=8883 if tls is not False else 1883, min=1, max=65535)) or 8883,
        tls=or_default(tls, True),
        ca=_resolve(base, s.get("ca", _file_field(base, "CA certificate (PEM) of the broker"))),
        cert=_resolve(base, s.get("cert", _file_field(base, "the cabinet's client certificate (PEM)"))),
        key=_resolve(base, s.get("key", _file_field(base, "the cabinet's TLS key (PEM)"))),
        signing_key=_resolve(base, s.get("signing_key", _file_field(base, "the cabinet's Ed25519 signing key (PEM)"))),
        ingest_key=s.get(
            "ingest_key",
            F(
                "str",
                default=None,
                check=_ingest_key_check(base),
                help="the ingest's Ed25519 public key: 64 hex digits or a file",
            ),
        ),
        topic_prefix=s.get(
            "topic_prefix",
            F(
                "str",
                default="city/v1",
                pattern=r"[^#+\x00 ]{1,128}(?<!/)",
                help="MQTT topic prefix without wildcards or trailing /",
            ),
        )
        or "city/v1",
        client_id=s.get("client_id", F("str", default=None, pattern=TOPIC_LEVEL)),
        keepalive_s=s.get("keepalive_s", F("int", default=30, min=5, max=3600)) or 30,
        session_expiry_s=or_default(s.get("session_expiry_s", F("int", default=86400, min=0, max=2**32 - 1)), 86400),
        inflight=s.get("inflight", F("int", default=10, min=1, max=100, help="publishes awaiting PUBACK")) or 10,
        max_unacked=s.get(
            "max_unacked", F("int", default=256, min=1, max=4096, help="batches sent but not yet acknowledged")
        )
        or 256,
        ack_timeout_s=s.get("ack_timeout_s", F("float", default=60.0, min=1, max=86400)) or 60.0,
        batch_max_readings=s.get("batch_max_readings", F("int", default=2000, min=1, max=100000)) or 2000,
        batch_max_age_s=s.get("batch_max_age_s", F("float", default=300.0, min=0.1, max=86400)) or 300.0,
        backoff_initial_s=s.get("backoff_initial_s", F("float", default=1.0, min=0.1, max=3600)) or 1.0,
        backoff_max_s=s.get("backoff_max_s", F("float", default=6.0, min=0.1, max=86400)) or 6.0,
    )
    if u.tls and enabled is not False:
        for key in ("ca", "cert", "key"):
            if getattr(u, key) is None and key not in s.data:
                s.error(key, MISSING, "a PEM file", "required when tls = true (mutual TLS)")
    s.finish()
    return u if enabled is not False else None


def parse_outbox(s: Section) -> OutboxSettings:
    o = OutboxSettings(
        path=s.get("path", F("str", default="outbox.db", help="relative to the data dir")) or "outbox.db",
        max_mb=s.get(
            "max_mb",
            F("float", default=256.0, min=1, max=1_000_000, help="byte cap; oldest telemetry is evicted first"),
        )
        or 256.0,
        commit_interval_ms=s.get("commit_interval_ms", F("float", default=100.0, min=1, max=10000)) or 100.0,
        queue_max=s.get("queue_max", F("int", default=20000, min=100, max=10_000_000)) or 20000,
    )
    s.finish()
    return o
