"""Staged OTA rollout planning (docs/ota-internals.md): pure, no I/O, `now` passed in.

Cohorts are deterministic: bucket(id) = sha256(id) mod 100 (the first 8 bytes, big endian).
A Plan splits the fleet into cumulative-percent waves (1, 10, 50, 100 by default); cabinets
tagged `canary_tag` join wave 1 whatever their bucket; include/exclude tag filters apply first.

A Rollout walks the plan for one deployment: `offers(now)` says whom to offer now, `on_status`
feeds the cabinets' verified status messages (the highest seq per cabinet wins, so duplicates and
reordering change nothing), `tick(now)` applies the per-cabinet timeout (hawkBit #693), the
abort rule (failures > max_failure_pct of finished, once min_cabinets finished) and the wave
gate (the whole wave finished, successes >= success_pct of it, soak_s since its last result).
Success counts only on "success" (sent after commit, hawkBit #3185) or "already_installed".
A cabinet's late terminal status overrides its timeout (its row tells the truth); a halt stays.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

FORMAT = 1
SUCCESS = frozenset({"success", "already_installed"})
FAILURE = frozenset({"failure", "rolled_back", "rejected"})
IN_PROGRESS = frozenset({"offered", "downloading", "downloaded", "installing", "restarting", "verifying", "deferred"})
STATES = SUCCESS | FAILURE | IN_PROGRESS
PENDING, SENT, TIMEOUT, REFUSED = "pending", "sent", "timeout", "refused"  # row states of ours, not reported
MAX_TEXT = 200


def bucket(cabinet_id: str) -> int:
    return int.from_bytes(hashlib.sha256(cabinet_id.encode()).digest()[:8], "big") % 100


def _tags(v: Any, what: str) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, Iterable) or not all(isinstance(t, str) and t for t in v):
        raise ValueError(f"{what}: a list of non-empty strings")
    return tuple(v)


class Plan:
    """The ordered waves of a fleet: `waves` (lists of ids), `wave_of`, `buckets`, `excluded`."""

    def __init__(
        self,
        cabinets: Mapping[str, Mapping[str, Any]],
        waves: Iterable[int] = (1, 10, 50, 100),
        canary_tag: str | None = "canary",
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
    ) -> None:
        pcts = list(waves)
        if (
            not pcts
            or any(type(p) is not int or not 1 <= p <= 100 for p in pcts)
            or any(b <= a for a, b in itertools.pairwise(pcts))
        ):
            raise ValueError(f"waves {pcts!r}: increasing whole percents in 1..100, e.g. 1,10,50,100")
        if not isinstance(cabinets, Mapping):
            raise ValueError("cabinets: a map id -> {tags, version}")
        self.pcts = tuple(pcts)
        self.canary_tag = canary_tag or None
        self.include_tags = _tags(include_tags, "include_tags")
        self.exclude_tags = _tags(exclude_tags, "exclude_tags")
        self.cabinets: dict[str, dict[str, Any]] = {}
        for cid, info in cabinets.items():
            if not isinstance(cid, str) or not cid:
                raise ValueError(f"cabinet id {cid!r}: a non-empty string")
            info = info or {}
            version = info.get("version")
            if version is not None and not isinstance(version, str):
                raise ValueError(f"cabinet {cid}: version must be a string or null")
            self.cabinets[cid] = {"tags": list(_tags(info.get("tags", ()), f"cabinet {cid} tags")), "version": version}
        self.buckets = {cid: bucket(cid) for cid in self.cabinets}
        self.excluded: list[str] = []
        self.waves: list[list[str]] = [[] for _ in self.pcts]
        for cid in sorted(self.cabinets):
            tags = set(self.cabinets[cid]["tags"])
            if (self.include_tags and not tags & set(self.include_tags)) or tags & set(self.exclude_tags):
                self.excluded.append(cid)
                continue
            b = self.buckets[cid]
            k = 0 if self.canary_tag in tags else next((i for i, p in enumerate(self.pcts) if b < p), None)
            if k is None:
                self.excluded.append(cid)  # beyond the last wave's percent
            else:
                self.waves[k].append(cid)
        for w in self.waves:
            w.sort(key=lambda c: (self.buckets[c], c))
        self.wave_of = {cid: k for k, w in enumerate(self.waves) for cid in w}

    def to_dict(self) -> dict[str, Any]:
        return {
            "cabinets": self.cabinets,
            "waves": list(self.pcts),
            "canary_tag": self.canary_tag,
            "include_tags": list(self.include_tags),
            "exclude_tags": list(self.exclude_tags),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(d["cabinets"], d["waves"], d.get("canary_tag"), d.get("include_tags", ()), d.get("exclude_tags", ()))


def _num(v: Any, what: str, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ValueError(f"{what} {v!r}: a number in {lo}..{hi}")
    return v


def _maybe_num(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _maybe_int(v: Any) -> bool:
    return v is None or (type(v) is int and v >= 0)


def _text(v: Any) -> str | None:
    return v[:MAX_TEXT] if isinstance(v, str) else None


class Rollout:
    """One deployment walking a Plan; see the module docstring. `state` is running, halted or done."""

    def __init__(
        self,
        plan: Plan,
        *,
        deployment: str,
        target: str,
        version: str,
        success_pct: float = 95,
        max_failure_pct: float = 10,
        min_cabinets: int = 5,
        cabinet_timeout_s: float = 3600,
        soak_s: float = 0,
        batch: int | None = None,
    ) -> None:
        for name, v in (("deployment", deployment), ("target", target), ("version", version)):
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name}: a non-empty string")
        self.plan, self.deployment, self.target, self.version = plan, deployment, target, version
        self.success_pct = _num(success_pct, "success_pct", 0, 100)
        self.max_failure_pct = _num(max_failure_pct, "max_failure_pct", 0, 100)
        self.min_cabinets = int(_num(min_cabinets, "min_cabinets", 0))
        self.cabinet_timeout_s = _num(cabinet_timeout_s, "cabinet_timeout_s", 0)
        self.soak_s = _num(soak_s, "soak_s", 0)
        if batch is not None and (type(batch) is not int or batch < 1):
            raise ValueError(f"batch {batch!r}: a positive int or None")
        self.batch = batch
        self.state: str = "running"
        self.reason: str | None = None
        self.wave = 0
        self.ignored: dict[str, int] = {}
        self.cab: dict[str, dict[str, Any]] = {
            cid: {
                "state": PENDING,
                "outcome": None,
                "reason": None,
                "version": plan.cabinets[cid]["version"],
                "seq": None,
                "percent": None,
                "offered_at": None,
                "finished_at": None,
            }
            for cid in plan.wave_of
        }

    # ------------------------------------------------------------------ inputs

    def offers(self, now: float) -> list[str]:
        """The cabinets to offer now (marked sent at `now`); none when halted, done or waiting."""
        if self.state != "running" or self.wave >= len(self.plan.waves):
            return []
        wave = self.plan.waves[self.wave]
        room = len(wave)
        if self.batch is not None:
            room = self.batch - sum(
                1 for c in wave if self.cab[c]["offered_at"] is not None and self.cab[c]["outcome"] is None
            )
        out: list[str] = []
        for cid in wave:
            if len(out) >= room:
                break
            r = self.cab[cid]
            if r["state"] == PENDING:
                r["state"], r["offered_at"] = SENT, now
                out.append(cid)
        return out

    def unanswered(self) -> list[str]:
        """Offered cabinets that never reported (to offer again after a restart: offers are idempotent)."""
        return [c for c, r in self.cab.items() if r["state"] == SENT]

    def _ignore(self, why: str) -> bool:
        self.ignored[why] = self.ignored.get(why, 0) + 1
        return False

    def on_status(self, cabinet: str, msg: Mapping[str, Any], now: float) -> bool:
        """Feed one verified status message; True when it changed the cabinet's row."""
        r = self.cab.get(cabinet)
        if r is None:
            return self._ignore("not_in_plan")
        if not isinstance(msg, Mapping) or msg.get("deployment") != self.deployment:
            return self._ignore("other_deployment")
        seq, state = msg.get("seq"), msg.get("state")
        if type(seq) is not int or seq < 0 or state not in STATES:
            return self._ignore("malformed")
        if r["seq"] is not None and seq <= r["seq"]:
            return self._ignore("stale")
        if r["outcome"] is not None and r["state"] != TIMEOUT and state in IN_PROGRESS:
            return self._ignore("after_terminal")
        r["seq"] = seq
        if r["offered_at"] is None:
            r["offered_at"] = now  # offered in an earlier run or by someone else: not offered again
        version = _text(msg.get("running")) or _text(msg.get("version"))
        if state in IN_PROGRESS:
            if r["outcome"] is None:  # a timed-out cabinet stays timed out until a terminal state
                r["state"], r["reason"] = state, _text(msg.get("reason"))
                p = msg.get("percent")
                r["percent"] = p if isinstance(p, (int, float)) and not isinstance(p, bool) else None
            return True
        r["state"], r["reason"], r["percent"] = state, _text(msg.get("reason")), None
        r["outcome"] = "success" if state in SUCCESS else "failure"
        r["finished_at"] = now
        if version:
            r["version"] = version
        return True

    def on_refused(self, cabinet: str, reason: str, now: float) -> bool:
        """The cabinet's signed reply refused the offer (e.g. kind_not_allowed): a failure."""
        r = self.cab.get(cabinet)
        if r is None or r["state"] != SENT:
            return self._ignore("refusal_ignored")
        r["state"], r["outcome"], r["finished_at"] = REFUSED, "failure", now
        r["reason"] = _text(reason) or "refused"
        return True

    # ------------------------------------------------------------------ decisions

    def tick(self, now: float) -> bool:
        """Timeouts, abort rule, wave gate; True when something changed."""
        if self.state != "running":
            return False
        changed = False
        for r in self.cab.values():
            if r["outcome"] is None and r["offered_at"] is not None and now - r["offered_at"] >= self.cabinet_timeout_s:
                r["state"], r["outcome"], r["finished_at"] = TIMEOUT, "failure", now
                r["reason"] = f"no terminal status within {self.cabinet_timeout_s:g} s"
                changed = True
        s = self.summary()
        finished, failed = s["success"] + s["failure"], s["failure"]
        if finished >= max(1, self.min_cabinets) and failed * 100 > self.max_failure_pct * finished:
            self.state = "halted"
            self.reason = f"failures {failed}/{finished} = {100 * failed / finished:.1f}% > {self.max_failure_pct:g}%"
            return True
        while self.wave < len(self.plan.waves):
            wave = [self.cab[c] for c in self.plan.waves[self.wave]]
            if any(r["outcome"] is None for r in wave):
                break
            ok = sum(1 for r in wave if r["outcome"] == "success")
            if wave and ok * 100 < self.success_pct * len(wave):
                self.state = "halted"
                self.reason = (
                    f"wave {self.wave + 1} below success threshold "
                    f"({ok}/{len(wave)} = {100 * ok / len(wave):.1f}% < {self.success_pct:g}%)"
                )
                return True
            if wave and now - max(r["finished_at"] for r in wave) < self.soak_s:
                break
            self.wave += 1
            changed = True
        if self.wave >= len(self.plan.waves):
            self.state, self.reason = "done", None
            return True
        return changed

    # ------------------------------------------------------------------ views

    def summary(self) -> dict[str, Any]:
        counts = {"pending": 0, "in_progress": 0, "success": 0, "failure": 0, "timeout": 0}
        for r in self.cab.values():
            if r["outcome"] is not None:
                counts[r["outcome"]] += 1
                counts["timeout"] += r["state"] == TIMEOUT
            else:
                counts["pending" if r["state"] == PENDING else "in_progress"] += 1
        waves = []
        for k, ids in enumerate(self.plan.waves):
            rows = [self.cab[c] for c in ids]
            waves.append(
                {
                    "wave": k + 1,
                    "pct": self.plan.pcts[k],
                    "cabinets": len(ids),
                    "offered": sum(r["offered_at"] is not None for r in rows),
                    "success": sum(r["outcome"] == "success" for r in rows),
                    "failure": sum(r["outcome"] == "failure" for r in rows),
                }
            )
        return {
            "deployment": self.deployment,
            "target": self.target,
            "version": self.version,
            "state": self.state,
            "reason": self.reason,
            "wave": min(self.wave + 1, len(self.plan.waves)),
            "waves": waves,
            "cabinets": len(self.cab),
            "excluded": len(self.plan.excluded),
            "ignored": dict(self.ignored),
            **counts,
        }

    def rows(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for k, ids in enumerate(self.plan.waves):
            for cid in ids:
                r = self.cab[cid]
                out.append(
                    {
                        "id": cid,
                        "wave": k + 1,
                        "bucket": self.plan.buckets[cid],
                        "state": r["state"],
                        "reason": r["reason"],
                        "version": r["version"],
                        "offered_at": r["offered_at"],
                        "finished_at": r["finished_at"],
                    }
                )
        return out

    # ------------------------------------------------------------------ persistence

    SETTINGS = (
        "deployment",
        "target",
        "version",
        "success_pct",
        "max_failure_pct",
        "min_cabinets",
        "cabinet_timeout_s",
        "soak_s",
        "batch",
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "plan": self.plan.to_dict(),
            **{k: getattr(self, k) for k in self.SETTINGS},
            "state": self.state,
            "reason": self.reason,
            "wave": self.wave,
            "ignored": dict(self.ignored),
            "cabinets": {c: dict(r) for c, r in self.cab.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rollout:
        """A saved rollout; ValueError when `d` is not one (wrong format, missing or odd fields)."""
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"rollout state format {d.get('format')!r}, expected {FORMAT}")
            ro = cls(Plan.from_dict(d["plan"]), **{k: d[k] for k in cls.SETTINGS})
            if (
                d["state"] not in ("running", "halted", "done")
                or type(d["wave"]) is not int
                or not 0 <= d["wave"] <= len(ro.plan.waves)
            ):
                raise ValueError("bad state or wave")
            saved = d["cabinets"]
            if set(saved) != set(ro.cab):
                raise ValueError("the saved cabinets do not match the plan")
            for cid, r in saved.items():
                if (
                    set(r) != set(ro.cab[cid])
                    or r["outcome"] not in (None, "success", "failure")
                    or not isinstance(r["state"], str)
                    or not _maybe_int(r["seq"])
                    or not all(_maybe_num(r[k]) for k in ("offered_at", "finished_at", "percent"))
                    or (r["outcome"] is not None and r["finished_at"] is None)
                    or (r["state"] != PENDING and r["offered_at"] is None)
                ):
                    raise ValueError(f"cabinet {cid}: bad record")
                ro.cab[cid] = dict(r)
            ro.state, ro.reason, ro.wave = d["state"], d["reason"], d["wave"]
            ro.ignored = {str(k): int(v) for k, v in d.get("ignored", {}).items()}
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a saved rollout: {type(e).__name__}: {e}") from None
        return ro
