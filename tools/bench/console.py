"""The web console's cost to the agent (issue 19):

    python -m tools.bench console [--json] [--seconds N]

The agent is its own process (`python -m agent run`) on the example cabinet (board "sim", the
simulated cabinet its child), in a fresh data dir, its console on a free port:

1. `rss_mb_off`: `[console] enabled = false`; after WARMUP_S, the agent's resident set (VmRSS
   of the agent's process, not the simulator's), and its CPU over `--seconds` (`cpu_pct_off`).
2. `rss_mb_idle`, `idle_cpu_pct`: the console on (its self-signed certificate made beforehand, as
   on any start but a cabinet's first), nobody connected: RSS after WARMUP_S, the
   agent's CPU over `--seconds` (the whole agent: polling 7 devices, the control loop; compare
   with `cpu_pct_off`), and `frames_idle`, the status frames the console built meanwhile (0: no
   client, no work); `step_jitter_ms_p99_idle` the control loop's lateness then.
3. `rss_mb_5_clients`, `step_jitter_ms_p99`: 5 technicians logged in, each with the live event
   stream open (TLS, checking the console's certificate) for `--seconds` (at least 65 so the
   control loop's window, its last 60 steps, lies inside this phase): the agent's RSS, and how
   late the control loop's steps started (`controls.step_late_ms` of the agent's status:
   p99 over the last 60 steps), `frames_per_client`.
4. `first_page_ms`: headless Chromium (the system's, driven by Playwright) with a session,
   opening the console: from the navigation to the first complete page (the summary and the
   points table drawn from the first status event); the median of 5. Null when Playwright or
   Chromium is missing.

Target: rss_mb_5_clients - rss_mb_off <= 5 (`met`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.config import EXAMPLE
from agent.console import tls
from agent.console.users import User, hash_password, write_users
from agent.runtime.status_api import SOCKET_NAME, fetch

WARMUP_S = 20.0
CLIENTS = 5
PASSWORD = "bench-console-password"
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    """`python -m agent run` in its own data dir, with or without its console."""

    def __init__(self, work: Path, console: bool) -> None:
        self.dir = work / ("on" if console else "off")
        self.dir.mkdir()
        self.port = _free_port()
        section = f"\n[console]\nport = {self.port}\n" if console else "\n[console]\nenabled = false\n"
        self.config = self.dir / "cabinet.toml"
        self.config.write_text(EXAMPLE.read_text() + section)
        bench = User("bench", "technician", hash_password(PASSWORD))
        write_users(self.dir / "console" / "users.json", {"bench": bench})
        if console:  # a cabinet's console has its certificate from its first start: measure a later start
            tls.self_signed(self.dir, "127.0.0.1", "CAB-SIM-0001")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_") and k != "VTIME_SOCKET"}
        self.log = (self.dir / "agent.log").open("w")
        cmd = [sys.executable, "-m", "agent", "run", "--config", str(self.config), "--data-dir", str(self.dir)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"https://127.0.0.1:{self.port}"

    async def status(self) -> dict[str, Any]:
        return await fetch(self.dir / SOCKET_NAME, timeout=5.0)

    async def ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited ({self.proc.returncode}); see {self.log.name}")
            try:
                doc = await self.status()
                if all(b.get("state") == "up" for b in doc.get("buses", [])):
                    return
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"the agent was not ready within {timeout:g} s")
            await asyncio.sleep(0.5)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    async def cpu_pct(self, seconds: float) -> float:
        c0, t0 = self.cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        return round(100.0 * (self.cpu_s() - c0) / (time.monotonic() - t0), 2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------ HTTPS clients
def _ctx(agent: Agent) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(agent.dir / "console" / "tls" / "cert.pem"))


async def _request(agent: Agent, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.port, ssl=_ctx(agent), limit=1 << 22)
    writer.write(head.encode() + body)
    await writer.drain()
    return reader, writer


async def login(agent: Agent) -> str:
    body = json.dumps({"user": "bench", "password": PASSWORD}).encode()
    head = (
        f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{agent.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await _request(agent, head, body)
    answer = await reader.read()
    writer.close()
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"set-cookie: cabinet_session="):
            return line.split(b"=", 1)[1].split(b";")[0].decode()
    raise RuntimeError(f"login refused: {answer[:200]!r}")


async def stream(agent: Agent, cookie: str, counts: list[int], i: int) -> None:
    head = f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{agent.port}\r\nCookie: cabinet_session={cookie}\r\n\r\n"
    reader, writer = await _request(agent, head)
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"event: status"):
                counts[i] += 1
    finally:
        writer.close()


# ------------------------------------------------------------------------------ the browser
def first_page_ms(agent: Agent, runs: int = 5) -> float | None:
    chromium = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(ignore_https_errors=True).new_page()  # the self-signed certificate
        page.goto(agent.url + "/")
        page.fill("#user", "bench")
        page.fill("#password", PASSWORD)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#rows tr", timeout=30_000)
        for _ in range(runs):
            page.goto("about:blank")
            t0 = time.perf_counter()
            page.goto(agent.url + "/")
            page.wait_for_selector("#rows tr", timeout=30_000)  # the first status event, drawn
            times.append((time.perf_counter() - t0) * 1000.0)
        browser.close()
    return round(statistics.median(times), 1)


# ------------------------------------------------------------------------------ the run
async def _phases(work: Path, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    off = Agent(work, console=False)
    try:
        await off.ready()
        await asyncio.sleep(WARMUP_S)
        out["rss_mb_off"] = off.rss_mb()
        out["cpu_pct_off"] = await off.cpu_pct(seconds)
    finally:
        off.stop()
    on = Agent(work, console=True)
    try:
        await on.ready()
        await asyncio.sleep(WARMUP_S)
        out["rss_mb_idle"] = on.rss_mb()
        frames0 = (await on.status())["console"]["frames"]
        out["idle_cpu_pct"] = await on.cpu_pct(seconds)
        st = await on.status()
        out["frames_idle"] = st["console"]["frames"] - frames0
        out["step_jitter_ms_p99_idle"] = st["controls"]["step_late_ms"]["p99"]
        cookies = [await login(on) for _ in range(CLIENTS)]
        counts = [0] * CLIENTS
        tasks = [asyncio.create_task(stream(on, c, counts, i)) for i, c in enumerate(cookies)]
        await asyncio.sleep(max(seconds, 65.0))
        out["rss_mb_5_clients"] = on.rss_mb()
        st = await on.status()
        late = st["controls"]["step_late_ms"]
        out["step_jitter_ms_p99"] = late["p99"]
        out["step_jitter_ms_max"] = late["max"]
        out["streams"] = st["console"]["streams"]
        out["frames_per_client"] = min(counts)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out["first_page_ms"] = await asyncio.get_running_loop().run_in_executor(None, first_page_ms, on)
    finally:
        on.stop()
    return out


def run(seconds: float | None = None) -> dict[str, Any]:
    seconds = seconds or 60.0
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        out = asyncio.run(_phases(Path(tmp), seconds))
    out["seconds"] = seconds
    out["rss_mb_over_off"] = round(out["rss_mb_5_clients"] - out["rss_mb_off"], 1)
    out["met"] = {"rss_5_clients_within_5_mb": out["rss_mb_over_off"] <= 5.0}
    return out
