"""`scan` a bus from the console, with live progress.

Like the doctor, the console runs the command a technician would type, `cabinet scan --bus NAME
--units U --json` (`python -m tools.cli`, the agent may not import tools/), as a child process.
Its progress bar goes to a pseudo-terminal the console reads (the command draws it only on a
terminal: "[####....] 3/16 units, 1 found"), its JSON report to a pipe. One scan at a time.

Refused before anything starts: a bus the config does not have, and an RTU line the agent
polls (one master per line: a scan would collide with the agent's own requests; the agent has
no pause, so the technician stops it and scans with `cabinet scan`). A Modbus TCP bus may be
scanned beside the agent (a TCP gateway serves several clients)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import sys
from pathlib import Path
from typing import Any

from agent.console.checks import Busy, CheckFailed

SCAN_TIMEOUT_S = 300.0
UNITS_RE = re.compile(r"^\s*\d{1,3}(\s*-\s*\d{1,3})?(\s*,\s*\d{1,3}(\s*-\s*\d{1,3})?)*\s*$")
PROGRESS_RE = re.compile(rb"(\d+)/(\d+) units, (\d+) found")


class Scanner:
    def __init__(self, config_path: str, data_dir: Path, timeout_s: float = SCAN_TIMEOUT_S) -> None:
        self.config_path, self.data_dir, self.timeout_s = config_path, Path(data_dir), timeout_s
        self.state: dict[str, Any] = {"running": False}
        self._task: asyncio.Task[None] | None = None

    def start(self, bus: str, units: str, buses: list[dict[str, Any]]) -> dict[str, Any]:
        """Start a scan of `bus` (one of the agent's `buses`, from its status); the state."""
        if self.state.get("running"):
            raise Busy(f"a scan of {self.state['bus']} is running already; wait for it")
        if not UNITS_RE.match(units):
            raise CheckFailed(f"units {units!r}: give unit ids such as 1-32 or 1,5,10-12 (1 to 247)")
        known = {b.get("name"): b for b in buses}
        if bus not in known:
            raise CheckFailed(f"no bus {bus!r} (buses: {', '.join(str(n) for n in known)})")
        if known[bus].get("kind") == "rtu":
            raise CheckFailed(
                f"the agent polls {bus} (an RTU line): one master per line, a scan would collide with it; "
                "stop the agent, then `cabinet scan --bus " + bus + "` on the cabinet"
            )
        self.state = {"running": True, "bus": bus, "units": units, "done": 0, "total": None, "found": 0}
        self._task = asyncio.create_task(self._run(bus, units), name="console-scan")
        return dict(self.state)

    async def _run(self, bus: str, units: str) -> None:
        cmd = [sys.executable, "-m", "tools.cli", "scan", "--bus", bus, "--units", units, "--json"]
        cmd += ["--config", self.config_path, "--data-dir", str(self.data_dir)]
        master, slave = pty.openpty()
        loop = asyncio.get_running_loop()
        tail = bytearray()

        def readable() -> None:
            try:
                data = os.read(master, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
                return
            tail.extend(data)
            del tail[:-4096]
            if m := list(PROGRESS_RE.finditer(data)):
                done, total, found = (int(x) for x in m[-1].groups())
                self.state.update(done=done, total=total, found=found)

        proc = None
        try:
            env = {k: v for k, v in os.environ.items() if k != "VTIME_SOCKET"}
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=slave,
                start_new_session=True,
                env=env,
            )
            os.close(slave)
            slave = -1
            loop.add_reader(master, readable)
            stdout, _ = await asyncio.wait_for(proc.communicate(), self.timeout_s)
            self.state.update(self._result(stdout, bytes(tail), proc.returncode))
        except TimeoutError:
            self.state.update(error=f"no result within {self.timeout_s:g} s; the scan was stopped")
        except OSError as e:
            self.state.update(error=f"cannot start the scan: {e}")
        finally:
            if proc is not None and proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
            loop.remove_reader(master)
            os.close(master)
            if slave >= 0:
                os.close(slave)
            self.state["running"] = False

    @staticmethod
    def _result(stdout: bytes, stderr: bytes, code: int | None) -> dict[str, Any]:
        try:
            devices = json.loads(stdout) if stdout.strip() else []
            rows = [
                {"unit": int(d["unit"]), "profile": d.get("profile"), "confidence": float(d.get("confidence") or 0)}
                for d in devices
            ]
        except (ValueError, KeyError, TypeError):
            rows = []
        text = PROGRESS_RE.sub(b"", stderr).decode("utf-8", "replace")
        lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()]
        why = [ln for ln in lines if ln.startswith("cabinet scan:")]
        out: dict[str, Any] = {"exit": code, "devices": rows}
        if code not in (0, 1) or (code == 1 and not rows and why and "no devices answered" not in why[-1]):
            out["error"] = why[-1].removeprefix("cabinet scan: ") if why else f"the scan ended with exit code {code}"
        elif not rows:
            out["note"] = why[-1].removeprefix("cabinet scan: ") if why else "no devices answered"
        return out

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
