"""The console's check actions: `doctor` and `config check` of an uploaded file.

Doctor: the agent may not import tools/ (the layers contract: the runtime never imports the
programs above it), so the console runs the same command a technician would type,
`python -m tools.cli doctor --json --config <the agent's config> --data-dir <its data dir>`, as
a child process with a time limit. The doctor asks the running agent's status socket and judges
buses, devices and the uplink from its live health (it opens no bus the agent owns), so running
it beside the agent is what `cabinet doctor` on the cabinet does anyway; its imports, memory and
CPU stay out of the agent's process and off the control loop. One run at a time.

Config check: the uploaded bytes go through the agent's own parser (`agent.config.loads`) in a
worker thread; each issue keeps its file/section/key text and gets the line of the upload it
refers to (`locate`): the key's line in its table, else the table's header, else the line a
TOML syntax error names."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent.config.schema import ConfigIssue

DOCTOR_TIMEOUT_S = 120.0
MAX_CONFIG = 256 * 1024  # bytes of an uploaded config file
STATUSES = ("PASS", "WARN", "FAIL")


class Busy(Exception):
    """An action of this kind is running already."""


class CheckFailed(Exception):
    """The check could not run (the message says why)."""


class Doctor:
    def __init__(self, config_path: str, data_dir: Path, timeout_s: float = DOCTOR_TIMEOUT_S) -> None:
        self.config_path, self.data_dir, self.timeout_s = config_path, Path(data_dir), timeout_s
        self.running = False
        self.last: dict[str, Any] | None = None  # the last finished run (also in the diagnostics bundle)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tools.cli",
            "doctor",
            "--json",
            "--config",
            self.config_path,
            "--data-dir",
            str(self.data_dir),
        ]

    async def run(self, now: float) -> dict[str, Any]:
        """{"ok", "results": [{check, status, detail, hint}], "exit", "at"}; Busy when one runs;
        CheckFailed when it cannot start, runs over its time or prints no report."""
        if self.running:
            raise Busy("the doctor is running already; wait for its result")
        self.running = True
        try:
            out = await self._run()
            out["at"] = now
            self.last = out
            return out
        finally:
            self.running = False

    async def _run(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k != "VTIME_SOCKET"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=env,
            )
        except OSError as e:
            raise CheckFailed(f"cannot start the doctor: {e}") from None
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except (TimeoutError, asyncio.CancelledError) as e:
            _kill(proc)
            await proc.wait()
            if isinstance(e, asyncio.CancelledError):
                raise
            raise CheckFailed(f"the doctor gave no result within {self.timeout_s:g} s; it was stopped") from None
        return parse_doctor(stdout, stderr, proc.returncode)


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def parse_doctor(stdout: bytes, stderr: bytes, code: int | None) -> dict[str, Any]:
    """The doctor's JSON report, checked: every result a check, a PASS/WARN/FAIL status and text."""
    try:
        doc = json.loads(stdout)
        results = doc["results"]
        rows = [
            {
                "check": str(r["check"]),
                "status": r["status"] if r["status"] in STATUSES else "FAIL",
                "detail": str(r.get("detail", "")),
                "hint": str(r.get("hint", "")),
            }
            for r in results
        ]
    except (ValueError, KeyError, TypeError):
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        why = " / ".join(tail) or "no output"
        raise CheckFailed(f"the doctor ended (exit code {code}) without a report: {why}") from None
    return {"ok": all(r["status"] != "FAIL" for r in rows), "exit": code, "results": rows}


# ------------------------------------------------------------------------------ config check
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")
_AT_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _table_name(raw: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in raw.split("."))


def locate(text: str, issue: ConfigIssue) -> int | None:
    """The 1-based line of `text` that `issue` is about, or None (a key that is missing)."""
    if m := _AT_LINE.search(issue.message):
        return int(m.group(1))
    section = re.sub(r"\[\d+\]", "", issue.section)  # [[lighting.programs]] entries: "lighting.programs[0]"
    current, header_line, key_line = "", None, None
    for n, line in enumerate(text.splitlines(), 1):
        if h := _HEADER.match(line):
            current = _table_name(h.group(1))
            if current == section and header_line is None:
                header_line = n
            continue
        if issue.key and key_line is None and (k := _KEY.match(line)):
            key = _table_name(k.group(1))
            full = f"{current}.{key}" if current else key
            if full == (f"{section}.{issue.key}" if section else issue.key):
                key_line = n
    return key_line or header_line


def check_upload(body: bytes, filename: str, boards: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`agent.config.loads` on an uploaded file: {"ok", "file", "issues": [{line, text, section,
    key, message}], "summary"} (a summary of the valid config's cabinet, buses and devices)."""
    name = Path(filename or "upload.toml").name[:100] or "upload.toml"
    if len(body) > MAX_CONFIG:
        raise CheckFailed(f"{name}: {len(body)} bytes; a config file has at most {MAX_CONFIG} bytes")
    text = body.decode("utf-8", "replace")
    try:
        c = cfg.loads(body, name, boards)
    except cfg.ConfigError as e:
        issues = [
            {
                "line": locate(text, i),
                "section": i.section,
                "key": i.key,
                "message": i.message,
                "allowed": i.allowed,
                "text": str(i),
            }
            for i in e.issues
        ]
        issues.sort(key=lambda i: (i["line"] is None, i["line"] or 0))
        return {"ok": False, "file": name, "issues": issues, "lines": len(text.splitlines())}
    summary = f"valid: cabinet {c.cabinet_id}, {len(c.buses)} buses, {len(c.devices)} devices (sha256 {c.sha256[:12]})"
    return {"ok": True, "file": name, "issues": [], "summary": summary, "lines": len(text.splitlines())}
