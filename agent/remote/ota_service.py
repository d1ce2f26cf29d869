"""OTA on the cabinet (docs/ota.md): the `ota.offer` command, the update worker, the trial
of a new release and its commit, and the status reports.

Runs only under the launcher (`cabinet-boot` sets CABINET_OTA_ROOT); without it offers are
refused (`no_launcher`), because nothing could roll a bad release back.

    offer (signed command) -> offered -> [clock policy] -> TUF refresh -> target checks
      -> downloading (percent) -> downloaded -> installing (bundle checked, slot installed)
      -> restarting (pending persisted, `current` switched, graceful stop)
    new release starts -> verifying -> health gate (buses, control loop, an acked batch)
      -> commit -> success;   no commit in time / crash loop -> the launcher rolls back

Transient failures (link down, repository unreachable, metadata expired, no disk space,
clock unknown or behind) leave the deployment `deferred` and are retried with backoff until
`give_up_h`; then, or on a permanent failure, `failure`. Incompatible or not newer releases
are `rejected`; the running one is `already_installed`.

Clock policy: TUF checks expiry against the system clock. An update runs only while that
clock is trusted (not known to be unsynchronised, after the build floor) and not behind the
floor = max(the running release's build time, the offer's signed iat - skew, the last
successful refresh): a clock behind could let expired metadata through. A clock ahead makes
valid metadata look expired: deferred and retried, never permanent. Control never waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import agent
from agent import statefile
from agent.clock import Clock, clock_trusted
from agent.config.ota import OtaSettings
from agent.remote import health
from agent.remote.downlink import CommandFailed, Downlink
from agent.remote.host import Host
from agent.wire.commands import Arg, Command
from agent.wire.ota_status import TERMINAL, seal_status, status_topic
from ota import bundle
from ota.slots import SlotError, SlotStore
from ota.status import DEPLOYMENT_RE, DEPLOYMENT_RULE, StatusBook

log = logging.getLogger("agent.ota")

TARGET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
CLOCK_SKEW_S = 300.0
PROGRESS_STEP = 10  # percent between downloading reports
CHECK_PERIOD_S = 0.5
BUILD_FLOOR = 1_767_225_600.0  # 2026-01-01T00:00:00Z

SCHEMA = {
    "deployment": Arg("str", required=True, max_len=64),
    "target": Arg("str", required=True, max_len=200),
    "repository": Arg("str", max_len=500),
    "trial_s": Arg("number", min=10, max=3600),
}


class Retry(Exception):
    """A transient failure: deferred, tried again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Final(Exception):
    """A terminal outcome other than a restart: failure, rejected or already_installed."""

    def __init__(self, state: str, reason: str | None = None) -> None:
        super().__init__(reason or state)
        self.state, self.reason = state, reason


def running_slot(root: Path) -> str | None:
    """The slot this interpreter runs from (<root>/releases/<slot>), or None."""
    try:
        prefix = Path(sys.prefix).resolve()
        releases = (root / "releases").resolve()
    except OSError:
        return None
    return prefix.name if prefix.parent == releases else None


