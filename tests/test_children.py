"""Every child of `cabinet run` ends when the agent dies, however it dies: the simulated
cabinet and the local ingest of --with-ingest watch their parent (--parent-pid)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.broker import Broker, broker  # noqa: F401

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text().split()
    return stat[2] != "Z"  # a zombie has exited


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_simulator_and_the_local_ingest_end_with_the_agent(broker: Broker, tmp_path: Path, sig: int) -> None:
    agent = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run", "--data-dir", str(tmp_path), "--with-ingest",
         "--broker", f"127.0.0.1:{broker.plain_port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        kids: list[int] = []
        while time.monotonic() < deadline and len(kids) < 2:  # the simulator and the ingest
            time.sleep(0.2)
            kids = children_of(agent.pid)
        assert len(kids) == 2, kids
        agent.send_signal(sig)
        agent.wait(15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(k) for k in kids):
            time.sleep(0.1)
        assert not [k for k in kids if alive(k)], "children outlived the agent"
    finally:
        if agent.poll() is None:
            agent.kill()
        for k in children_of(agent.pid):
            os.kill(k, signal.SIGKILL)
