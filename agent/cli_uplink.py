"""Part of the `cabinet run` command table: the uplink's keys and overrides, and the
local ingest of `--with-ingest`.

* `--broker HOST[:PORT]` sends batches to that broker (plain MQTT unless the
  config's [uplink] says TLS); without an [uplink] section it creates a development
  one that seals telemetry every DEV_BATCH_AGE_S (10 s) instead of the field default
  (300 s), so rows show up while someone watches.
* The cabinet's signing key comes from [uplink] signing_key; without one, a
  development key is generated once in the data dir (production keys are made by
  `cabinet provision`).
* `--with-ingest` starts `cabinet ingest` beside the agent, with its own key and a
  SQLite database in `<data-dir>/ingest/`, registers this cabinet's key there and
  trusts the ingest's key for acknowledgements, so a newcomer sees verified rows
  arrive (`cabinet ingest stats --db <data-dir>/ingest/ingest.db`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import cose
from agent.app import UplinkWiring
from agent.config import Config
from agent.config.model import Uplink

log = logging.getLogger("agent.run")


def _signing_key(path: Path) -> Any:
    from tools import pki

    if not path.exists():
        pki.new_signing_key(path)
        log.warning("generated a development signing key %s (provisioned cabinets use `cabinet provision`)", path)
    return pki.load_signing_key(path)


def _public_key(text: str) -> Ed25519PublicKey:
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = Path(text).read_bytes()
    try:
        key = load_pem_public_key(data)
    except ValueError:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip()))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{text}: not an Ed25519 public key")
    return key


DEV_BATCH_AGE_S = 10.0


def settings(config: Config, broker: str | None) -> Uplink | None:
    s = config.uplink
    if broker is None:
        return s
    host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "")
    host = host or broker
    if s is None:
        return Uplink(broker=host, port=int(port) if port else 1883, tls=False, batch_max_age_s=DEV_BATCH_AGE_S)
    return dataclasses.replace(s, broker=host, port=int(port) if port else s.port)


def wiring(config: Config, data_dir: Path, s: Uplink, ingest_pub: Ed25519PublicKey | None) -> UplinkWiring:
    from agent.uplink import tls_context

    key = _signing_key(Path(s.signing_key) if s.signing_key else data_dir / "signing.key")
    trusted: dict[bytes, Ed25519PublicKey] = {}
    if s.ingest_key:
        k = _public_key(s.ingest_key)
        trusted[cose.key_id(k)] = k
    if ingest_pub is not None:
        trusted[cose.key_id(ingest_pub)] = ingest_pub
    if not trusted:
        log.warning("no ingest key configured ([uplink] ingest_key): acknowledgements cannot be verified, "
                    "so batches stay in the outbox")
    return UplinkWiring(s, key, trusted.get, tls_context(s))


class LocalIngest:
    """`cabinet ingest` as a child process for --with-ingest."""

    def __init__(self, proc: asyncio.subprocess.Process, public_key: Ed25519PublicKey, db: Path) -> None:
        self.proc = proc
        self.public_key = public_key
        self.db = db

    @classmethod
    async def start(cls, data_dir: Path, s: Uplink, cabinet_id: str, cabinet_key: Any) -> "LocalIngest":
        from tools import pki
        from tools.ingest.store import Store

        d = data_dir / "ingest"
        d.mkdir(parents=True, exist_ok=True)
        key_path = d / "ingest.key"
        if not key_path.exists():
            pki.new_signing_key(key_path)
        pub = pki.load_signing_key(key_path).public_key()
        db = d / "ingest.db"
        store = Store(str(db))
        raw = pki.public_key_raw(cabinet_key.public_key())
        store.add_key(cabinet_id, cose.key_id(cabinet_key.public_key()), raw, time.time())
        store.close()
        cmd = [sys.executable, "-m", "agent.cli", "ingest", "run", "--db", str(db), "--broker", f"{s.broker}:{s.port}",
               "--key", str(key_path), "--prefix", s.topic_prefix]
        proc = await asyncio.create_subprocess_exec(*cmd)
        log.info("local ingest started (pid %d): cabinet ingest stats --db %s", proc.pid, db)
        return cls(proc, pub, db)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
