"""Remote configuration: the `config.apply` command and the health gate (docs/commands.md,
"Remote configuration").

Apply (restart-based): the pushed TOML is validated with the local validator (every
issue in the reply, nothing written when invalid), reconciled by version against the
running config's `[cabinet] config_version` and by hash against the file on disk
(`local_changes`: a technician edited it and did not push it), then written:

    1. <config>.previous  <- the running file (atomic: temp, fsync, rename, fsync dir)
    2. <config>.tmp       <- the new text, fsynced
    3. state/config_trial.json <- {sha256, version, previous_sha256, config, previous, trial_s, boots: 0}
    4. rename <config>.tmp -> <config>, fsync dir
and the agent stops gracefully (App.request_stop); the service manager restarts it.

Gate (App.start): with a trial marker, the boot count is raised first; more than
MAX_BOOTS starts without a commit roll back at once (crash loop). Otherwise, within
`trial_s`, every bus must have completed a transaction, the control loop must have
ticked (when there is one) and the uplink must have connected (when configured): commit
(marker deleted, event `event.config.committed`), else roll back: `<config>.previous`
restored atomically, the failed file kept as `<config>.failed`, the reason recorded in
state/config_history.json, event `event.config.rolled_back`, graceful stop (restart).
A marker whose sha256 is not the running config's (a crash between 3 and 4) is dropped:
the previous config is running, consistently.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent import config as cfg
from agent import statefile
from agent.config import BoardInfo
from agent.model import Priority, Quality, Reading
from agent.remote import health
from agent.remote.downlink import CommandFailed, Downlink
from agent.remote.host import Host
from agent.wire.commands import MAX_COMMAND, Arg, Command
from ota.fsutil import fsync_path as fsync_dir
from ota.fsutil import write_atomic, write_file

log = logging.getLogger("agent.config_apply")

MAX_BOOTS = 2  # starts of one trial without a commit; one more is a crash loop -> roll back
DEFAULT_TRIAL_S = 300.0
CHECK_PERIOD_S = 0.2
TRIAL_FILE = "config_trial.json"
HISTORY_FILE = "config_history.json"

SCHEMA = {
    "toml": Arg("str", required=True, max_len=MAX_COMMAND),
    "version": Arg("int", required=True, min=1, max=2**53),
    "expect_sha256": Arg("str", max_len=64),
    "trial_s": Arg("number", min=1, max=3600),
    "restart_delay_s": Arg("number", min=0, max=60),
}


def sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class ConfigManager:
    """The running config's file, the trial marker and the history, for one App."""

    def __init__(self, app: Host, boards: Mapping[str, BoardInfo] | None = None) -> None:
        self.app = app
        self.boards = boards
        self.path = Path(app.config.source)
        self.state = Path(app.data_dir) / "state"
        self.trial_path = self.state / TRIAL_FILE
        self.history_path = self.state / HISTORY_FILE
        self.trial: dict[str, Any] | None = None
        self.history: dict[str, Any] = {}
        self.outcome: str | None = None  # None, "trial", "committed", "rolled_back", "interrupted"
        self.checks: dict[str, bool] = {}
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ status
    def snapshot(self) -> dict[str, Any]:
        c = self.app.config
        trial = None
        if self.trial is not None and self.outcome == "trial":
            trial = {k: self.trial.get(k) for k in ("sha256", "version", "previous_sha256", "boots", "trial_s")}
            trial["checks"] = dict(self.checks)
        return {
            "sha256": c.sha256,
            "version": c.config_version,
            "trial": trial,
            "last_rollback": self.history.get("last_rollback"),
            "last_commit": self.history.get("last_commit"),
        }

    def _record(self, key: str, entry: dict[str, Any]) -> None:
        self.history[key] = entry
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            statefile.save(self.history_path, self.history)
        except OSError as e:
            log.error("could not save %s: %s", self.history_path, e)

    async def _event(self, kind: str, body: dict[str, Any]) -> None:
        r = Reading(
            f"event.config.{kind}",
            self.app.clock.now(),
            json.dumps(body, separators=(",", ":"), sort_keys=True, default=str),
            Quality.GOOD,
        )
        try:
            await self.app.put([r], Priority.EVENT)
        except Exception as e:  # noqa: BLE001 - the outbox may be closing; the history file has it
            log.warning("config event %s not queued: %s", kind, e)

    # ------------------------------------------------------------------ apply (the command)
    async def apply(self, cmd: Command) -> dict[str, Any]:
        """Check the pushed document (refused with a reason code), write it with a trial
        marker (steps 1-4 of the module doc), then restart into the trial."""
        a = cmd.args
        running = self.app.config
        new, text = self._validate(a)
        trial_s = float(a.get("trial_s", DEFAULT_TRIAL_S))
        marker = {
            "sha256": new.sha256,
            "version": new.config_version,
            "previous_sha256": running.sha256,
            "previous_version": running.config_version,
            "config": str(self.path),
            "previous": str(self.path) + ".previous",
            "trial_s": trial_s,
            "boots": 0,
            "cid": cmd.cid,
            "operator": cmd.operator,
            "pushed_at": self.app.clock.now(),
            "deadline": self.app.clock.now() + trial_s,
        }
        try:
            self.stage(text, marker)
        except OSError as e:
            raise CommandFailed(f"write_failed: {e}") from None
        delay = float(a.get("restart_delay_s", 1.0))
        log.warning(
            "config version %s (%s) written by command %s (operator %s); restarting in %.1f s for a %.0f s trial",
            new.config_version,
            new.sha256[:12],
            cmd.cid,
            cmd.operator,
            delay,
            trial_s,
        )
        asyncio.get_running_loop().call_later(delay, self.app.request_stop)
        return {
            "applied": True,
            "sha256": new.sha256,
            "version": new.config_version,
            "previous": running.sha256,
            "trial_s": trial_s,
            "restarting_in_s": delay,
        }

    def _validate(self, a: dict[str, Any]) -> tuple[cfg.Config, bytes]:
        """The new config and its bytes, or CommandFailed with the refusal's code first."""
        running = self.app.config
        if self.trial is not None and self.outcome == "trial":
            raise CommandFailed(
                f"trial_running: config {self.trial.get('sha256')} (version {self.trial.get('version')}) "
                "is on trial; push again after it is committed or rolled back"
            )
        if a["version"] <= running.config_version:
            raise CommandFailed(
                f"stale_version: version {a['version']} is not newer than the running version {running.config_version}"
            )
        if "expect_sha256" in a and a["expect_sha256"] != running.sha256:
            raise CommandFailed(f"expect_mismatch: the running config is {running.sha256}, not {a['expect_sha256']}")
        on_disk = sha256_file(self.path)
        if on_disk != running.sha256:
            raise CommandFailed(
                f"local_changes: {self.path} has sha256 {on_disk}, the agent loaded {running.sha256}; "
                "a local edit was not pushed (bump its version and push it, or restart to load it)"
            )
        text = a["toml"].encode()
        try:
            new = cfg.loads(text, str(self.path), self.boards)
        except cfg.ConfigError as e:
            raise CommandFailed(f"invalid: {len(e.issues)} issue(s)\n" + "\n".join(str(i) for i in e.issues)) from None
        if new.config_version != a["version"]:
            raise CommandFailed(
                f"invalid: [cabinet] config_version is {new.config_version}, the push says "
                f"version {a['version']} (cabinet config push sets it)"
            )
        if new.cabinet_id != running.cabinet_id:
            raise CommandFailed(
                f"wrong_cabinet: the document is for {new.cabinet_id!r}, this is {running.cabinet_id!r}"
            )
        if new.sha256 == running.sha256:
            raise CommandFailed("unchanged: the document is the running config")
        return new, text

    def stage(self, text: bytes, marker: dict[str, Any], *, crash_before_rename: bool = False) -> None:
        """Steps 1-4 of the module doc (crash_before_rename: tests stop after step 3)."""
        write_atomic(Path(marker["previous"]), self.path.read_bytes(), mode=0o640)
        tmp = self.path.with_name(self.path.name + ".tmp")
        write_file(tmp, text, mode=0o640)
        self.state.mkdir(parents=True, exist_ok=True)
        statefile.save(self.trial_path, marker)
        if crash_before_rename:
            return
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    # ------------------------------------------------------------------ the gate (on start)
    def start(self) -> None:
        """Called from App.start: load the history and the marker; run or resolve a trial."""
        self.history = statefile.load(self.history_path) or {}
        rb = self.history.get("last_rollback")
        if isinstance(rb, dict) and rb.get("reported") is False:  # rolled back by boot_guard, before the App
            asyncio.get_running_loop().create_task(self._event("rolled_back", rb))
            self._mark_reported()
        marker = statefile.load(self.trial_path)
        if not isinstance(marker, dict):
            return
        self.trial = marker
        running = self.app.config.sha256
        if marker.get("sha256") != running:
            # a crash between writing the marker and the rename (or a later local change): the running
            # file is what is on disk; drop the marker so nothing is rolled back over it
            self.outcome = "interrupted"
            log.warning(
                "config apply of %s was interrupted before the new file took effect; running %s",
                str(marker.get("sha256"))[:12],
                running[:12],
            )
            self._drop_marker()
            self._record(
                "last_interrupted",
                {
                    "sha256": marker.get("sha256"),
                    "version": marker.get("version"),
                    "running": running,
                    "t": self.app.clock.now(),
                },
            )
            self.trial = None
            return
        marker["boots"] = int(marker.get("boots", 0)) + 1
        self.outcome = "trial"
        if marker["boots"] > MAX_BOOTS:
            self._task = asyncio.create_task(
                self.rollback(f"crash_loop: {marker['boots'] - 1} starts without a commit")
            )
            return
        statefile.save(self.trial_path, marker)
        self._task = asyncio.create_task(self._gate(float(marker.get("trial_s", DEFAULT_TRIAL_S))))

    async def _gate(self, trial_s: float) -> None:
        app = self.app
        loop = asyncio.get_running_loop()
        deadline = loop.time() + trial_s
        self.checks = health.initial(app)
        log.info("config %s on trial for %.0f s: %s", app.config.sha256[:12], trial_s, ", ".join(self.checks))
        while True:
            if health.update(app, self.checks):
                await self.commit()
                return
            if loop.time() >= deadline:
                failed = [k for k, ok in self.checks.items() if not ok]
                await self.rollback(f"health: not healthy within {trial_s:g} s: {', '.join(failed)}")
                return
            await asyncio.sleep(CHECK_PERIOD_S)

    async def commit(self) -> None:
        m = self.trial or {}
        entry = {
            "sha256": m.get("sha256"),
            "version": m.get("version"),
            "previous_sha256": m.get("previous_sha256"),
            "boots": m.get("boots"),
            "cid": m.get("cid"),
            "t": self.app.clock.now(),
        }
        self._drop_marker()
        self.outcome = "committed"
        self._record("last_commit", entry)
        log.warning("config version %s (%s) committed: healthy", m.get("version"), str(m.get("sha256"))[:12])
        await self._event("committed", entry)

    async def rollback(self, reason: str) -> None:
        m = self.trial or {"config": str(self.path)}
        entry = restore(m, reason, self.history_path, self.app.clock.now())
        self.history = statefile.load(self.history_path) or self.history
        if "error" in entry:
            return
        self.outcome = "rolled_back"
        await self._event("rolled_back", entry)
        self._mark_reported()
        self.app.request_stop()  # the service manager restarts us on the restored file

    def _mark_reported(self) -> None:
        rb = self.history.get("last_rollback")
        if isinstance(rb, dict) and not rb.get("reported"):
            rb["reported"] = True
            self._record("last_rollback", rb)

    def _drop_marker(self) -> None:
        try:
            self.trial_path.unlink()
            fsync_dir(self.trial_path.parent)
        except FileNotFoundError:
            pass

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


