"""The suite's processes: each part (broker, ingest, agent) a real process with its
output in a log file per start, killed and restarted on purpose, and watched for any
exit the suite did not cause (a crash).

The agent runs in a process group of its own (its simulated cabinet is its child), so
a kill takes both at once, as a power cut would; a restart waits until no process of
the old group is left (the data-dir locks are then free).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.bench.mqtt import BenchBroker

TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Crash:
    part: str  # broker | ingest | agent
    what: str  # "exit code 1", "exit code -11 after SIGTERM", "Traceback: ValueError: ..."
    log: str  # the log file of that start


def group_alive(pgid: int) -> bool:
    """Is any process of group `pgid` still running (zombies do not count)? Linux /proc."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class Part:
    """One part of the system as a process: `start`, `kill` (SIGKILL, the suite's fault),
    `stop` (SIGTERM: must exit 0), `check` (an exit the suite did not cause is a crash)."""

    def __init__(self, name: str, argv: list[str], logs: Path, *, cwd: Path, group: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.logs = logs
        self.cwd = cwd
        self.group = group  # a process group of its own, killed as a whole
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = ""

    def start(self) -> None:
        self.starts += 1
        path = self.logs / f"{self.name}-{self.starts:04d}.log"
        self.log = str(path)
        with open(path, "wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=self.group,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (the whole group for a grouped part); returns once nothing of it runs."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        try:
            if self.group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:
            pass
        proc.wait()
        if self.group:
            deadline = time.monotonic() + 10
            while group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)

    def stop(self, timeout: float = 20.0) -> Crash | None:
        """SIGTERM and wait: a graceful stop must end with exit code 0 within `timeout`."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is not None:
            return self.check()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return Crash(self.name, f"did not stop within {timeout:.0f} s of SIGTERM", self.log)
        self.proc = None
        if self.group and group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            return Crash(self.name, "a child outlived the graceful stop", self.log)
        return None if rc == 0 else Crash(self.name, f"exit code {rc} after SIGTERM", self.log)

    def close(self) -> Crash | None:
        """The end of the run: a graceful stop."""
        return self.stop()

    def check(self) -> Crash | None:
        """A crash if the process ended without the suite killing or stopping it."""
        if self.proc is None or self.proc.poll() is None:
            return None
        rc = self.proc.returncode
        if self.group:  # its children go with it, as after a kill
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None
        return Crash(self.name, f"exit code {rc}", self.log)


class Broker(Part):
    """tools/bench/mqtt.py's throwaway Mosquitto, restartable on the same port."""

    def __init__(self, logs: Path, cwd: Path) -> None:
        self.bench = BenchBroker()  # picks the port, writes the config, starts it
        argv = self.bench.proc.args
        if not isinstance(argv, list):
            raise TypeError("BenchBroker starts mosquitto with an argument list")
        super().__init__("broker", [str(a) for a in argv], logs, cwd=cwd)
        self.port = self.bench.port
        self.proc = self.bench.proc
        self.starts = 1
        self.log = "(mosquitto: log_dest none)"

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise RuntimeError(f"mosquitto did not come back on port {self.port} (taken meanwhile?)") from None
                time.sleep(0.02)

    def close(self) -> Crash | None:
        crash = self.stop()
        shutil.rmtree(self.bench.dir, ignore_errors=True)  # what BenchBroker.stop() does after its own stop
        return crash


def tracebacks(logs: Path) -> list[Crash]:
    """Every Python traceback in the parts' logs, with the exception line that ends it."""
    found: list[Crash] = []
    for path in sorted(logs.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if TRACEBACK not in line:
                continue
            end = next((s for s in lines[i + 1 :] if s and not s.startswith((" ", TRACEBACK))), "?")
            found.append(Crash(path.name.split("-")[0], f"Traceback: {end.strip()[:200]}", str(path)))
    return found
