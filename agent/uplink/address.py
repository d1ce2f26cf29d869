"""Broker addresses as the command line takes them (`cabinet run --broker`, `cabinet
provision --broker`, `cabinet ingest run --broker`), one rule for all three:

    mqtts://HOST[:PORT]   MQTT over TLS (mutual TLS with a client certificate); port 8883
    mqtt://HOST[:PORT]    plain MQTT, no TLS (a trial or a closed network); port 1883
    HOST[:PORT]           no scheme: TLS or not as the config (or the command) says

HOST is a host name or an IP address; an IPv6 address with a port goes in brackets
(`mqtts://[2001:db8::5]:8883`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TLS_PORT = 8883
PLAIN_PORT = 1883
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")  # the rule of [uplink] broker in agent/config
SCHEMES = {"mqtts": True, "mqtt": False}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int | None  # None: not given
    tls: bool | None  # None: no scheme given

    def port_or_default(self, tls: bool) -> int:
        return self.port if self.port is not None else (TLS_PORT if tls else PLAIN_PORT)

    def url(self, tls: bool | None = None) -> str:
        """The address written back with a scheme (for messages and logs)."""
        secure = self.tls if tls is None else tls
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if secure else 'mqtt'}://{host}:{self.port_or_default(bool(secure))}"


def parse_broker(text: str) -> BrokerAddress:
    """`mqtts://HOST[:PORT]`, `mqtt://HOST[:PORT]` or `HOST[:PORT]`; ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("broker address is empty: give mqtts://HOST[:PORT], mqtt://HOST[:PORT] or HOST[:PORT]")
    rest, tls = text.strip(), None
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme.lower() not in SCHEMES:
            raise ValueError(f"broker address {text!r}: scheme {scheme!r} is not mqtts:// (TLS) or mqtt:// (plain)")
        tls = SCHEMES[scheme.lower()]
        rest = rest.rstrip("/")
    host, port = _split_port(rest, text)
    if not _HOST.fullmatch(host):
        raise ValueError(f"broker address {text!r}: {host!r} is not a host name or IP address")
    return BrokerAddress(host, port, tls)


def _split_port(rest: str, text: str) -> tuple[str, int | None]:
    if rest.startswith("["):  # [IPv6]:port
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise ValueError(f"broker address {text!r}: an IPv6 address in brackets is [ADDRESS]:PORT")
        return host, _port(tail[1:], text) if tail else None
    if rest.count(":") == 1:
        host, _, port = rest.partition(":")
        return host, _port(port, text)
    return rest, None  # a host name, or an IPv6 address without a port


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"broker address {text!r}: port {port!r} is not a number from 1 to 65535")
    return int(port)