def restore(m: dict[str, Any], reason: str, history_path: Path, now: float) -> dict[str, Any]:
    """Roll back: <config>.previous over <config> (the failed file kept as <config>.failed), the
    marker dropped, `last_rollback` recorded. On an OSError the marker stays (the next start retries)."""
    path = Path(m["config"])
    previous = Path(m.get("previous") or str(path) + ".previous")
    entry = {
        "sha256": m.get("sha256"),
        "version": m.get("version"),
        "restored": m.get("previous_sha256"),
        "reason": reason,
        "boots": m.get("boots"),
        "cid": m.get("cid"),
        "t": now,
        "reported": False,
    }
    history = statefile.load(history_path) or {}
    try:
        old = previous.read_bytes()
        try:
            write_atomic(path.with_name(path.name + ".failed"), path.read_bytes(), mode=0o640)
        except OSError as e:
            log.warning("could not keep the failed config: %s", e)
        write_atomic(path, old, mode=0o640)
    except OSError as e:
        log.error("config rollback to %s failed: %s; keeping the trial marker", previous, e)
        entry["error"] = str(e)
    else:
        trial = history_path.with_name(TRIAL_FILE)
        trial.unlink(missing_ok=True)
        fsync_dir(trial.parent)
        log.error(
            "config version %s (%s) rolled back to %s: %s",
            m.get("version"),
            str(m.get("sha256"))[:12],
            str(m.get("previous_sha256"))[:12],
            reason,
        )
    history["last_rollback"] = entry
    history_path.parent.mkdir(parents=True, exist_ok=True)
    statefile.save(history_path, history)
    return entry


def boot_guard(data_dir: Path, boards: Any = None, now: float | None = None) -> dict[str, Any] | None:
    """Before the config is loaded (`cabinet run`): a trial whose file no longer loads, or that has
    had MAX_BOOTS starts without a commit, is rolled back here. Returns the rollback entry, if any."""
    state = Path(data_dir) / "state"
    m = statefile.load(state / TRIAL_FILE)
    if not isinstance(m, dict) or "config" not in m or sha256_file(Path(m["config"])) != m.get("sha256"):
        return None  # no trial, or the rename never happened (App.start drops such a marker)
    now = time.time() if now is None else now
    if int(m.get("boots", 0)) >= MAX_BOOTS:
        return restore(m, f"crash_loop: {m.get('boots')} starts without a commit", state / HISTORY_FILE, now)
    try:
        cfg.load(m["config"], boards)
    except cfg.ConfigError as e:
        return restore(m, f"load_failed: {'; '.join(str(i) for i in e.issues)[:2000]}", state / HISTORY_FILE, now)
    return None


def install(dl: Downlink, manager: ConfigManager) -> None:
    dl.register("config.apply", manager.apply, SCHEMA)
