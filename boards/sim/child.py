"""Starting the simulated cabinet as a child process (what `cabinet run` does on
board "sim"), so the agent talks to it exactly as to hardware: over ptys and TCP.

The child is `cabinet sim` with a ready file: once every server listens it writes
the endpoints (bus -> pty or host:port, GPS pty, pins directory, its clock) as
JSON. The child watches its parent and exits if the parent dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class SimChild:
    def __init__(self, proc: asyncio.subprocess.Process, endpoints: dict[str, Any]) -> None:
        self.proc = proc
        self.endpoints = endpoints
        self.failed = False
        self._stopping = False
        self._watch: asyncio.Task | None = None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @classmethod
    async def start(
        cls, config_path: str, data_dir: Path, *, speed: float | None = None, timeout: float = 30.0
    ) -> SimChild:
        ready = Path(data_dir) / "sim" / "endpoints.json"
        ready.parent.mkdir(parents=True, exist_ok=True)
        if ready.exists():
            ready.unlink()
        cmd = [
            sys.executable,
            "-m",
            "tools.cli",
            "sim",
            "--config",
            str(config_path),
            "--data-dir",
            str(data_dir),
            "--ready-file",
            str(ready),
            "--parent-pid",
            str(os.getpid()),
        ]
        if speed:
            cmd += ["--speed", str(speed)]
        proc = await asyncio.create_subprocess_exec(*cmd)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready.exists():
            if proc.returncode is not None:
                raise RuntimeError(f"the simulated cabinet exited with code {proc.returncode} before it was ready")
            if loop.time() > deadline:
                proc.kill()
                raise RuntimeError(f"the simulated cabinet was not ready within {timeout:.0f} s")
            await asyncio.sleep(0.05)
        return cls(proc, json.loads(ready.read_text()))

    def on_exit(self, callback: Callable[[], None]) -> None:
        async def watch() -> None:
            await self.proc.wait()
            if not self._stopping:
                self.failed = True
                callback()

        self._watch = asyncio.create_task(watch())

    async def stop(self) -> None:
        self._stopping = True
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._watch is not None:
            self._watch.cancel()
