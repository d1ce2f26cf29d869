"""Release slots under the OTA root: install, atomic switch, trial, commit, rollback, recovery.

Owns <root>/releases, <root>/current, <root>/store and <root>/state/ota.json (format in
docs/ota-internals.md; the document and its validation are ota.slotstate). ota.json holds
the intent: its "current" is where the `current` link must point, and it is always written
before the link is switched, so recover() can finish or undo any interrupted switch. Every
mutating step goes through ota.fsutil (whose fault hook the power-cut tests use); state
changes hold an flock on state/ota.lock because the launcher and the agent both write
ota.json. Stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ota import fsutil
from ota.fsutil import CorruptFile, PathArg
from ota.slotstate import empty_state, is_count, is_slot_name, validate_state

log = logging.getLogger("ota.slots")

PIP_OPTS = (
    "--no-index",
    "--no-deps",
    "--disable-pip-version-check",
    "--no-input",
    "--no-cache-dir",
    "--no-warn-script-location",
    "-q",
)


class SlotError(Exception):
    """An install or state change that did not happen; reason is a short code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SlotStore:
    """The slots of one OTA root (see the module docstring)."""

    def __init__(self, root: PathArg):
        self.root = Path(root).absolute()
        self.releases = self.root / "releases"
        self.store = self.root / "store"
        self.state_dir = self.root / "state"
        self.state_path = self.state_dir / "ota.json"
        self.link = self.root / "current"

    # ---- reading -----------------------------------------------------------------
    def state(self) -> dict:
        """ota.json validated; missing -> empty; corrupt -> moved to .bad and rebuilt."""
        try:
            st = fsutil.read_json(self.state_path, validate_state)
        except CorruptFile as e:
            log.error("ota.json corrupt (%s); moved aside, rebuilt from the current link", e.why)
            fsutil.move_aside(self.state_path)
            st = self._rebuilt()
            fsutil.write_json_atomic(self.state_path, st)
            return st
        return empty_state() if st is None else st

    def _rebuilt(self) -> dict:
        st = empty_state()
        slot = self.current_slot()
        if slot is not None and self.is_complete(slot):
            st.update(current=slot, last_good=slot, high_water=self.manifest(slot)["counter"])
        return st

    def current_slot(self) -> str | None:
        """The slot the `current` link names (None when missing or not releases/<slot>)."""
        try:
            target = os.readlink(self.link)
        except OSError:
            return None
        head, _, name = target.partition("/")
        return name if head == "releases" and is_slot_name(name, False) else None

    def is_complete(self, slot: str | None) -> bool:
        if not slot:
            return False
        return (self.releases / slot / ".complete").is_file()

    def manifest(self, slot: str) -> dict:
        return json.loads((self.releases / slot / "manifest.json").read_text())

    def slots(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if is_slot_name(p.name, False))

    # ---- writing -----------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        fsutil.makedirs(self.state_dir)
        with open(self.state_dir / "ota.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield self.state()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _save(self, st: dict) -> None:
        validate_state(st)
        fsutil.write_json_atomic(self.state_path, st)

    def _switch(self, slot: str) -> None:
        """Point `current` at releases/<slot>: symlink current.tmp, rename over, fsync root."""
        tmp = self.root / "current.tmp"
        if os.path.lexists(tmp):
            fsutil.unlink(tmp)
        fsutil.symlink(f"releases/{slot}", tmp)
        fsutil.replace(tmp, self.link)
        fsutil.fsync_path(self.root)

    def recover(self) -> list[str]:
        """Finish or undo whatever a kill or power cut interrupted; what was done, in words."""
        done: list[str] = []
        for d in (self.releases, self.store):
            if d.is_dir():
                for p in sorted(d.iterdir()):
                    if p.name.endswith(".tmp"):
                        fsutil.rmtree(p)
                        done.append(f"removed {d.name}/{p.name}")
        if os.path.lexists(self.root / "current.tmp"):
            fsutil.unlink(self.root / "current.tmp")
            done.append("removed current.tmp")
        if not self.state_dir.is_dir() and not os.path.lexists(self.link):
            return done
        with self._locked() as st:
            before = json.dumps(st, sort_keys=True)
            if st["current"] is None and self.is_complete(self.current_slot()):
                st = self._rebuilt()
                done.append(f"adopted {st['current']} (no ota.json)")
            p = st["pending"]
            if p is not None and not self.is_complete(p["slot"]):
                st["current"] = p["from"] if self.is_complete(p["from"]) else st["last_good"]
                st["pending"] = None
                st["last_outcome"] = {
                    "deployment": p["deployment"],
                    "slot": p["slot"],
                    "result": "failure",
                    "reason": "install_interrupted",
                    "t": time.time(),
                }
                done.append(f"dropped pending {p['slot']} (slot incomplete)")
            want = next((s for s in (st["current"], st["last_good"], st["previous_good"]) if self.is_complete(s)), None)
            if want is None and st["current"] is not None:
                done.append("no complete release to run")
            if want is not None and want != st["current"]:
                done.append(f"{st['current']} is gone; current is {want}")
                st["current"] = want
            if json.dumps(st, sort_keys=True) != before:
                self._save(st)
            if want is not None and self.current_slot() != want:
                self._switch(want)
                done.append(f"current -> {want}")
        for line in done:
            log.warning("recover: %s", line)
        return done

    def begin_trial(
        self,
        slot: str,
        *,
        counter: int,
        version: str,
        deployment: str,
        trial_s: float,
        max_attempts: int = 3,
        watchdog_s: float | None = None,
    ) -> None:
        """Persist pending (and the new intent), then switch `current` to slot."""
        if not self.is_complete(slot):
            raise SlotError("slot_incomplete", slot)
        m = self.manifest(slot)
        if m.get("counter") != counter or m.get("version") != version:
            raise SlotError("manifest_mismatch", f"{slot} is {m.get('counter')}/{m.get('version')}")
        with self._locked() as st:
            p = st["pending"]
            if p is not None and p["slot"] != slot:
                raise SlotError("trial_in_progress", p["slot"])
            if p is None:
                if counter <= st["high_water"]:
                    raise SlotError("counter_not_newer", f"{counter} <= {st['high_water']}")
                if st["current"] == slot:
                    raise SlotError("already_current", slot)
                st["pending"] = {
                    "slot": slot,
                    "from": st["current"],
                    "counter": counter,
                    "version": version,
                    "deployment": deployment,
                    "attempts": 0,
                    "max_attempts": max_attempts,
                    "trial_s": trial_s,
                    "watchdog_s": watchdog_s,
                }
                st["current"] = slot
                self._save(st)
            if self.current_slot() != slot:
                self._switch(slot)

    def note_start(self) -> dict:
        """Count a start of a trial slot (persisted before the start); the state after."""
        with self._locked() as st:
            p = st["pending"]
            if p is not None and self.current_slot() == p["slot"]:
                p["attempts"] += 1
                self._save(st)
            return st

    def commit(self, slot: str) -> bool:
        """Make the running trial slot the last good one; True when slot is committed."""
        with self._locked() as st:
            p = st["pending"]
            if p is None and st["last_good"] == slot and self.current_slot() == slot:
                return True  # already committed (a retry after a crash)
            if p is None or p["slot"] != slot or self.current_slot() != slot:
                return False
            if st["last_good"] != slot:
                st["previous_good"] = st["last_good"]
            st.update(
                last_good=slot,
                current=slot,
                high_water=max(st["high_water"], p["counter"]),
                pending=None,
                last_outcome={
                    "deployment": p["deployment"],
                    "slot": slot,
                    "result": "committed",
                    "reason": None,
                    "t": time.time(),
                },
            )
            self._save(st)
            self._gc(st)
            return True

    def rollback(self, reason: str, *, slot: str | None = None) -> str | None:
        """Switch back to pending.from; the slot now current, None when nothing was pending
        (or the pending slot is not `slot` when given: a commit won the race)."""
        with self._locked() as st:
            p = st["pending"]
            if p is None or slot not in (None, p["slot"]):
                return None
            back = next((s for s in (p["from"], st["last_good"]) if self.is_complete(s)), None)
            if back is None:
                raise SlotError("no_good_slot", "nothing complete to roll back to")
            st.update(
                current=back,
                pending=None,
                last_outcome={
                    "deployment": p["deployment"],
                    "slot": p["slot"],
                    "result": "rolled_back",
                    "reason": reason,
                    "t": time.time(),
                },
            )
            self._save(st)
            if back is not None and self.current_slot() != back:
                self._switch(back)
            log.warning("rolled back %s -> %s: %s", p["slot"], back, reason)
            return back

    def _gc(self, st: dict) -> None:
        keep = {s for s in (st["current"], st["previous_good"]) if s}
        for slot in self.slots():
            if slot not in keep:
                fsutil.rmtree(self.releases / slot)
        used: set[str] = set()
        for slot in keep:
            for pth in (self.releases / slot).glob("lib/python3*/site-packages/_cabinet_deps.pth"):
                used.update(Path(line).name for line in pth.read_text().split())
            m = self.manifest(slot)
            used.add("installer-" + m["wheels"][m["installer_wheel"]]["sha256"])
        if self.store.is_dir():
            for d in self.store.iterdir():
                if not d.name.endswith(".tmp") and d.name not in used:
                    fsutil.rmtree(d)

    def bootstrap(
        self,
        bundle_dir: PathArg,
        manifest: dict,
        *,
        python: str = sys.executable,
        timeout_s: float = 600,
        progress: Callable[[str], None] | None = None,
    ) -> str:
        """First install on a fresh root: install, then ota.json, then the link."""
        slot = self.install(bundle_dir, manifest, python=python, timeout_s=timeout_s, progress=progress)
        with self._locked() as st:
            if st["current"] not in (None, slot) and self.is_complete(st["current"]):
                raise SlotError("already_bootstrapped", f"current is {st['current']}")
            st.update(current=slot, last_good=slot, pending=None, high_water=max(st["high_water"], manifest["counter"]))
            self._save(st)
            if self.current_slot() != slot:
                self._switch(slot)
        return slot

    # ---- install -----------------------------------------------------------------
    def install(
        self,
        bundle_dir: PathArg,
        manifest: dict,
        *,
        python: str = sys.executable,
        timeout_s: float = 600,
        progress: Callable[[str], None] | None = None,
    ) -> str:
        """Install an extracted bundle into releases/<counter>-<version>; the slot name.

        Idempotent: a complete slot of that name is reused. Dependency wheels go once into
        store/<sha256>/ (pip --target), found by the slot through _cabinet_deps.pth.
        `progress` is told each step as it starts (cabinet-boot install prints them).
        """
        say = progress or (lambda _msg: None)
        wheels = Path(bundle_dir) / "wheels"
        try:
            version, counter = manifest["version"], manifest["counter"]
            project, installer = manifest["project_wheel"], manifest["installer_wheel"]
            listed = dict(manifest["wheels"])
        except (KeyError, TypeError, ValueError) as e:
            raise SlotError("bad_manifest", repr(e)) from e
        slot = f"{counter}-{version}"
        if not is_slot_name(slot, False) or not is_count(counter) or project not in listed or installer not in listed:
            raise SlotError("bad_manifest", f"slot {slot!r}, project/installer wheel listed?")
        final = self.releases / slot
        if self.is_complete(slot):
            say(f"{slot} is installed already")
            return slot
        if final.exists():
            if slot in (self.current_slot(), self.state()["last_good"]):
                raise SlotError("slot_damaged", f"{slot} is in use but has no .complete")
            fsutil.rmtree(final)
        say(f"checking {len(listed)} wheels against the manifest")
        for name, info in listed.items():
            if "/" in name or fsutil.sha256_file(wheels / name) != info["sha256"]:
                raise SlotError("wheel_hash", name)
        fsutil.makedirs(self.releases)
        fsutil.makedirs(self.store)
        pip = self._installer(wheels / installer, listed[installer]["sha256"])
        deps = []
        names = [n for n in sorted(listed) if n not in (project, installer)]
        for i, name in enumerate(names, 1):
            sha = listed[name]["sha256"]
            deps.append(self.store / sha)
            if not (self.store / sha).is_dir():
                if i == 1 or i % 5 == 0 or i == len(names):  # concise: the longest step, a line now and then
                    say(f"dependency {i}/{len(names)}: {' '.join(name.split('-')[:2])}")
                self._store_wheel(python, pip, wheels / name, sha, timeout_s)
        tmp = self.releases / (slot + ".tmp")
        if os.path.lexists(tmp):
            fsutil.rmtree(tmp)
        say(f"creating the release slot {slot} and installing {project}")
        self._run("venv", [python, "-m", "venv", "--without-pip", tmp], timeout_s)
        site = next(tmp.glob("lib/python3*/site-packages"))
        fsutil.write_file(
            site / "_cabinet_deps.pth",  # absolute: site.py joins lexically
            "".join(f"{d}\n" for d in deps).encode(),
        )
        tpy = tmp / "bin" / "python"
        self._run("pip_project", [tpy, pip, "install", *PIP_OPTS, wheels / project], timeout_s)
        # scripts pip wrote name <slot>.tmp/bin/python: make them name the final path
        fsutil.rewrite_prefix(tmp / "bin", f"#!{tmp}/bin/python".encode(), f"#!{final}/bin/python".encode())
        say("smoke test: the new release imports and says its version")
        r = self._run("smoke", [tpy, "-I", "-c", "import agent; print(agent.__version__)"], timeout_s, cwd=tmp)
        if r.stdout.strip() != version:
            raise SlotError("smoke_version", f"agent says {r.stdout.strip()!r}, want {version!r}")
        fsutil.write_file(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        fsutil.write_file(tmp / ".complete", b"")
        fsutil.fsync_tree(tmp)
        fsutil.rename(tmp, final)
        fsutil.fsync_path(self.releases)
        return slot

    def _installer(self, wheel: Path, sha: str) -> str:
        """The installer wheel unpacked once into store/installer-<sha> (pip from a zip
        recompiles all of pip on every run); the path to run as `python <path> install`."""
        d = self.store / f"installer-{sha}"
        if not d.is_dir():
            tmp = self.store / f"installer-{sha}.tmp"
            if os.path.lexists(tmp):
                fsutil.rmtree(tmp)
            try:
                fsutil.unzip(wheel, tmp)
            except ValueError as e:
                raise SlotError("bad_installer", str(e)) from e
            fsutil.fsync_tree(tmp)
            fsutil.rename(tmp, d)
            fsutil.fsync_path(self.store)
        return str(d / "pip")

    def _store_wheel(self, python: str, pip: str, wheel: Path, sha: str, timeout_s: float) -> None:
        tmp = self.store / (sha + ".tmp")
        if os.path.lexists(tmp):
            fsutil.rmtree(tmp)
        self._run("pip_dep", [python, pip, "install", *PIP_OPTS, "--target", tmp, wheel], timeout_s)
        fsutil.fsync_tree(tmp)
        fsutil.rename(tmp, self.store / sha)
        fsutil.fsync_path(self.store)

    @staticmethod
    def _run(
        what: str, argv: Sequence[PathArg], timeout_s: float, cwd: PathArg | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
        try:
            r = fsutil.run(argv, timeout=timeout_s, cwd=cwd, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SlotError(what, str(e)) from e
        if r.returncode != 0:
            raise SlotError(what, f"exit {r.returncode}: {(r.stderr or r.stdout)[-2000:]}")
        return r
