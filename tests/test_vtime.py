"""Virtual time shared by processes (boards/sim/vtime): real processes exchanging bytes
over a real pty and loopback TCP, on one coordinator's time, as fast as possible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boards.sim.vtime import protocol as p

ROOT = Path(__file__).resolve().parents[1]
STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftovers():
    """Whatever a test started and left running (it failed half-way) is killed."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def coordinator(tmp: Path, participants: int = 2, speed: float | None = None) -> tuple[subprocess.Popen, str]:
    sock = str(tmp / "vt.sock")
    cmd = [sys.executable, "-m", "boards.sim.vtime.coordinator", "--socket", sock, "--participants", str(participants)]
    if speed:
        cmd += ["--speed", str(speed)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    STARTED.append(proc)
    deadline = time.monotonic() + 10
    while not Path(p.time_file(sock)).exists() or not Path(sock).exists():
        assert time.monotonic() < deadline, "coordinator did not start"
        time.sleep(0.01)
    return proc, sock


def probe(sock: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, VTIME_SOCKET=sock)
    proc = subprocess.Popen(
        [sys.executable, "-m", "boards.sim.vtime.probe", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    STARTED.append(proc)
    return proc


def exchange(tmp: Path, link: str, *extra: str, speed: float | None = None) -> tuple[dict, str]:
    coord, sock = coordinator(tmp, speed=speed)
    ready = str(tmp / "ready.json")
    responder = probe(sock, "respond", link, "--ready", ready, *extra)
    requester = probe(sock, "request", "--ready", ready, *extra)
    out, _ = requester.communicate(timeout=120)
    responder.wait(timeout=30)
    _, err = coord.communicate(timeout=30)
    assert requester.returncode == 0 and coord.returncode == 0, err
    return json.loads(out), err


def check_exact(result: dict, count: int, every: int, delay: float, timeout: float) -> None:
    silent = {i for i in range(count) if every and (i + 1) % every == 0}
    assert [i for i, *_ in result["round_trips"]] == [i for i in range(count) if i not in silent]
    assert all(abs(rt - delay) < 1e-6 and line == f"req {i}" for i, rt, line in result["round_trips"])
    assert [i for i, *_ in result["timeouts"]] == sorted(silent)  # no spurious timeout
    assert all(abs(t - timeout) < 1e-6 for _, t, _ in result["timeouts"])
    expected = (count - len(silent)) * delay + len(silent) * timeout
    assert abs(result["virtual_s"] - expected) < 1e-6


@pytest.mark.integration
@pytest.mark.parametrize("link", ["--pty", "--tcp"])
def test_reply_delays_and_timeouts_pass_exactly_in_virtual_time(tmp_path: Path, link: str) -> None:
    count, every, delay, timeout = 400, 7, 0.5, 1.0
    args = ("--count", str(count), "--every", str(every), "--delay", str(delay), "--timeout", str(timeout))
    result, _ = exchange(tmp_path, link, *args)
    check_exact(result, count, every, delay, timeout)
    assert result["virtual_s"] > 200
    assert result["wall_s"] < result["virtual_s"] / 50  # 200 s of exchanges in well under 4 s


@pytest.mark.integration
def test_short_wire_times_on_a_pty_are_kept(tmp_path: Path) -> None:
    """Modbus-like scale: 5 ms reply delay, 20 ms timeout, 2000 exchanges."""
    count, every, delay, timeout = 2000, 9, 0.005, 0.02
    args = ("--count", str(count), "--every", str(every), "--delay", str(delay), "--timeout", str(timeout))
    result, _ = exchange(tmp_path, "--pty", *args)
    check_exact(result, count, every, delay, timeout)


@pytest.mark.integration
def test_time_stands_still_while_a_worker_thread_works(tmp_path: Path) -> None:
    """A 0.3 s (wall) thread under a 0.1 s (virtual) wait_for does not time out."""
    result, _ = exchange(tmp_path, "--tcp", "--count", "5", "--thread", "0.3")
    assert result["thread_timed_out"] is False
    check_exact(result, 5, 0, 0.5, 1.0)


@pytest.mark.integration
def test_pacing_keeps_virtual_time_behind_wall_time_times_speed(tmp_path: Path) -> None:
    t0 = time.monotonic()
    result, _ = exchange(tmp_path, "--pty", "--count", "10", "--delay", "0.5", speed=20.0)
    check_exact(result, 10, 0, 0.5, 1.0)
    assert result["wall_s"] >= 5.0 / 20 - 0.01  # 5 virtual seconds at 20x: at least 0.25 s
    assert time.monotonic() - t0 < 10


@pytest.mark.integration
def test_a_killed_participant_does_not_hang_the_others(tmp_path: Path) -> None:
    coord, sock = coordinator(tmp_path)
    ready = str(tmp_path / "ready.json")
    responder = probe(sock, "respond", "--pty", "--ready", ready, "--delay", "0.5")
    requester = probe(sock, "request", "--ready", ready, "--count", "200000", "--timeout", "1.0")
    deadline = time.monotonic() + 20
    while not Path(ready).exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.5)  # exchanges running
    responder.send_signal(signal.SIGKILL)
    responder.wait()
    time.sleep(0.5)  # the requester now times out, every time, in virtual time
    requester.send_signal(signal.SIGTERM)
    requester.wait(timeout=10)
    _, err = coord.communicate(timeout=10)  # both gone: the coordinator ends on its own
    assert coord.returncode == 0
    assert err.count(" left at virtual ") == 2


@pytest.mark.integration
def test_a_participant_goes_on_in_real_time_when_the_coordinator_dies(tmp_path: Path) -> None:
    coord, sock = coordinator(tmp_path, participants=3)  # never starts time: waits for a third
    ready = str(tmp_path / "ready.json")
    responder = probe(sock, "respond", "--pty", "--ready", ready, "--delay", "0.05")
    requester = probe(sock, "request", "--ready", ready, "--count", "4", "--timeout", "1.0")
    time.sleep(1.0)
    assert requester.poll() is None  # no time passes without the third participant
    coord.kill()
    coord.wait()
    out, _ = requester.communicate(timeout=20)
    result = json.loads(out)
    assert len(result["round_trips"]) == 4 and not result["timeouts"]
    assert all(rt >= 0.05 - 1e-6 for _, rt, _ in result["round_trips"])  # real time now
    responder.wait(timeout=10)


POLLER = """
import asyncio, sys, time
from boards.sim.vtime.loop import VirtualClock, install
link = install()  # what `python -m agent run|sim` does with $VTIME_SOCKET (agent/runtime/entry.py)
async def main():
    clock = VirtualClock(link)
    w0 = clock.now()
    due = clock.monotonic()
    polls = 0
    while polls < 5000:  # the contact poller's pattern (agent/field/inputs.py)
        now = clock.monotonic()
        if due <= now:
            polls += 1
            due = max(due + 0.2, now)
        await clock.sleep_until(due)
    print(polls, round(clock.now() - w0, 6), flush=True)
asyncio.run(main())
"""


@pytest.mark.integration
def test_a_poller_on_virtual_time_never_spins(tmp_path: Path) -> None:
    """The contact poller's pattern on the virtual clock: its float-noise re-sleeps (a delay
    of an ulp) wait for time to move instead of spinning forever."""
    coord, sock = coordinator(tmp_path, participants=1)
    env = dict(os.environ, VTIME_SOCKET=sock)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", POLLER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["5000", "1000.0"]  # 1000 s of 0.2 s polls
    assert time.monotonic() - t0 < 30
    coord.communicate(timeout=10)


def test_messages_round_trip() -> None:
    buf = bytearray(p.pack(p.IDLE, 0, 12.5) + p.pack(p.OK, 7) + p.pack(p.ADVANCE, 0, float("inf"))[:5])
    assert p.unpack_all(buf) == [(p.IDLE, 0, 12.5), (p.OK, 7, 0.0)]
    assert len(buf) == 5  # a partial message stays for later
