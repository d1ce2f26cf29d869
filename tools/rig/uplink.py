"""The uplink of a rig run (`[scenario] uplink = true`): a broker and an ingest beside the agent.

    up = RigUplink(work_dir, cabinet_id)
    up.start()                      # Mosquitto on a free loopback port, then `cabinet ingest run`
    up.config_table()               # the agent's [uplink]: that broker, its signing key, the ingest's key
    up.broker(False); up.broker(True)   # the broker goes down (SIGTERM) / comes back on the same port
    up.ingest(False); up.ingest(True)   # the ingest leaves (SIGTERM: drains) / comes back
    up.command(kind, args, now)         # a signed command from the rig's operator key (tools/rig/signed.py)
    up.stop()

Everything is in `work_dir/uplink/`: mosquitto.conf and mosquitto.log, the ingest's key,
database (SQLite, `ingest.db`) and log, the cabinet's signing key. The ingest is used
through its CLI only (`cabinet ingest init|register|run`); its key is the one the agent
trusts for acknowledgements, the cabinet's key is registered before the agent starts.

Time: Mosquitto and the ingest are not virtual-time participants (docs/virtual-time.md,
"Not virtual"): they run in real time beside an agent whose time is virtual. A round trip
through them takes a few milliseconds of wall time, during which virtual time may move on
by (wall time x speed). The runner therefore paces uplink scenarios (runner.UPLINK_SPEED):
at 50 simulated seconds per wall second a 20 ms publish-store-acknowledge round trip is
one simulated second, against the agent's 60 s acknowledgement timeout and 30 s keepalive,
and a broker that is back is seen within the agent's few seconds of reconnect backoff
(docs/rig.md, "Uplink scenarios").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.uplink import keys
from tools.rig import signed
from tools.rig.procs import stop_group

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_GRACE_S = 10.0


class UplinkError(RuntimeError):
    """The broker or the ingest did not start (names which, and its log)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    for path in (*(os.path.join(d, "mosquitto") for d in os.get_exec_path()), "/usr/sbin/mosquitto"):
        if os.access(path, os.X_OK):
            return path
    raise UplinkError("mosquitto is not installed (apt-get install mosquitto); uplink scenarios need a broker")


class RigUplink:
    def __init__(self, work: Path, cabinet_id: str, prefix: str = "city/v1") -> None:
        self.dir = work / "uplink"
        self.cabinet_id = cabinet_id
        self.prefix = prefix
        self.port = 0
        self.db = self.dir / "ingest.db"
        self.ingest_key = self.dir / "ingest.key"
        self.cabinet_key = self.dir / "cabinet.key"
        self.ingest_pub = ""
        self.operator: signed.OperatorKey | None = None
        self._broker: subprocess.Popen[bytes] | None = None
        self._ingest: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            "log_type notice\nlog_type information\nlog_timestamp_format %H:%M:%S\n"
        )
        self._cli("ingest", "init", "--key", str(self.ingest_key))
        self.ingest_pub = keys.public_key_raw(keys.load_signing_key(self.ingest_key).public_key()).hex()
        keys.new_signing_key(self.cabinet_key)
        pub = keys.public_key_raw(keys.load_signing_key(self.cabinet_key).public_key()).hex()
        self._cli("ingest", "register", "--db", str(self.db), "--cabinet", self.cabinet_id, "--public-key", pub)
        self.operator = signed.OperatorKey.make(self.dir)
        self.broker(True)
        self.ingest(True, wait=True)

    def stop(self) -> None:
        self.ingest(False)
        self.broker(False)

    def config_table(self) -> dict[str, Any]:
        """The agent's `[uplink]` for this run (plain MQTT on loopback, the keys made here)."""
        return {
            "broker": HOST,
            "port": self.port,
            "tls": False,
            "signing_key": str(self.cabinet_key),
            "ingest_key": self.ingest_pub,
            "topic_prefix": self.prefix,
        }

    def trust_table(self) -> dict[str, Any]:
        """The agent's `[trust]`: the rig's operator key, every kind allowed."""
        if self.operator is None:
            raise UplinkError("the uplink is not started")
        return self.operator.trust_table()

    # ---------------------------------------------------------------- actions
    def command(self, kind: str, args: dict[str, Any], now: float) -> tuple[bool, str]:
        """Send a signed command to the cabinet at its simulated time `now`; (ok, what happened)."""
        if self.operator is None:
            raise UplinkError("the uplink is not started")
        if not _alive(self._broker):
            return False, "not sent: the broker is down"
        return signed.send(
            self.operator,
            self.cabinet_key,
            host=HOST,
            port=self.port,
            prefix=self.prefix,
            cabinet=self.cabinet_id,
            kind=kind,
            args=args,
            now=now,
        )

    def broker(self, up: bool) -> str:
        """Start (on the run's port) or stop Mosquitto; what happened, in one line."""
        if not up:
            return "broker stopped" if _stop(self._broker) else "broker already down"
        if _alive(self._broker):
            return "broker already up"
        log = (self.dir / "mosquitto.log").open("ab")
        self._broker = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.dir / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._broker.poll() is not None:
                break
            try:
                socket.create_connection((HOST, self.port), timeout=1.0).close()
                return f"broker up on {HOST}:{self.port}"
            except OSError:
                time.sleep(0.02)
        _stop(self._broker)
        raise UplinkError(f"mosquitto did not start on {HOST}:{self.port} (see {self.dir / 'mosquitto.log'})")

    def ingest(self, up: bool, wait: bool = False) -> str:
        """Start or stop `cabinet ingest run` on the run's database; what happened, in one line.
        `wait`: until it subscribed (at the start of a run). A restart during the run does not
        wait: the ingest takes its real start-up time, during which the agent's time goes on
        as a real cabinet's would."""
        if not up:
            return "ingest stopped" if _stop(self._ingest) else "ingest already down"
        if _alive(self._ingest):
            return "ingest already up"
        log_path = self.dir / "ingest.log"
        mark = log_path.stat().st_size if log_path.exists() else 0
        log = log_path.open("ab")
        cmd = [sys.executable, "-m", "tools.cli", "ingest", "run", "--db", str(self.db), "--key", str(self.ingest_key)]
        cmd += ["--broker", f"mqtt://{HOST}:{self.port}", "--prefix", self.prefix, "--group", "rig"]
        self._ingest = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        if not _alive(self._broker):
            return "ingest started (the broker is down: it connects when the broker is back)"
        if not wait:
            return f"ingest started (pid {self._ingest.pid})"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self._ingest.poll() is None:
            with log_path.open("rb") as f:
                f.seek(mark)
                if b"ingest subscribed" in f.read():
                    return "ingest up and subscribed"
            time.sleep(0.05)
        _stop(self._ingest)
        raise UplinkError(f"the ingest did not subscribe (see {log_path})")

    def _cli(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise UplinkError(f"cabinet {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()[-500:]}")


def _alive(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is not None and proc.poll() is None


def _stop(proc: subprocess.Popen[bytes] | None) -> bool:
    """SIGTERM, then SIGKILL after STOP_GRACE_S; True if it was running."""
    if not _alive(proc):
        return False
    assert proc is not None
    stop_group(proc, STOP_GRACE_S)
    return True
