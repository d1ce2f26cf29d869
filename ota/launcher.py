"""cabinet-boot: the small process that runs the agent from the current slot and judges trials.

Owns the run loop (recover, count a trial start, start `python -m agent`, supervise it
through its own sd_notify socket, restart, roll back a crash loop or a missed health
deadline), the systemd side (forward the first READY=1, ping systemd's watchdog) and the
`install` (bootstrap) and `status` subcommands. Durations use time.monotonic(). Stdlib
and ota.{slots,slotstate,status,sdnotify,fsutil} only (`install` also loads ota.bundle):
it must stay small and rarely change.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ota import fsutil, sdnotify
from ota.slots import SlotError, SlotStore
from ota.slotstate import validate_state
from ota.status import StatusBook, StatusError

log = logging.getLogger("cabinet-boot")
POLL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # a child that ran this long resets the backoff


class Launcher:
    def __init__(
        self,
        root: Path,
        agent_args: list[str],
        *,
        max_attempts: int = 3,
        watchdog_s: float = 60.0,
        kill_after_s: float = 10.0,
        stop_timeout_s: float = 20.0,
    ):
        self.root = Path(root).absolute()
        self.store = SlotStore(self.root)
        self.status = StatusBook(self.root / "state" / "status.json")
        self.agent_args = agent_args
        self.max_attempts = max_attempts
        self.watchdog_s = watchdog_s
        self.kill_after_s = kill_after_s
        self.stop_timeout_s = stop_timeout_s
        self.stopping = False
        self.server: sdnotify.NotifyServer | None = None
        self.sd_socket = os.environ.get("NOTIFY_SOCKET")
        sd_wd = sdnotify.watchdog_interval()
        self.sd_ping_s = sd_wd / 2 if sd_wd else None
        self.sd_next_ping = 0.0
        self.sent_ready = False

    @property
    def notify_server(self) -> sdnotify.NotifyServer:
        """The children's notify socket: open for the whole of run(), where everything else runs."""
        if self.server is None:
            raise RuntimeError("the notify server exists only inside Launcher.run()")
        return self.server

    # ---- systemd side ------------------------------------------------------------
    def _sd(self, msg: str) -> None:
        if self.sd_socket:
            sdnotify.notify(msg, self.sd_socket)

    def _tick(self, timeout: float) -> list[str]:
        """Wait up to timeout for child notify lines, pinging systemd's watchdog when due."""
        lines: list[str] = []
        for m in self.notify_server.receive(timeout):
            lines.extend(m.splitlines())
        now = time.monotonic()
        if self.sd_ping_s and now >= self.sd_next_ping:
            self._sd("WATCHDOG=1")
            self.sd_next_ping = now + self.sd_ping_s
        return lines

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            self._tick(min(0.25, max(0.0, end - time.monotonic())))

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.server = sdnotify.NotifyServer()
        try:
            return self._loop()
        finally:
            self.server.close()

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _loop(self) -> int:
        backoff = 1.0
        while not self.stopping:
            try:
                self.store.recover()  # logs what it did
                st = self.store.note_start()
            except (OSError, SlotError, ValueError) as e:
                log.error("slot state unusable (%s); retrying in 5 s", e)
                self._sleep(5)
                continue
            slot = self.store.current_slot()
            p = st["pending"]
            trial = p if p is not None and slot == p["slot"] else None
            if trial is not None:
                limit = min(trial["max_attempts"], self.max_attempts)
                if trial["attempts"] > limit:
                    self._rollback(trial, f"crash_loop: {trial['attempts'] - 1} starts without a commit")
                    continue
                log.info("trial of %s: start %d of %d", slot, trial["attempts"], limit)
            if slot is None or not self.store.is_complete(slot):
                log.error(
                    "no complete release at %s/current; install one with `cabinet-boot install BUNDLE_DIR --root %s`",
                    self.root,
                    self.root,
                )
                return 2
            started = time.monotonic()
            try:
                rc, why = self._run_child(slot, trial)
            except OSError as e:
                rc, why = None, f"start failed: {e}"
            if self.stopping:
                break
            if why == "deadline" and trial is not None:
                self._rollback(trial, f"health_deadline: not committed within {trial['trial_s']:g} s")
            elif trial is not None:
                log.info("trial child exited (%s, rc %s); restarting", why, rc)
            elif rc == 0 and why == "exit":
                log.info("agent exited 0 (restart request); restarting")
                backoff = 1.0
            else:
                if time.monotonic() - started > STABLE_S:
                    backoff = 1.0
                log.warning("agent %s (rc %s); restarting in %g s", why, rc, backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self._sd("STOPPING=1")
        log.info("stopped")
        return 0

    def _rollback(self, trial: dict, reason: str) -> None:
        try:
            back = self.store.rollback(reason, slot=trial["slot"])
        except (OSError, SlotError, ValueError) as e:
            log.error("rollback of %s failed: %s; retrying in 5 s", trial["slot"], e)
            self._sleep(5)
            return
        if back is None:
            log.info("%s is no longer on trial (committed meanwhile); no rollback", trial["slot"])
            return
        log.warning("rolled back %s to %s: %s", trial["slot"], back, reason)
        try:
            self.status.set(
                trial["deployment"],
                "rolled_back",
                reason=reason,
                version=trial["version"],
                counter=trial["counter"],
                t=time.time(),
            )
        except (StatusError, OSError) as e:
            log.error("status not recorded: %s", e)

    def _run_child(self, slot: str, trial: dict | None) -> tuple[int | None, str]:
        """Run the agent of slot until it exits or is killed; (returncode, why)."""
        wd = trial["watchdog_s"] if trial and trial["watchdog_s"] else self.watchdog_s
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "WATCHDOG_PID", "LISTEN_PID")
        }
        env.update(
            NOTIFY_SOCKET=self.notify_server.path, WATCHDOG_USEC=str(int(wd * 1e6)), CABINET_OTA_ROOT=str(self.root)
        )
        argv = [str(self.store.releases / slot / "bin" / "python"), "-m", "agent", *self.agent_args]
        self.notify_server.receive(0)  # drop stale messages of an earlier child
        proc = subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL)
        log.info("started %s (pid %d)", slot, proc.pid)
        start = last = next_poll = time.monotonic()
        trial_s = trial["trial_s"] if trial else None
        deadline = start + trial_s if trial_s is not None else None
        ready = False
        while True:
            for line in self._tick(0.1):
                if line == "READY=1" and not ready:
                    ready, last = True, time.monotonic()
                    log.info("%s ready", slot)
                    if not self.sent_ready:
                        self._sd("READY=1")
                        self.sent_ready = True
                elif line == "WATCHDOG=1":
                    last = time.monotonic()
                elif line.startswith("STATUS="):
                    self._sd(line)
            rc = proc.poll()
            if rc is not None:
                return rc, "exit"
            if self.stopping:
                log.info("stopping %s", slot)
                return self._stop(proc, self.stop_timeout_s), "stopped"
            now = time.monotonic()
            if now - last > wd:
                what = "WATCHDOG=1" if ready else "READY=1"
                log.warning("%s: no %s for %g s; killing it", slot, what, wd)
                return self._stop(proc, self.kill_after_s), "watchdog"
            if trial is not None and now >= next_poll:
                next_poll = now + POLL_S
                p = self.store.state()["pending"]
                if p is None or p["slot"] != trial["slot"]:
                    log.info(
                        "trial of %s ended (%s)",
                        slot,
                        "committed" if self.store.state()["last_good"] == slot else "ended",
                    )
                    trial = deadline = None
            if deadline is not None and now >= deadline:
                log.warning("%s not committed within %g s; killing it", slot, trial_s)
                return self._stop(proc, self.kill_after_s), "deadline"

    def _stop(self, proc: subprocess.Popen, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after grace seconds; the return code."""
        proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < end:
            self._tick(0.05)
        if proc.poll() is None:
            log.warning("pid %d ignored SIGTERM for %g s; SIGKILL", proc.pid, grace)
            proc.kill()
        return proc.wait()


# ---- command line --------------------------------------------------------------------
USAGE = """cabinet-boot --root DIR [options] -- run [agent options]   run the agent of the current slot
       cabinet-boot install BUNDLE --root DIR                    install the first release (the factory slot)
       cabinet-boot status --root DIR                            the slot state and the last deployment status"""
EPILOG = """The launcher of a cabinet (docs/ota.md, "On the cabinet"): everything after `--` goes to
the agent (`python -m agent run --config ... --data-dir ...`). Exit codes: 0 ok (stopped by
SIGTERM/SIGINT), 1 install failed, 2 usage error or no complete release to run."""


def version() -> str:
    """The installed cabinet-agent's version (the launcher is part of it; it imports nothing else of ours)."""
    from importlib import metadata  # deferred: only for --version

    try:
        return metadata.version("cabinet-agent")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def progress(msg: str) -> None:
    print(f"cabinet-boot install: {msg}", file=sys.stderr, flush=True)


def _install(args: argparse.Namespace) -> int:
    """Bootstrap a fresh root from a bundle file (checked against its manifest: sizes, SHA-256,
    nothing but wheels) or from an already extracted bundle directory."""
    # deferred: heavy for the boot process (tarfile, dataclasses: ~20 % of its start), only install unpacks bundles
    from ota import bundle as bundles

    src = Path(args.bundle_dir)
    tmp = None
    t0 = time.monotonic()
    try:
        if src.is_file():
            parent = Path(args.root).absolute().parent
            tmp = Path(tempfile.mkdtemp(prefix="cabinet-boot-", dir=parent if parent.is_dir() else None))
            progress(f"unpacking and checking {src}")
            bundles.extract(src, tmp / "bundle")
            src = tmp / "bundle"
        manifest = json.loads((src / "manifest.json").read_text())
        slot = SlotStore(args.root).bootstrap(src, manifest, python=args.python, progress=progress)
    except (OSError, ValueError, SlotError) as e:  # BundleError is a ValueError
        log.error("install failed: %s", e)
        return 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    progress(f"{slot} installed and current in {time.monotonic() - t0:.1f} s")
    print(slot)
    return 0


def _status(args: argparse.Namespace) -> int:
    root = Path(args.root)
    out: dict[str, Any] = {"current_link": SlotStore(root).current_slot()}
    for key, path, check in (
        ("ota", root / "state" / "ota.json", validate_state),
        ("status", root / "state" / "status.json", None),
    ):
        try:
            out[key] = fsutil.read_json(path, check)
        except fsutil.CorruptFile as e:
            out[key] = {"error": str(e)}
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


def sub_parser(command: str) -> argparse.ArgumentParser:
    if command == "install":
        ap = argparse.ArgumentParser(
            prog="cabinet-boot install",
            description="Install the first release into a fresh root and make it current and committed "
            "(the factory slot). Prints the slot name; progress goes to stderr.",
        )
        ap.add_argument("bundle_dir", help="a bundle file (cabinet ota build), or an extracted bundle directory")
        ap.add_argument("--python", default=sys.executable, help="interpreter the slot venvs are made from")
    else:
        ap = argparse.ArgumentParser(
            prog="cabinet-boot status",
            description="Print the slot state (current, last good, pending trial, release counter) "
            "and the last deployment status as JSON.",
        )
    ap.add_argument("--root", required=True, help="the OTA root, e.g. /opt/cabinet")
    return ap


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cabinet-boot", usage=USAGE, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--version", action="version", version=f"cabinet-boot (cabinet-agent {version()})")
    ap.add_argument("--root", required=True, help="the OTA root, e.g. /opt/cabinet (releases/, current, state/)")
    ap.add_argument(
        "--max-attempts", type=int, default=3, help="starts of a new release without a commit before a rollback (3)"
    )
    ap.add_argument(
        "--watchdog-s", type=float, default=60.0, help="kill an agent silent this long (no READY/WATCHDOG=1) (60)"
    )
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="accepted for symmetry with install; the agent runs on its slot's python",
    )
    ap.add_argument("--kill-after-s", type=float, default=10.0, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="cabinet-boot: %(message)s")
    agent_args: list[str] = []
    if "--" in argv:
        agent_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    if argv[:1] in (["install"], ["status"]):
        args = sub_parser(argv[0]).parse_args(argv[1:])
        return _install(args) if argv[0] == "install" else _status(args)
    args = parser().parse_args(argv)
    if not agent_args:
        parser().error("give the agent's command after --, e.g. -- run --config /etc/cabinet/cabinet.toml")
    return Launcher(
        Path(args.root),
        agent_args,
        max_attempts=args.max_attempts,
        watchdog_s=args.watchdog_s,
        kill_after_s=args.kill_after_s,
    ).run()


if __name__ == "__main__":
    sys.exit(main())
