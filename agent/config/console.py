"""[console]: the technician's web console served by the agent (docs/console.md).

[console]
enabled = true               # default: on, but only on the loopback address below
address = "127.0.0.1"        # an IP address of this controller: loopback, or the service port's
port = 8443
cert = ""                    # TLS certificate (PEM); "" = a self-signed one generated in the data dir
key = ""                     # its private key (PEM); both or neither
session_idle_minutes = 30    # a session with no page open ends after this long
session_hours = 8            # and any session after this long
lockout_failures = 5         # failed logins (per user name, per client address) before a lockout
lockout_minutes = 5
max_streams = 128            # live event streams open at once
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from agent.config.schema import MISSING, F, Section, or_default


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 8443
    cert: str = ""  # absolute, or "" for the generated self-signed one
    key: str = ""
    session_idle_minutes: float = 30.0
    session_hours: float = 8.0
    lockout_failures: int = 5
    lockout_minutes: float = 5.0
    max_streams: int = 128


def _address_check(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return "not an IP address"
    return None


def parse_console(s: Section, base: Path | None) -> ConsoleSettings:
    d = ConsoleSettings()

    def file_field(help_: str) -> F:
        def check(v: str) -> str | None:
            return None if not v or _path(base, v).is_file() else f"no such file: {_path(base, v)}"

        return F("str", default="", check=check, help=help_)

    enabled = s.get("enabled", F("bool", default=True))
    address = s.get("address", F("str", default=d.address, check=_address_check, help="an IP address to listen on"))
    port = s.get("port", F("int", default=d.port, min=1, max=65535))
    cert = s.get("cert", file_field("TLS certificate (PEM); empty: a self-signed one in the data dir"))
    key = s.get("key", file_field("the certificate's private key (PEM)"))
    idle = s.get("session_idle_minutes", F("number", default=d.session_idle_minutes, min=1, max=1440))
    hours = s.get("session_hours", F("number", default=d.session_hours, min=0.1, max=168))
    failures = s.get("lockout_failures", F("int", default=d.lockout_failures, min=1, max=100))
    lock = s.get("lockout_minutes", F("number", default=d.lockout_minutes, min=0.1, max=1440))
    streams = s.get("max_streams", F("int", default=d.max_streams, min=1, max=1000))
    if cert is not None and key is not None and bool(cert) != bool(key):
        missing = "key" if cert else "cert"
        s.error(missing, MISSING, "a PEM file", "cert and key go together (or neither: a self-signed certificate)")
    s.finish()
    return ConsoleSettings(
        enabled=or_default(enabled, True),
        address=or_default(address, d.address),
        port=or_default(port, d.port),
        cert=str(_path(base, cert)) if cert else "",
        key=str(_path(base, key)) if key else "",
        session_idle_minutes=float(or_default(idle, d.session_idle_minutes)),
        session_hours=float(or_default(hours, d.session_hours)),
        lockout_failures=or_default(failures, d.lockout_failures),
        lockout_minutes=float(or_default(lock, d.lockout_minutes)),
        max_streams=or_default(streams, d.max_streams),
    )


def _path(base: Path | None, v: str) -> Path:
    p = Path(v)
    return p if p.is_absolute() or base is None else base / p
