"""The uplink of `cabinet run`: its settings with the command line's overrides, and
its keys.

* `--broker mqtts://HOST[:PORT]` (TLS), `mqtt://HOST[:PORT]` (plain) or `HOST[:PORT]`
  (TLS as the config's [uplink] says) sends batches to that broker; without an [uplink]
  section it creates a plain-MQTT development one that seals telemetry every
  DEV_BATCH_AGE_S (10 s) instead of the field default (300 s), so rows show up while
  someone watches.
* The cabinet's signing key comes from [uplink] signing_key; without one, a
  development key is generated once in the data dir (production keys are made by
  `cabinet provision`).
* With `--with-ingest` (tools/ingest/local.py) the local ingest's key is trusted for
  acknowledgements too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config import Config
from agent.config.model import Uplink
from agent.uplink import keys
from agent.uplink.address import parse_broker
from agent.wire import cose


@dataclass
class UplinkWiring:
    """What the uplink needs besides the config: settings (possibly overridden on the
    command line), the cabinet's signing key, the ingest's keys, the TLS context."""

    settings: Any  # agent.config.model.Uplink
    signing_key: Any  # Ed25519PrivateKey
    ingest_keys: Callable[[bytes], Any]  # kid -> Ed25519PublicKey | None
    tls: Any = None  # ssl.SSLContext | None


log = logging.getLogger("agent.run")


def signing_key(s: Uplink, data_dir: Path) -> Any:
    """[uplink] signing_key, or a development key generated once in the data dir."""
    path = Path(s.signing_key) if s.signing_key else data_dir / "signing.key"
    if not path.exists():
        keys.new_signing_key(path)
        log.warning("generated a development signing key %s (provisioned cabinets use `cabinet provision`)", path)
    return keys.load_signing_key(path)


DEV_BATCH_AGE_S = 10.0


class UplinkSettingsError(ValueError):
    """`--broker` and the config's [uplink] do not make a usable uplink (a usage error, exit 2)."""


def settings(config: Config, broker: str | None) -> Uplink | None:
    """The config's [uplink] with `--broker` applied (agent/uplink/address.py): the host always,
    the port when given (else the scheme's default when a scheme is given, else the config's),
    TLS when a scheme says so. Without an [uplink] section a development uplink (plain MQTT,
    telemetry sealed every DEV_BATCH_AGE_S) is made; TLS needs the files of `cabinet provision`."""
    s = config.uplink
    if broker is None:
        return s
    try:
        a = parse_broker(broker)
    except ValueError as e:
        raise UplinkSettingsError(f"--broker: {e}") from None
    if s is None:
        if a.tls:
            raise UplinkSettingsError(
                f"--broker {broker}: TLS needs the CA, the cabinet's certificate and key from an [uplink] section "
                "(`cabinet provision` writes one); without one use mqtt://HOST[:PORT]"
            )
        return Uplink(broker=a.host, port=a.port_or_default(False), tls=False, batch_max_age_s=DEV_BATCH_AGE_S)
    tls = s.tls if a.tls is None else a.tls
    port = a.port if a.port is not None else (a.port_or_default(tls) if a.tls is not None else s.port)
    if tls and not (s.ca and s.cert and s.key):
        raise UplinkSettingsError(
            f"--broker {broker}: TLS needs [uplink] ca, cert and key in the config (`cabinet provision` writes them)"
        )
    return dataclasses.replace(s, broker=a.host, port=port, tls=tls)


def wiring(config: Config, data_dir: Path, s: Uplink, ingest_pub: Ed25519PublicKey | None) -> UplinkWiring:
    from agent.uplink.client import tls_context  # deferred: heavy (aiomqtt), only with an uplink

    key = signing_key(s, data_dir)
    trusted: dict[bytes, Ed25519PublicKey] = {}
    if s.ingest_key:
        k = keys.parse_public_key(s.ingest_key)
        trusted[cose.key_id(k)] = k
    if ingest_pub is not None:
        trusted[cose.key_id(ingest_pub)] = ingest_pub
    if not trusted:
        log.warning(
            "no ingest key configured ([uplink] ingest_key): acknowledgements cannot be verified, "
            "so batches stay in the outbox"
        )
    return UplinkWiring(s, key, trusted.get, tls_context(s))
