"""The staged-rollout planner (tools/ota/rollout/plan.py), pure: buckets, waves, and a simulated
fleet of a few thousand cabinets with injected failure rates (seeded), as in the OTA
reference's test plan (§6 item 6)."""

from __future__ import annotations

import heapq
import json
import random
from collections import Counter
from typing import Any

import pytest

from tools.ota.rollout.plan import Plan, Rollout, bucket

DEP = "agent-0.9.0"
STEPS = ("offered", "downloading", "downloaded", "installing", "restarting", "verifying")


def fleet(n: int, *, canaries: int = 0, tag_every: int = 0) -> dict[str, dict]:
    out = {}
    for i in range(n):
        tags = ["canary"] if i < canaries else []
        if tag_every and i % tag_every == 0:
            tags.append("north")
        out[f"CAB-{i:05d}"] = {"tags": tags, "version": "0.8.0"}
    return out


class World:
    """Simulated cabinets: each one's fate and timing is drawn once per id from a seeded RNG
    (independent of the order offers arrive in); statuses are queued in time order."""

    def __init__(self, ids, *, fail=0.0, silent=0.0, seed=1, fail_state="rolled_back"):
        rng = random.Random(seed)
        self.fate = {}
        for cid in sorted(ids):
            x = rng.random()
            fate = fail_state if x < fail else "silent" if x < fail + silent else "success"
            self.fate[cid] = (fate, rng.uniform(120, 1500))
        self.queue: list = []
        self.n = 0
        self.offered_at: dict[str, list[float]] = {}

    def offer(self, cid, t):
        self.offered_at.setdefault(cid, []).append(t)
        fate, d = self.fate[cid]
        if fate == "silent":
            return
        states = [*STEPS, fate]
        for i, st in enumerate(states):
            msg = {
                "cabinet": cid,
                "deployment": DEP,
                "state": st,
                "seq": i + 1,
                "percent": 50 if st == "downloading" else None,
                "version": "0.9.0",
                "running": "0.9.0" if st == "success" else "0.8.0",
                "reason": "health gate" if st == "rolled_back" else None,
            }
            self.n += 1
            heapq.heappush(self.queue, (t + d * (i + 1) / len(states), self.n, cid, msg))

    def deliver(self, ro, t):
        while self.queue and self.queue[0][0] <= t:
            _, _, cid, msg = heapq.heappop(self.queue)
            ro.on_status(cid, msg, t)


def run(ro, world, *, t=0.0, until=10 * 86400, step=30.0, stop_at=None):
    """Drive the rollout until it stops (or sim time `stop_at`); returns (t, offers made after a halt)."""
    late = []
    while t <= until:
        world.deliver(ro, t)
        ro.tick(t)
        ids = ro.offers(t)
        if ro.state != "running":
            late += ids
            break
        for cid in ids:
            world.offer(cid, t)
        if stop_at is not None and t >= stop_at:
            return t, late
        t += step
    late += ro.offers(t + 1e6)
    return t, late


def rollout(cabs, **kw):
    plan_kw = {k: kw.pop(k) for k in ("waves", "canary_tag", "include_tags", "exclude_tags") if k in kw}
    return Rollout(Plan(cabs, **plan_kw), deployment=DEP, target="cabinet-agent-0.9.0.bundle", version="0.9.0", **kw)


# ---------------------------------------------------------------------- buckets and waves


def test_buckets_are_deterministic_and_uniform():
    ids = [f"CAB-{i:05d}" for i in range(10_000)]
    assert [bucket(c) for c in ids] == [bucket(c) for c in ids]
    assert all(0 <= bucket(c) < 100 for c in ids)
    counts = Counter(bucket(c) for c in ids)
    chi2 = sum((counts[b] - 100) ** 2 / 100 for b in range(100))
    assert chi2 < 160, chi2  # 99 degrees of freedom: p(chi2 > 160) is about 1e-4 for a uniform hash
    assert bucket("CAB-00001") == int.from_bytes(__import__("hashlib").sha256(b"CAB-00001").digest()[:8], "big") % 100


def test_waves_partition_the_fleet_cumulatively():
    cabs = fleet(3000)
    plan = Plan(cabs)
    seen = [c for w in plan.waves for c in w]
    assert sorted(seen) == sorted(cabs) and len(seen) == len(set(seen))
    for k, w in enumerate(plan.waves):
        lo = plan.pcts[k - 1] if k else 0
        assert all(lo <= bucket(c) < plan.pcts[k] for c in w)
    assert 10 <= len(plan.waves[0]) <= 60 and 1200 <= len(plan.waves[3]) <= 1800
    assert Plan(dict(reversed(list(cabs.items())))).waves == plan.waves  # input order does not matter


