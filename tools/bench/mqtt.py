"""A throwaway Mosquitto for benchmarks: plain listener on a free loopback port, a temp
dir, no persistence between runs. (Tests have their own, fuller helper.)"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BenchBroker:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = [
            "per_listener_settings false",
            "allow_anonymous true",
            "persistence false",
            "max_inflight_messages 20",
            "max_queued_messages 100000",
            "log_dest none",
            f"listener {self.port} 127.0.0.1",
        ]
        if os.geteuid() == 0:
            conf.insert(0, "user root")
        (self.dir / "m.conf").write_text("\n".join(conf) + "\n")
        self._start()

    def _start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.dir / "m.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start (is it installed? apt-get install mosquitto)") from None
                time.sleep(0.05)

    def restart(self) -> None:
        """Stop and start again on the same port (every client is disconnected)."""
        self.proc.terminate()
        self.proc.wait(10)
        self._start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