class OtaService:
    def __init__(self, app: Host, settings: OtaSettings, *, root: Path | None, wall: Clock) -> None:
        self.app, self.s, self.wall = app, settings, wall
        self.root = Path(root) if root else None
        self._slots = SlotStore(self.root) if self.root else None
        self._book = StatusBook(self.root / "state" / "status.json") if self.root else None
        self.slot = running_slot(self.root) if self.root else None
        self.task: asyncio.Task | None = None
        self.gate_checks: dict[str, bool] = {}
        self._last_pct = -1

    # Everything but offer() refusing and snapshot() runs only under the launcher (a root).
    @property
    def home(self) -> Path:
        if self.root is None:
            raise RuntimeError("OTA: this agent does not run under cabinet-boot")
        return self.root

    @property
    def slots(self) -> SlotStore:
        if self._slots is None:
            raise RuntimeError("OTA: this agent does not run under cabinet-boot")
        return self._slots

    @property
    def book(self) -> StatusBook:
        if self._book is None:
            raise RuntimeError("OTA: this agent does not run under cabinet-boot")
        return self._book

    @property
    def offer_path(self) -> Path:
        return self.home / "state" / "offer.json"

    @property
    def floor_path(self) -> Path:
        return self.home / "state" / "clock_floor.json"

    # ------------------------------------------------------------------ start, status
    def start(self) -> None:
        if self.root is None:
            return
        st = self.slots.state()
        pend = st.get("pending")
        rec = self.book.current()
        if pend and pend.get("slot") == self.slot:
            self._set(pend["deployment"], "verifying", version=pend.get("version"), counter=pend.get("counter"))
            self.task = asyncio.create_task(self._gate(pend))
        elif rec is not None and rec["state"] not in TERMINAL:
            out = st.get("last_outcome") or {}
            offer = statefile.load(self.offer_path) if self.offer_path.exists() else None
            if out.get("deployment") == rec["deployment"] and out.get("result") == "committed":
                self._set(rec["deployment"], "success")  # committed, then stopped before the report
            elif out.get("deployment") == rec["deployment"] and out.get("result") == "rolled_back":
                self._set(rec["deployment"], "rolled_back", reason=out.get("reason") or "rolled back")
            elif isinstance(offer, dict) and offer.get("deployment") == rec["deployment"]:
                log.warning("resuming OTA deployment %s (was %s)", rec["deployment"], rec["state"])
                self.task = asyncio.create_task(self._work(offer))
            else:
                self._set(rec["deployment"], "failure", reason="interrupted: the offer was lost")
        if rec is not None and self.task is None:
            self._publish(self.book.current())

    def snapshot(self) -> dict[str, Any] | None:
        if self.root is None:
            return None
        st = self.slots.state()
        return {
            "root": str(self.root),
            "slot": self.slot,
            "high_water": st.get("high_water"),
            "pending": st.get("pending"),
            "last_outcome": st.get("last_outcome"),
            "status": self.book.current(),
            "checks": dict(self.gate_checks) or None,
        }

    def _set(self, deployment: str, state: str, **kw: Any) -> dict[str, Any]:
        rec = self.book.set(deployment, state, t=self.wall.now(), **kw)
        log.info(
            "OTA %s: %s%s",
            deployment,
            state,
            f" ({kw['reason']})"
            if kw.get("reason")
            else f" {kw['percent']} %"
            if kw.get("percent") is not None
            else "",
        )
        self._publish(rec)
        return rec

    def _publish(self, rec: dict[str, Any] | None) -> None:
        up = self.app.uplink
        if rec is None or up is None:
            return
        topic = status_topic(up.s.topic_prefix, self.app.config.cabinet_id)
        doc = {**rec, "cabinet": self.app.config.cabinet_id, "running": agent.__version__}
        seq = rec["seq"]
        up.put_retained(
            topic, seal_status(doc, key=up.key, kid=up.kid, topic=topic), on_sent=lambda: self.book.mark_delivered(seq)
        )

    # ------------------------------------------------------------------ the offer
    async def offer(self, cmd: Command) -> dict[str, Any]:
        a = cmd.args
        if self.root is None:
            raise CommandFailed("no_launcher: this agent does not run under cabinet-boot; it cannot install updates")
        if not DEPLOYMENT_RE.fullmatch(a["deployment"]):
            raise CommandFailed(f"bad deployment id {a['deployment']!r}: {DEPLOYMENT_RULE}")
        if not TARGET_RE.fullmatch(a["target"]):
            raise CommandFailed("bad target name")
        repo = (a.get("repository") or self.s.repository or "").rstrip("/")
        if not repo.startswith(("http://", "https://")):
            raise CommandFailed("no repository: neither the offer nor [ota] repository names an http(s) URL")
        rec = self.book.current()
        if rec is not None and rec["deployment"] == a["deployment"]:
            return {"state": rec["state"], "seq": rec["seq"], "duplicate": True}
        if rec is not None and rec["state"] not in TERMINAL:
            raise CommandFailed(f"busy: deployment {rec['deployment']} is {rec['state']}")
        offer = {
            "deployment": a["deployment"],
            "target": a["target"],
            "repository": repo,
            "trial_s": float(a.get("trial_s") or self.s.trial_s),
            "iat": cmd.iat,
            "cid": cmd.cid,
            "accepted_t": self.wall.now(),
        }
        self.offer_path.parent.mkdir(parents=True, exist_ok=True)
        statefile.save(self.offer_path, offer)
        rec = self._set(offer["deployment"], "offered")
        self.task = asyncio.create_task(self._work(offer))
        return {"state": rec["state"], "seq": rec["seq"]}

    # ------------------------------------------------------------------ the worker
    async def _work(self, offer: dict[str, Any]) -> None:
        dep = offer["deployment"]
        delay = self.s.retry_s
        give_up = float(offer.get("accepted_t") or self.wall.now()) + self.s.give_up_h * 3600
        try:
            while True:
                try:
                    await self._attempt(offer)
                    return
                except Retry as e:
                    if self.wall.now() >= give_up:
                        raise Final("failure", f"gave up after {self.s.give_up_h:g} h: {e.reason}") from None
                    self._set(dep, "deferred", reason=e.reason[:500])
                    await self.app.clock.sleep(delay)
                    delay = min(delay * 2, self.s.max_retry_s)
        except Final as e:
            self._set(dep, e.state, reason=e.reason[:500] if e.reason else None)
            self._drop_offer()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("OTA deployment %s failed", dep)
            self._set(dep, "failure", reason=f"internal: {type(e).__name__}: {e}"[:500])
            self._drop_offer()

    def _check_clock(self, offer: dict[str, Any]) -> None:
        if not clock_trusted(self.wall):
            raise Retry("clock_unknown: the system clock is not synchronised, or before 2026")
        floor = max(BUILD_FLOOR, float(offer.get("iat") or 0) - CLOCK_SKEW_S, self._floor())
        now = self.wall.now()
        if now < floor:
            raise Retry(f"clock_behind: system clock {now:.0f} is before the trusted floor {floor:.0f}")

    def _floor(self) -> float:
        d = statefile.load(self.floor_path) if self.floor_path.exists() else None
        v = d.get("t") if isinstance(d, dict) else None
        return float(v) if isinstance(v, (int, float)) else 0.0

    async def _attempt(self, offer: dict[str, Any]) -> None:
        from ota.client import UpdateClient  # deferred: heavy (tuf, urllib3), only while updating
        from ota.errors import OtaError

        dep = offer["deployment"]
        self._check_clock(offer)
        try:
            root_bytes = Path(self.s.trusted_root or self.home / "trusted_root.json").read_bytes()
        except OSError as e:
            raise Final("failure", f"no trusted root: {e}") from None
        client = UpdateClient(
            cache_dir=self.home / "tuf",
            download_dir=self.home / "downloads",
            repository_url=offer["repository"],
            bootstrap_root=root_bytes,
            max_bundle_bytes=int(self.s.max_bundle_mb * 2**20),
            reserve_bytes=int(self.s.reserve_mb * 2**20),
        )
        try:
            await asyncio.to_thread(client.refresh)
            statefile.save(self.floor_path, {"t": self.wall.now()})
            info = await asyncio.to_thread(client.target, offer["target"])
            custom = self._check_target(info)
            loop = asyncio.get_running_loop()
            self._last_pct = -1

            def progress(done: int, total: int) -> None:
                loop.call_soon_threadsafe(self._progress, dep, done, total, custom)

            self._set(dep, "downloading", percent=0, version=custom["version"], counter=custom["counter"])
            path = await asyncio.to_thread(client.download, info, progress)
        except OtaError as e:
            if e.transient:
                raise Retry(f"{e.reason}: {e.detail}") from None
            raise Final("failure", f"{e.reason}: {e.detail}") from None
        self._set(dep, "downloaded", version=custom["version"], counter=custom["counter"])
        self._set(dep, "installing", version=custom["version"], counter=custom["counter"])
        slot, man = await asyncio.to_thread(self._install, Path(path), custom)
        self._set(dep, "restarting", version=man.version, counter=man.counter)
        await asyncio.to_thread(
            self.slots.begin_trial,
            slot,
            counter=man.counter,
            version=man.version,
            deployment=dep,
            trial_s=float(offer["trial_s"]),
            max_attempts=self.s.max_attempts,
        )
        client.cleanup(keep=set())
        await self._flush_status(5.0)
        log.warning("OTA %s: release %s installed in slot %s; restarting into it", dep, man.version, slot)
        self.app.request_stop()

    def _check_target(self, info: Any) -> dict[str, Any]:
        c = getattr(info, "custom", None) or {}
        version, counter = c.get("version"), c.get("counter")
        if not isinstance(version, str) or not isinstance(counter, int) or isinstance(counter, bool):
            raise Final("rejected", "target metadata has no version/counter")
        if c.get("name", "cabinet-agent") != "cabinet-agent":
            raise Final("rejected", f"target is {c.get('name')!r}, not cabinet-agent")
        boards = c.get("boards") or []
        if self.app.config.board not in boards:
            raise Final("rejected", f"incompatible_board: {self.app.config.board} not in {boards}")
        py = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if c.get("python") not in (None, py):
            raise Final("rejected", f"incompatible_python: release for {c.get('python')}, this is {py}")
        high = int(self.slots.state().get("high_water") or 0)
        if version == agent.__version__ and counter <= high:
            raise Final("already_installed")
        if counter <= high:
            raise Final("rejected", f"not_newer: release counter {counter} <= installed {high}")
        return {"version": version, "counter": counter}

    def _progress(self, dep: str, done: int, total: int, custom: dict[str, Any]) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct >= self._last_pct + PROGRESS_STEP or (pct == 100 and self._last_pct != 100):
            self._last_pct = pct
            self._set(dep, "downloading", percent=pct, version=custom["version"], counter=custom["counter"])

    def _install(self, path: Path, custom: dict[str, Any]) -> tuple[str, Any]:
        work = self.home / "downloads" / (path.name + ".unpacked")
        shutil.rmtree(work, ignore_errors=True)
        try:
            man = bundle.extract(path, work)
            if (man.version, man.counter) != (custom["version"], custom["counter"]):
                raise Final(
                    "failure",
                    f"manifest_mismatch: bundle says {man.version}/{man.counter}, "
                    f"signed metadata {custom['version']}/{custom['counter']}",
                )
            slot = self.slots.install(work, man.to_dict())
            return slot, man
        except bundle.BundleError as e:
            raise Final("failure", f"bad_bundle: {e}") from None
        except SlotError as e:
            raise Final("failure", f"install_failed: {e}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _flush_status(self, within_s: float) -> None:
        """Give the uplink a moment to deliver the latest status before a restart."""
        up = self.app.uplink
        if up is None:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + within_s
        while self.book.undelivered() and loop.time() < end and up.state == "connected":
            await asyncio.sleep(0.05)

    def _drop_offer(self) -> None:
        try:
            self.offer_path.unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ the trial of a new release
    async def _gate(self, pend: dict[str, Any]) -> None:
        app = self.app
        loop = asyncio.get_running_loop()
        trial_s = float(pend.get("trial_s") or self.s.trial_s)
        deadline = loop.time() + trial_s
        self.gate_checks = health.initial(app)
        log.warning(
            "release %s on trial (slot %s) for %.0f s: %s",
            pend.get("version"),
            self.slot,
            trial_s,
            ", ".join(self.gate_checks),
        )
        while not health.update(app, self.gate_checks, need_ack=True):
            if loop.time() >= deadline:
                failed = [k for k, ok in self.gate_checks.items() if not ok]
                log.error(
                    "release %s not healthy within %.0f s: %s; the launcher will roll back",
                    pend.get("version"),
                    trial_s,
                    ", ".join(failed),
                )
                return
            await asyncio.sleep(CHECK_PERIOD_S)
        if self.slot is not None and await asyncio.to_thread(self.slots.commit, self.slot):
            self._set(pend["deployment"], "success", version=pend.get("version"), counter=pend.get("counter"))
            self._drop_offer()
            log.warning("release %s committed (slot %s)", pend.get("version"), self.slot)
        else:
            log.error("commit of slot %s refused by the slot store", self.slot)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


def install(dl: Downlink, service: OtaService) -> None:
    dl.register("ota.offer", service.offer, SCHEMA, clock_free=True)


def ota_root() -> Path | None:
    r = os.environ.get("CABINET_OTA_ROOT")
    return Path(r) if r else None