def test_canaries_come_first_and_tag_filters_apply():
    cabs = fleet(500, canaries=3, tag_every=5)
    cabs["CAB-00001"]["tags"].append("museum")
    plan = Plan(cabs, exclude_tags=["museum"])
    assert {"CAB-00000", "CAB-00002"} <= set(plan.waves[0])
    assert "CAB-00001" in plan.excluded and "CAB-00001" not in plan.wave_of
    north = Plan(cabs, include_tags=["north"])
    assert set(north.wave_of) == {c for c, i in cabs.items() if "north" in i["tags"]}
    assert "CAB-00000" in north.waves[0]  # canary and north
    partial = Plan(cabs, waves=[5, 20])
    assert all(bucket(c) >= 20 for c in partial.excluded)
    for bad in ([], [10, 5], [0, 100], [50, 101], [1.5]):
        with pytest.raises(ValueError):
            Plan(cabs, waves=bad)  # type: ignore[arg-type]  # [1.5]: not an int, on purpose
    with pytest.raises(ValueError):
        Plan({"A": {"tags": "canary"}})


# ---------------------------------------------------------------------- simulated fleets


def test_a_good_release_goes_through_every_wave():
    cabs = fleet(3000, canaries=5)
    ro = rollout(cabs)
    world = World(cabs, fail=0.005, seed=7)
    _, late = run(ro, world)
    s = ro.summary()
    assert ro.state == "done", ro.reason
    assert late == []
    assert s["success"] + s["failure"] == 3000 == len(world.offered_at)
    assert s["failure"] == sum(1 for f, _ in world.fate.values() if f != "success") > 0
    assert [w["offered"] for w in s["waves"]] == [len(w) for w in ro.plan.waves]
    # wave k+1 was offered only after every cabinet of wave k had finished
    rows = ro.rows()
    for k in range(1, 4):
        first_next = min(r["offered_at"] for r in rows if r["wave"] == k + 1)
        assert first_next >= max(r["finished_at"] for r in rows if r["wave"] == k)
    assert {r["version"] for r in rows if r["state"] == "success"} == {"0.9.0"}


def test_a_broken_release_halts_early_and_offers_nothing_more():
    cabs = fleet(3000, canaries=5)
    ro = rollout(cabs)
    world = World(cabs, fail=0.30, seed=3)
    _, late = run(ro, world)
    s = ro.summary()
    assert ro.state == "halted" and ro.reason.startswith("failures ")
    assert late == [] and ro.offers(10**9) == []
    assert s["wave"] in (1, 2)
    assert s["success"] + s["failure"] >= ro.min_cabinets
    assert s["failure"] * 100 > ro.max_failure_pct * (s["success"] + s["failure"])
    assert len(world.offered_at) <= len(ro.plan.waves[0]) + len(ro.plan.waves[1])
    assert not any(ro.plan.wave_of[c] >= 2 for c in world.offered_at)


def test_a_wave_below_the_success_threshold_halts_at_the_gate():
    cabs = fleet(2000, canaries=0)
    # the abort rule is off (max 100%), but wave 1 ends below 95%
    ro = rollout(cabs, max_failure_pct=100)
    world = World(cabs, fail=0.2, seed=11)
    run(ro, world)
    assert ro.state == "halted" and ro.reason.startswith("wave 1 below success threshold"), ro.reason
    assert all(r["offered_at"] is None for r in ro.rows() if r["wave"] > 1)


def test_silent_cabinets_time_out_as_failures():
    cabs = fleet(400)
    ro = rollout(cabs, cabinet_timeout_s=3600, max_failure_pct=50, success_pct=50)
    world = World(cabs, silent=0.1, seed=5)
    run(ro, world)
    rows = {r["id"]: r for r in ro.rows()}
    silent = [c for c, (f, _) in world.fate.items() if f == "silent" and c in world.offered_at]
    assert silent
    for c in silent:
        r = rows[c]
        assert r["state"] == "timeout" and r["finished_at"] - r["offered_at"] >= 3600
    assert ro.summary()["timeout"] == len(silent)
    assert ro.state == "done"


def test_a_silent_canary_blocks_then_halts_the_wave():
    cabs = {"A": {"tags": ["canary"]}, "B": {"tags": []}}
    ro = rollout(cabs, waves=[1, 100], cabinet_timeout_s=600, min_cabinets=5)
    ro.tick(0)
    assert ro.offers(0) == ["A"]
    assert ro.offers(1) == []
    ro.on_status("A", {"deployment": DEP, "state": "downloading", "seq": 1, "percent": 10}, 100)
    ro.tick(599)
    assert ro.state == "running" and ro.offers(599) == []
    ro.on_status("A", {"deployment": DEP, "state": "downloading", "seq": 2, "percent": 20}, 599)
    ro.tick(600)  # in-progress reports do not reset the clock
    assert ro.state == "halted" and "wave 1" in ro.reason
    assert ro.rows()[0]["state"] == "timeout"


