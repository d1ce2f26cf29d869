"""`cabinet run --with-ingest`: the cloud ingest as a child process beside the agent.

It gets its own key and a SQLite database in `<data-dir>/ingest/`; this cabinet's key
is registered there and the ingest's key is trusted for acknowledgements, so a
newcomer sees verified rows arrive (`cabinet ingest stats --db <data-dir>/ingest/ingest.db`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config.model import Uplink
from agent.uplink import keys
from agent.uplink.address import BrokerAddress
from agent.wire import cose
from tools.ingest.store import Store

log = logging.getLogger("agent.run")


class LocalIngest:
    """`cabinet ingest run` as a child process (an `agent.runtime.run.LocalIngest`)."""

    def __init__(self, proc: asyncio.subprocess.Process, public_key: Ed25519PublicKey, db: Path) -> None:
        self.proc = proc
        self.public_key = public_key
        self.db = db

    @classmethod
    async def start(cls, data_dir: Path, s: Uplink, cabinet_id: str, cabinet_key: Any) -> LocalIngest:
        d = data_dir / "ingest"
        d.mkdir(parents=True, exist_ok=True)
        key_path = d / "ingest.key"
        if not key_path.exists():
            keys.new_signing_key(key_path)
        pub = keys.load_signing_key(key_path).public_key()
        db = d / "ingest.db"
        store = Store(str(db))
        raw = keys.public_key_raw(cabinet_key.public_key())
        store.add_key(cabinet_id, cose.key_id(cabinet_key.public_key()), raw, time.time())
        store.close()
        broker = BrokerAddress(s.broker, s.port, False).url()
        cmd = [
            sys.executable, "-m", "tools.cli", "ingest", "run", "--db", str(db),
            "--broker", broker, "--key", str(key_path), "--prefix", s.topic_prefix,
            "--parent-pid", str(os.getpid()),  # it ends with the agent, however the agent dies
        ]  # fmt: skip
        if s.tls:
            log.warning("the local ingest connects without TLS; a broker that requires TLS refuses it")
        proc = await asyncio.create_subprocess_exec(*cmd)
        log.info("local ingest started (pid %d): cabinet ingest stats --db %s", proc.pid, db)
        return cls(proc, pub, db)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
