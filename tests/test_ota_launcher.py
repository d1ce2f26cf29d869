"""cabinet-boot as a real process on a temp OTA root with fake releases (tests/ota_fake.py):
commit, crash loop, missed health deadline, missed watchdog, SIGTERM, SIGKILL mid-trial,
systemd notify forwarding and the install/status subcommands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ota.sdnotify import NotifyServer
from ota.slots import SlotStore
from tests import ota_fake
from tests.test_ota_slots import clone

V1, V2 = "1-1.0.0", "2-2.0.0"

pytestmark = pytest.mark.integration  # cabinet-boot as a real process


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A root with v1 committed (bootstrapped with `cabinet-boot install`) and v2 installed."""
    base = tmp_path_factory.mktemp("launcher")
    pip = ota_fake.pip_wheel(tmp_path_factory.getbasetemp() / "pipcache")
    b1 = ota_fake.make_bundle(base / "v1", pip, version="1.0.0", counter=1)
    b2 = ota_fake.make_bundle(base / "v2", pip, version="2.0.0", counter=2)
    root = base / "root"
    r = subprocess.run(
        [sys.executable, "-m", "ota.launcher", "install", str(b1[0]), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip() == V1, r.stderr
    SlotStore(root).install(*b2)
    return root


class Boot:
    """A running cabinet-boot on a cloned root, with its data dir and log."""

    def __init__(self, kit, tmp_path: Path):
        self.root = clone(kit, tmp_path / "root")
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.log = tmp_path / "boot.log"
        self.store = SlotStore(self.root)
        self.proc: subprocess.Popen | None = None

    def trial(self, behaviour="ok", **kw):
        (self.data / "behaviour-2.0.0").write_text(behaviour)
        self.store.begin_trial(V2, counter=2, version="2.0.0", deployment="dep-2", trial_s=kw.pop("trial_s", 30), **kw)

    def start(self, *opts, env=None):
        argv = [
            sys.executable,
            "-m",
            "ota.launcher",
            "--root",
            str(self.root),
            "--watchdog-s",
            "3",
            *opts,
            "--",
            "run",
            "--data-dir",
            str(self.data),
        ]
        e = dict(os.environ, CABINET_FAKE_HEALTH_S="0.3", **(env or {}))
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            if env is None or k not in env:
                e.pop(k, None)
        log = open(self.log, "a")  # noqa: SIM115 - the launcher's stderr for as long as it runs
        self.proc = subprocess.Popen(argv, env=e, stderr=log, start_new_session=True)

    def events(self, what: str = "") -> list[str]:
        p = self.data / "events.log"
        lines = p.read_text().splitlines() if p.exists() else []
        return [x for x in lines if what in x]

    def state(self) -> dict:
        return self.store.state()

    def status(self) -> dict | None:
        p = self.root / "state" / "status.json"
        return json.loads(p.read_text())["record"] if p.exists() else None

    def wait(self, cond, timeout=30.0, what="condition"):
        end = time.monotonic() + timeout
        while not cond():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"launcher exited {self.proc.returncode} waiting for {what}\n{self.log.read_text()}"
                )
            if time.monotonic() > end:
                raise AssertionError(f"{what} not reached in {timeout} s\n{self.log.read_text()}\n{self.events()}")
            time.sleep(0.05)

    def term(self, timeout=30) -> int:
        assert self.proc is not None, "Boot.term: start() first"
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        """SIGKILL the launcher and its child (systemd's cgroup kill after a crash)."""
        assert self.proc is not None, "Boot.kill_all: start() first"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill_all()


@pytest.fixture
def boot(kit, tmp_path):
    b = Boot(kit, tmp_path)
    yield b
    b.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ok_release_commits_and_stays_and_systemd_hears_it(boot):
    boot.trial("ok", max_attempts=3)
    with NotifyServer() as systemd:
        boot.start(env={"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "400000"})
        boot.wait(lambda: boot.state()["last_good"] == V2, what="commit")
        st = boot.state()
        assert st["high_water"] == 2 and st["pending"] is None and st["previous_good"] == V1
        heard = []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            heard += systemd.receive(0.1)
    assert heard.count("READY=1") == 1 and heard.count("WATCHDOG=1") >= 4, heard
    assert boot.store.current_slot() == V2
    assert len(boot.events("2.0.0 start")) == 1 and not boot.events("term")
    assert boot.term() == 0
    assert boot.events("2.0.0 term"), "the child got SIGTERM and stopped cleanly"
    assert "trial of 2-2.0.0 ended (committed)" in boot.log.read_text()


def test_crash_loop_is_rolled_back_after_max_attempts(boot):
    boot.trial("crash", max_attempts=3)
    boot.start()
    boot.wait(lambda: boot.events("1.0.0 ready"), what="old release running again")
    assert len(boot.events("2.0.0 start")) == 3
    st, rec = boot.state(), boot.status()
    assert boot.store.current_slot() == V1 and st["pending"] is None and st["high_water"] == 1
    assert st["last_outcome"]["result"] == "rolled_back"
    assert (rec["deployment"], rec["state"], rec["version"], rec["counter"]) == ("dep-2", "rolled_back", "2.0.0", 2)
    assert rec["reason"] == "crash_loop: 3 starts without a commit"
    assert boot.term() == 0


def test_no_commit_is_rolled_back_at_the_health_deadline(boot):
    boot.trial("nohealth", trial_s=2)
    t0 = time.monotonic()
    boot.start()
    boot.wait(lambda: boot.events("1.0.0 ready"), what="rollback")
    assert time.monotonic() - t0 >= 2
    rec = boot.status()
    assert rec["state"] == "rolled_back" and rec["reason"].startswith("health_deadline: ")
    assert "within 2 s" in rec["reason"]
    assert len(boot.events("2.0.0 start")) == 1 and boot.events("2.0.0 term")
    assert boot.store.current_slot() == V1 and boot.state()["high_water"] == 1
    assert boot.term() == 0


def test_a_hang_is_killed_and_counted(boot):
    """READY, then no WATCHDOG=1 and SIGTERM ignored: killed (SIGKILL after the grace),
    each kill a failed start; rolled back after max_attempts."""
    boot.trial("hang", max_attempts=2, watchdog_s=1)
    boot.start("--kill-after-s", "1")
    boot.wait(lambda: boot.events("1.0.0 ready"), timeout=40, what="rollback")
    log = boot.log.read_text()
    assert log.count("no WATCHDOG=1 for 1 s") == 2 and log.count("SIGKILL") == 2, log
    assert len(boot.events("2.0.0 start")) == 2 and not boot.events("2.0.0 term")
    assert boot.status()["reason"] == "crash_loop: 2 starts without a commit"
    assert boot.term() == 0


def test_sigterm_stops_the_child_cleanly(boot):
    boot.start()
    boot.wait(lambda: boot.events("1.0.0 ready"), what="ready")
    pid = int(boot.events("1.0.0 start")[0].split()[2])
    assert alive(pid)
    t0 = time.monotonic()
    assert boot.term() == 0 and time.monotonic() - t0 < 5
    assert boot.events("1.0.0 term") and not alive(pid)
    assert "stopped" in boot.log.read_text()


def test_sigkill_of_the_launcher_mid_trial_keeps_counting(boot):
    boot.trial("nohealth", max_attempts=3, trial_s=120)
    for attempt in (1, 2, 3):
        boot.start()
        boot.wait(lambda attempt=attempt: len(boot.events("2.0.0 ready")) == attempt, what=f"start {attempt}")
        assert boot.state()["pending"]["attempts"] == attempt
        boot.kill_all()
    boot.start()  # the 4th start is over the limit: rolled back before the child starts
    boot.wait(lambda: boot.events("1.0.0 ready"), what="rollback")
    assert len(boot.events("2.0.0 start")) == 3
    assert boot.status()["reason"] == "crash_loop: 3 starts without a commit"
    assert boot.term() == 0


def test_outside_a_trial_exit_0_restarts_at_once_and_a_crash_backs_off(boot):
    (boot.data / "behaviour-1.0.0").write_text("exit0")
    t0 = time.monotonic()
    boot.start()
    boot.wait(lambda: len(boot.events("1.0.0 start")) >= 4, what="immediate restarts")
    assert time.monotonic() - t0 < 4 and "exited 0 (restart request)" in boot.log.read_text()
    (boot.data / "behaviour-1.0.0").write_text("crash")
    n = len(boot.events("1.0.0 start"))
    boot.wait(lambda: len(boot.events("1.0.0 start")) >= n + 3, what="restarts with backoff")
    log = boot.log.read_text()
    assert "restarting in 1 s" in log and "restarting in 2 s" in log
    (boot.data / "behaviour-1.0.0").write_text("ok")
    boot.wait(lambda: boot.events("1.0.0 ready"), timeout=15, what="ok again")
    assert boot.state()["pending"] is None and boot.store.current_slot() == V1
    assert boot.term() == 0


def test_status_command_and_no_release(tmp_path, kit):
    r = subprocess.run(
        [sys.executable, "-m", "ota.launcher", "status", "--root", str(kit)], capture_output=True, text=True, timeout=30
    )
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["current_link"] == V1 and out["ota"]["last_good"] == V1
    empty = tmp_path / "empty"
    r = subprocess.run(
        [sys.executable, "-m", "ota.launcher", "--root", str(empty), "--", "run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "no complete release" in r.stderr


def test_install_from_a_bundle_file_and_a_tampered_one_refused(tmp_path, tmp_path_factory):
    """A technician's `cabinet-boot install BUNDLE`: the file is checked against its manifest
    before anything is installed; a tampered wheel leaves the root untouched."""
    from ota import bundle
    from ota import manifest as mf

    pip = ota_fake.pip_wheel(tmp_path_factory.getbasetemp() / "pipcache")
    d, man = ota_fake.make_bundle(tmp_path / "b", pip, version="1.0.0", counter=1)
    m = mf.parse(man)
    good = bundle.build(tmp_path / "good.bundle", m, sorted((d / "wheels").glob("*.whl")))
    root = tmp_path / "root"
    r = subprocess.run(
        [sys.executable, "-m", "ota.launcher", "install", str(good), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip() == V1, r.stderr
    assert SlotStore(root).state()["high_water"] == 1
    assert not list(tmp_path.glob("cabinet-boot-*"))  # the temporary extraction is gone
    data = bytearray(good.read_bytes())
    at = data.index(b"dep-ok") if b"dep-ok" in data else len(data) // 2
    data[at] ^= 0xFF
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(bytes(data))
    root2 = tmp_path / "root2"
    r = subprocess.run(
        [sys.executable, "-m", "ota.launcher", "install", str(bad), "--root", str(root2)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "install failed" in r.stderr, r.stderr
    assert not (root2 / "current").exists()