def test_statuses_are_idempotent_and_order_free():
    cabs = fleet(300)
    world = World(cabs, fail=0.02, seed=9)
    ref = rollout(cabs, max_failure_pct=50, success_pct=80)
    run(ref, world)

    class Noisy(World):
        last: dict[str, dict[str, Any]]  # cabinet -> the newest status delivered (set below)

        def deliver(self, ro, t):
            batch = []
            while self.queue and self.queue[0][0] <= t:
                batch.append(heapq.heappop(self.queue))
            rng = random.Random(int(t))
            batch = batch + rng.sample(batch, len(batch) // 2)  # duplicates
            rng.shuffle(batch)  # and out of order within a step
            for _, _, cid, msg in batch:
                ro.on_status(cid, msg, t)
            # a retained re-send of everything delivered so far changes nothing
            for cid, msg in list(self.last.items()):
                ro.on_status(cid, msg, t)
            for _, _, cid, msg in batch:
                if msg["seq"] > self.last.get(cid, {"seq": 0})["seq"]:
                    self.last[cid] = msg

    noisy = Noisy(cabs, fail=0.02, seed=9)
    noisy.last = {}
    ro = rollout(cabs, max_failure_pct=50, success_pct=80)
    run(ro, noisy)
    assert ro.state == ref.state == "done"
    strip = [{k: r[k] for k in ("id", "state", "version")} for r in ro.rows()]
    assert strip == [{k: r[k] for k in ("id", "state", "version")} for r in ref.rows()]
    assert ro.summary()["ignored"]["stale"] > 0


def test_only_success_after_commit_counts():
    ro = rollout({"A": {"tags": ["canary"]}}, waves=[100], min_cabinets=1)
    ro.offers(0)
    for seq, st in enumerate(["downloaded", "installing", "restarting", "verifying"], 1):
        ro.on_status("A", {"deployment": DEP, "state": st, "seq": seq}, seq)
        ro.tick(seq)
        assert ro.summary()["success"] == 0 and ro.state == "running"
    ro.on_status("A", {"deployment": DEP, "state": "rolled_back", "seq": 5, "reason": "crash loop"}, 5)
    ro.tick(5)
    assert ro.summary()["failure"] == 1 and ro.state == "halted"


def test_other_deployments_and_junk_are_ignored():
    ro = rollout({"A": {"tags": []}}, waves=[100])
    ro.offers(0)
    assert not ro.on_status("A", {"deployment": "older", "state": "success", "seq": 9}, 1)
    assert not ro.on_status("Z", {"deployment": DEP, "state": "success", "seq": 9}, 1)
    junks: list[Any] = [
        {"deployment": DEP, "state": "won", "seq": 1},
        {"deployment": DEP, "state": "success", "seq": "1"},
        {"deployment": DEP, "state": "success", "seq": -1},
        {"deployment": DEP, "state": "success", "seq": True},
        None,
        [],
    ]
    for junk in junks:
        assert not ro.on_status("A", junk, 1)
    assert ro.summary()["ignored"] == {"other_deployment": 3, "not_in_plan": 1, "malformed": 4}
    assert ro.rows()[0]["state"] == "sent"
    assert ro.on_status("A", {"deployment": DEP, "state": "already_installed", "seq": 1}, 2)
    ro.tick(2)
    assert ro.state == "done"


def test_batch_limits_offers_in_flight_and_refusals_fail():
    cabs = fleet(50)
    ro = rollout(cabs, waves=[100], batch=4, max_failure_pct=100, success_pct=0)
    first = ro.offers(0)
    assert len(first) == 4 and ro.offers(0) == []
    ro.on_refused(first[0], "kind_not_allowed", 1)
    assert len(ro.offers(1)) == 1
    assert ro.rows()[[r["id"] for r in ro.rows()].index(first[0])]["state"] == "refused"
    assert ro.unanswered() == [c for c in ro.cab if ro.cab[c]["state"] == "sent"]


@pytest.mark.parametrize("fail", [0.005, 0.3])
def test_save_and_resume_mid_rollout_gives_the_same_outcome(fail):
    cabs = fleet(2500, canaries=4)
    ref = rollout(cabs, soak_s=600)
    end, _ = run(ref, World(cabs, fail=fail, seed=21))
    world = World(cabs, fail=fail, seed=21)
    ro = rollout(cabs, soak_s=600)
    t, _ = run(ro, world, stop_at=end // 60 * 30)  # half way, on a step
    assert ro.state == "running" and ro.summary()["success"] + ro.summary()["failure"] > 0
    saved = json.loads(json.dumps(ro.to_dict()))
    resumed = Rollout.from_dict(saved)
    assert resumed.to_dict() == ro.to_dict()
    run(resumed, world, t=t + 30)
    assert (resumed.state, resumed.reason) == (ref.state, ref.reason)
    assert resumed.rows() == ref.rows() and resumed.summary() == ref.summary()


def test_from_dict_refuses_junk():
    ro = rollout(fleet(20))
    d = ro.to_dict()
    for bad in (
        {},
        {**d, "format": 2},
        {**d, "state": "maybe"},
        {**d, "wave": 9},
        {**d, "cabinets": {}},
        {**d, "plan": {"cabinets": {}, "waves": [1]}},
        {**d, "success_pct": 150},
        {**d, "cabinets": {**d["cabinets"], "CAB-00003": {**d["cabinets"]["CAB-00003"], "offered_at": "x"}}},
        {**d, "cabinets": {**d["cabinets"], "CAB-00003": {**d["cabinets"]["CAB-00003"], "outcome": "success"}}},
    ):
        with pytest.raises(ValueError):
            Rollout.from_dict(bad)
