"""The deployment status record at <root>/state/status.json (docs/ota-internals.md, Status).

Owns the states, the transition rules, the `seq` counter, a bounded history and the
delivery mark a sender uses to re-send the latest undelivered record after a reboot.
Rules: a terminal state is never left except by a new deployment; percent only for
downloading (0..100); a reason for failure, rolled_back, deferred, rejected; setting the
same state (and percent and reason) again changes nothing. Writes are atomic (ota.fsutil).
A corrupt file is moved to .bad and the book starts afresh with seq above the old one
(or above the wall-clock second when the old seq is unreadable). Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from ota import fsutil
from ota.fsutil import CorruptFile

log = logging.getLogger("ota.status")

STATES = (
    "offered",
    "downloading",
    "downloaded",
    "installing",
    "restarting",
    "verifying",
    "success",
    "failure",
    "rolled_back",
    "deferred",
    "rejected",
    "already_installed",
)
TERMINAL = frozenset({"success", "failure", "rolled_back", "rejected", "already_installed"})
NEEDS_REASON = frozenset({"failure", "rolled_back", "deferred", "rejected"})
HISTORY = 20
RECORD_KEYS = ("deployment", "state", "seq", "percent", "reason", "version", "counter", "t")


DEPLOYMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEPLOYMENT_RULE = "1..64 letters, digits, '.', '_' or '-', the first a letter or digit"


def check_deployment(deployment: object) -> str:
    """A deployment id as cabinets accept it (DEPLOYMENT_RULE); ValueError naming the rule."""
    if not isinstance(deployment, str) or not DEPLOYMENT_RE.fullmatch(deployment):
        raise ValueError(f"deployment id {deployment!r}: {DEPLOYMENT_RULE}")
    return deployment


class StatusError(ValueError):
    """A status change that the rules refuse."""


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_record(r: dict) -> None:
    if not isinstance(r, dict) or any(k not in r for k in RECORD_KEYS):
        raise ValueError(f"record needs {RECORD_KEYS}")
    if not isinstance(r["deployment"], str) or not r["deployment"]:
        raise ValueError("deployment: not a non-empty string")
    if r["state"] not in STATES:
        raise ValueError(f"state: {r['state']!r} unknown")
    if not isinstance(r["seq"], int) or isinstance(r["seq"], bool) or r["seq"] < 1:
        raise ValueError("seq: not an int >= 1")
    if r["percent"] is not None and not (_num(r["percent"]) and 0 <= r["percent"] <= 100):
        raise ValueError("percent: not 0..100")
    if r["reason"] is not None and not isinstance(r["reason"], str):
        raise ValueError("reason: not a string")
    if r["counter"] is not None and not (isinstance(r["counter"], int) and r["counter"] >= 0):
        raise ValueError("counter: not an int >= 0")
    if r["version"] is not None and not isinstance(r["version"], str):
        raise ValueError("version: not a string")
    if not _num(r["t"]):
        raise ValueError("t: not a number")


def validate(doc) -> None:
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise ValueError("not a format 1 object")
    if doc["record"] is not None:
        _check_record(doc["record"])
    if not isinstance(doc["delivered_seq"], int) or not isinstance(doc["seq"], int):
        raise ValueError("seq/delivered_seq: not ints")
    if not isinstance(doc["history"], list) or len(doc["history"]) > HISTORY:
        raise ValueError(f"history: not a list of at most {HISTORY}")
    for h in doc["history"]:
        if not isinstance(h, dict) or h.get("state") not in STATES:
            raise ValueError("history: bad entry")


class StatusBook:
    """status.json: the current deployment record, history and delivery mark."""

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)

    def _load(self) -> dict:
        try:
            doc = fsutil.read_json(self.path, validate)
        except CorruptFile as e:
            log.error("status.json corrupt (%s); moved aside, starting afresh", e.why)
            base = int(time.time())
            try:
                base = max(base, int(json.loads(self.path.read_text())["seq"]))
            except Exception:  # noqa: BLE001 - the seq of a corrupt file is a best effort (even RecursionError)
                pass
            fsutil.move_aside(self.path)
            doc = {"format": 1, "record": None, "seq": base, "delivered_seq": base, "history": []}
            self._save(doc)
            return doc
        if doc is None:
            return {"format": 1, "record": None, "seq": 0, "delivered_seq": 0, "history": []}
        return doc

    def _save(self, doc: dict) -> None:
        fsutil.makedirs(self.path.parent)
        fsutil.write_json_atomic(self.path, doc)

    def current(self) -> dict | None:
        """The latest record (None when there is none)."""
        return self._load()["record"]

    def history(self) -> list[dict]:
        return self._load()["history"]

    def set(
        self,
        deployment: str,
        state: str,
        *,
        percent: float | None = None,
        reason: str | None = None,
        version: str | None = None,
        counter: int | None = None,
        t: float,
    ) -> dict:
        """Move deployment to state (see the module rules); the record after."""
        if not isinstance(deployment, str) or not deployment:
            raise StatusError("deployment must be a non-empty string")
        if state not in STATES:
            raise StatusError(f"unknown state {state!r}")
        if percent is not None and state != "downloading":
            raise StatusError("percent is only for downloading")
        if percent is not None and not (_num(percent) and 0 <= percent <= 100):
            raise StatusError("percent must be 0..100")
        if state in NEEDS_REASON and not (isinstance(reason, str) and reason):
            raise StatusError(f"{state} needs a reason")
        doc = self._load()
        old = doc["record"]
        same = old is not None and old["deployment"] == deployment
        if same and old["state"] in TERMINAL:
            if old["state"] == state:
                return old
            raise StatusError(f"{deployment} is already {old['state']} (terminal)")
        if same and (old["state"], old["percent"], old["reason"]) == (state, percent, reason):
            return old
        doc["seq"] += 1
        rec = {
            "deployment": deployment,
            "state": state,
            "seq": doc["seq"],
            "percent": percent,
            "reason": reason,
            "version": version if version is not None or not same else old["version"],
            "counter": counter if counter is not None or not same else old["counter"],
            "t": t,
        }
        _check_record(rec)
        doc["record"] = rec
        doc["history"] = (
            doc["history"] + [{k: rec[k] for k in ("deployment", "state", "seq", "percent", "reason", "t")}]
        )[-HISTORY:]
        self._save(doc)
        return rec

    def undelivered(self) -> dict | None:
        """The latest record when it has not been marked delivered (re-send it)."""
        doc = self._load()
        r = doc["record"]
        return r if r is not None and r["seq"] > doc["delivered_seq"] else None

    def mark_delivered(self, seq: int) -> None:
        doc = self._load()
        if seq > doc["delivered_seq"]:
            doc["delivered_seq"] = min(seq, doc["seq"])
            self._save(doc)
