"""ota.slots on real files, real venvs and real pip: install, trial, commit, rollback, gc,
recovery, a SIGKILL before every persisted step and a power cut before every write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ota import fsutil
from ota.slots import SlotError, SlotStore, validate_state
from tests import ota_fake

V1, V2 = "1-1.0.0", "2-2.0.0"

pytestmark = pytest.mark.integration  # real venvs and pip, slot pythons and killed children in subprocesses


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Bundles v1 (dep 1.0), v2 (dep 2.0: a new store entry), v3 (dep 2.0) and a base root
    holding v1 bootstrapped (committed)."""
    base = tmp_path_factory.mktemp("slots")
    pip = ota_fake.pip_wheel(tmp_path_factory.getbasetemp() / "pipcache")
    b = {}
    for name, ver, counter, dep in (
        ("v1", "1.0.0", 1, "1.0"),
        ("v2", "2.0.0", 2, "2.0"),
        ("v3", "3.0.0", 3, "2.0"),
        ("v4", "4.0.0", 4, "2.0"),
    ):
        b[name] = ota_fake.make_bundle(base / name, pip, version=ver, counter=counter, dep_version=dep)
    root = base / "root"
    SlotStore(root).bootstrap(*b["v1"])
    return {"bundles": b, "root": root, "pip": pip, "base": base}


def clone(src: Path, dst: Path) -> Path:
    """A copy of an OTA root whose slots use the copy's store (the .pth names are absolute).
    Files are hard links (fast): the OTA code never rewrites a published file in place."""
    src = Path(src)
    shutil.copytree(
        src, dst, symlinks=True, copy_function=os.link, ignore=lambda d, names: ["state"] if Path(d) == src else []
    )
    shutil.copytree(src / "state", dst / "state")  # real copies: tests write these in place
    for pth in dst.glob("releases/*/lib/python3*/site-packages/_cabinet_deps.pth"):
        text = pth.read_text().replace(str(src.absolute()), str(dst.absolute()))
        pth.unlink()
        pth.write_text(text)
    return dst


@pytest.fixture
def root(kit, tmp_path):
    return clone(kit["root"], tmp_path / "root")


def slot_python(store: SlotStore, code: str) -> str:
    r = subprocess.run(
        [str(store.link / "bin" / "python"), "-I", "-c", code],
        capture_output=True,
        text=True,
        cwd=store.root,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def trial(store, kit, name="v2", **kw):
    _, m = kit["bundles"][name]
    slot = store.install(*kit["bundles"][name])
    store.begin_trial(
        slot, counter=m["counter"], version=m["version"], deployment="dep-" + name, trial_s=kw.pop("trial_s", 30), **kw
    )
    return slot


def test_install_trial_commit_gc(root, kit):
    s = SlotStore(root)
    assert s.current_slot() == V1 and s.state()["high_water"] == 1
    assert slot_python(s, "import agent, fakedep; print(agent.__version__, fakedep.__file__)").startswith(
        "1.0.0 " + str(root / "store")
    )
    stores = set(os.listdir(root / "store"))
    slot = trial(s, kit, max_attempts=2, watchdog_s=5)
    assert slot == V2 and s.current_slot() == V2
    st = s.state()
    assert st["high_water"] == 1, "high_water is raised at commit, never before"
    assert st["pending"]["from"] == V1 and st["pending"]["attempts"] == 0
    assert len(set(os.listdir(root / "store")) - stores) == 1, "one new dependency wheel"
    assert slot_python(s, "import agent; print(agent.__version__)") == "2.0.0"
    script = root / "releases" / V2 / "bin" / "cabinet-fake"  # its shebang names the slot
    assert script.read_text().startswith(f"#!{root / 'releases' / V2}/bin/python")
    assert subprocess.run([script], capture_output=True, text=True).stdout.strip() == "2.0.0"
    assert s.note_start()["pending"]["attempts"] == 1
    assert s.state()["pending"]["attempts"] == 1
    assert s.commit(V2) is True
    st = s.state()
    assert (st["last_good"], st["previous_good"], st["high_water"], st["pending"]) == (V2, V1, 2, None)
    assert st["last_outcome"]["result"] == "committed"
    assert s.commit(V2) is True, "a repeated commit (after a crash) is answered, not refused"
    # v3 and v4 share dep 2.0; committing v4 drops v1, v2 and dep 1.0 (unreferenced)
    for name, want in (("v3", "3-3.0.0"), ("v4", "4-4.0.0")):
        assert trial(s, kit, name) == want and s.commit(want)
    assert sorted(s.slots()) == ["3-3.0.0", "4-4.0.0"]
    left = set(os.listdir(root / "store"))
    assert len(left) == 3, left  # fakedep 2.0, ota, the unpacked installer
    assert slot_python(s, "import fakedep; print(fakedep.VALUE)") == "dep-ok"


def test_rollback_keeps_high_water_and_refuses_late_commit(root, kit):
    s = SlotStore(root)
    trial(s, kit)
    assert s.rollback("health_deadline: test", slot="9-9.9") is None, "not the pending slot"
    assert s.rollback("health_deadline: test") == V1
    st = s.state()
    assert s.current_slot() == V1 and st["current"] == V1 and st["pending"] is None
    assert st["high_water"] == 1 and st["last_outcome"]["result"] == "rolled_back"
    assert st["last_outcome"]["reason"] == "health_deadline: test"
    assert s.commit(V2) is False
    assert s.rollback("again") is None


def test_guards(root, kit):
    s = SlotStore(root)
    slot = s.install(*kit["bundles"]["v2"])
    with pytest.raises(SlotError) as e:
        s.begin_trial(slot, counter=3, version="2.0.0", deployment="d", trial_s=5)
    assert e.value.reason == "manifest_mismatch"
    with pytest.raises(SlotError) as e:
        s.begin_trial(V1, counter=1, version="1.0.0", deployment="d", trial_s=5)
    assert e.value.reason == "counter_not_newer"
    assert s.commit(slot) is False, "nothing pending"
    s.begin_trial(slot, counter=2, version="2.0.0", deployment="d", trial_s=5)
    s.begin_trial(slot, counter=2, version="2.0.0", deployment="d", trial_s=5)  # idempotent
    s3 = s.install(*kit["bundles"]["v3"])
    with pytest.raises(SlotError) as e:
        s.begin_trial(s3, counter=3, version="3.0.0", deployment="d3", trial_s=5)
    assert e.value.reason == "trial_in_progress"
    assert s.commit(s3) is False


def test_install_is_idempotent_and_reuses_the_store(root, kit):
    s = SlotStore(root)
    s.install(*kit["bundles"]["v2"])
    steps = []
    fsutil.FAULTS.hook = lambda op, path: steps.append(op)
    try:
        assert s.install(*kit["bundles"]["v2"]) == V2
    finally:
        fsutil.FAULTS.hook = None
    assert steps == [], "a complete slot is reused without touching anything"


def test_install_failures_leave_nothing_recover_does_not_clean(root, kit, tmp_path):
    s = SlotStore(root)
    bdir, m = kit["bundles"]["v2"]
    bad = json.loads(json.dumps(m))
    bad["wheels"][m["project_wheel"]]["sha256"] = "0" * 64
    with pytest.raises(SlotError) as e:
        s.install(bdir, bad)
    assert e.value.reason == "wheel_hash"
    # a manifest whose version is not what the agent says: the smoke test catches it
    lying = dict(m, version="2.0.1")
    with pytest.raises(SlotError) as e:
        s.install(bdir, lying)
    assert e.value.reason == "smoke_version" and "2.0.0" in e.value.detail
    # a broken project wheel: pip fails and its stderr is in the error
    copy = tmp_path / "broken"
    shutil.copytree(bdir, copy)
    (copy / "wheels" / m["project_wheel"]).write_bytes(b"not a zip")
    broken = json.loads(json.dumps(m))
    broken["wheels"][m["project_wheel"]]["sha256"] = ota_fake.sha256(copy / "wheels" / m["project_wheel"])
    with pytest.raises(SlotError) as e:
        s.install(copy, broken)
    assert e.value.reason == "pip_project" and "exit" in e.value.detail
    assert (root / "releases" / f"{V2}.tmp").exists()
    assert any("removed releases" in x for x in s.recover())
    assert not any(p.name.endswith(".tmp") for p in (root / "releases").iterdir())
    assert s.current_slot() == V1 and s.install(bdir, m) == V2


def test_corrupt_state_is_moved_aside_and_rebuilt(root, kit, caplog):
    s = SlotStore(root)
    for garbage in (b"{not json", b'{"format": 1}', json.dumps(dict(s.state(), high_water="x")).encode()):
        s.state_path.write_bytes(garbage)
        st = s.state()
        assert (st["current"], st["last_good"], st["high_water"]) == (V1, V1, 1)
        validate_state(json.loads(s.state_path.read_text()))
    assert len(list((root / "state").glob("ota.json.bad*"))) == 3
    assert "ota.json corrupt" in caplog.text


def test_recover_repairs_link_and_pending(root, kit):
    s = SlotStore(root)
    os.unlink(s.link)
    assert s.recover() == [f"current -> {V1}"] and s.current_slot() == V1
    os.unlink(s.link)
    os.symlink("releases/7-gone", s.link)
    s.recover()
    assert s.current_slot() == V1
    os.symlink("releases/x", root / "current.tmp")
    assert "removed current.tmp" in s.recover()

    # pending persisted, the switch never happened: recover finishes it (roll forward)
    def cut(op, path):
        if op == "symlink":
            raise OSError("power cut")

    fsutil.FAULTS.hook = cut
    try:
        with pytest.raises(OSError):
            trial(s, kit)
    finally:
        fsutil.FAULTS.hook = None
    assert s.current_slot() == V1 and s.state()["pending"]["slot"] == V2
    s.recover()
    assert s.current_slot() == V2 and s.state()["pending"]["slot"] == V2
    # a pending slot that lost its .complete is dropped
    s.rollback("test")
    st = s.state()
    st.update(
        pending={
            "slot": V2,
            "from": V1,
            "counter": 2,
            "version": "2.0.0",
            "deployment": "d",
            "attempts": 0,
            "max_attempts": 3,
            "trial_s": 5,
            "watchdog_s": None,
        },
        current=V2,
    )
    s._save(st)
    os.unlink(root / "releases" / V2 / ".complete")
    s.recover()
    st = s.state()
    assert s.current_slot() == V1 and st["pending"] is None
    assert st["last_outcome"]["reason"] == "install_interrupted"


# ---- interrupted at every step ------------------------------------------------------
def sequence(store: SlotStore, bundle) -> None:
    """install -> begin_trial -> note_start -> commit, resuming whatever is done already."""
    bdir, m = bundle
    slot = store.install(bdir, m)
    st = store.state()
    if st["last_good"] != slot:
        store.begin_trial(slot, counter=m["counter"], version=m["version"], deployment="d2", trial_s=30)
        store.note_start()
        assert store.commit(slot)


def check_invariants(root: Path, bundles) -> str:
    """After recovery: a complete, importable release, a valid state, old-or-new, no mix."""
    s = SlotStore(root)
    st = json.loads(s.state_path.read_text())
    validate_state(st)
    cur = s.current_slot()
    assert cur is not None
    assert cur == st["current"] and s.is_complete(cur)
    manifests = {V1: bundles["v1"][1], V2: bundles["v2"][1]}
    assert s.manifest(cur) == manifests[cur]
    assert not os.path.lexists(root / "current.tmp")
    assert not [p for d in ("releases", "store") for p in os.listdir(root / d) if p.endswith(".tmp")]
    old = (cur, st["last_good"], st["high_water"], st["pending"]) == (V1, V1, 1, None)
    pending = (
        cur == V2 and st["last_good"] == V1 and st["high_water"] == 1 and st["pending"] and st["pending"]["slot"] == V2
    )
    new = (cur, st["last_good"], st["previous_good"], st["high_water"], st["pending"]) == (V2, V2, V1, 2, None)
    assert old or pending or new, st
    want = manifests[cur]["version"]
    assert slot_python(s, "import agent; print(agent.__version__)") == want
    return "old" if old else "pending" if pending else "new"


def fingerprint(root: Path) -> str:
    """What recovery left: the slot and store names, the link and ota.json without times."""
    st = json.loads((root / "state" / "ota.json").read_text())
    if st["last_outcome"]:
        st["last_outcome"].pop("t")
    return json.dumps(
        [sorted(os.listdir(root / "releases")), sorted(os.listdir(root / "store")), os.readlink(root / "current"), st],
        sort_keys=True,
    )


def cut_at(k: int, label: str = ""):
    """A fault hook that raises before its k-th step (0-based)."""
    budget = [k]

    def cut(op, path):
        if budget[0] == 0:
            raise OSError(f"power cut before step {label or k} ({op} {path})")
        budget[0] -= 1

    return cut


def run_cut(root: Path, bundle, k: int, label: str = "") -> bool:
    """The sequence on root with a power cut before step k; True when it was cut."""
    fsutil.FAULTS.hook = cut_at(k, label)
    try:
        sequence(SlotStore(root), bundle)
        return False
    except (OSError, SlotError) as e:
        assert "power cut" in str(e), e
        return True
    finally:
        fsutil.FAULTS.hook = None


def test_power_cut_before_every_step(kit, tmp_path):
    """Raise before step k, for every k of install + begin_trial + commit; recover; check;
    then the same sequence again must end committed. To save pip runs, step k starts from a
    snapshot cut at an earlier boundary b (the new dependency stored; the slot installed)
    with a cut at k - b: the same files, since a cut only stops what comes after it."""
    bundle = kit["bundles"]["v2"]
    ops = []
    probe = clone(kit["root"], tmp_path / "probe")
    fsutil.FAULTS.hook = lambda op, path: ops.append(op)
    try:
        s = SlotStore(probe)
        s.install(*bundle)
        n_install = len(ops)
        sequence(s, bundle)
    finally:
        fsutil.FAULTS.hook = None
    venv = ops.index("run", ops.index("run") + 1)  # after the dependency's pip run
    assert ops[0] == "run" and "symlink" in ops and "replace" in ops
    snaps = {0: kit["root"]}
    for b in (venv, n_install):
        snaps[b] = clone(kit["root"], tmp_path / f"snap{b}")
        assert run_cut(snaps[b], bundle, b)
    seen, finished = set(), set()
    for k in range(len(ops) + 1):
        b = max(x for x in snaps if x <= k)
        root = clone(snaps[b], tmp_path / f"k{k}")
        assert run_cut(root, bundle, k - b, str(k)) == (k < len(ops))
        SlotStore(root).recover()
        seen.add(check_invariants(root, kit["bundles"]))
        key = fingerprint(root)
        if key not in finished:  # the same recovered state needs finishing only once
            finished.add(key)
            sequence(SlotStore(root), bundle)
            assert check_invariants(root, kit["bundles"]) == "new"
        shutil.rmtree(root)
    assert seen == {"old", "pending", "new"}
    assert len(finished) >= 5


KILLER = r"""
import json, os, signal, sys
from pathlib import Path
from ota import fsutil
from ota.slots import SlotStore
import tests.test_ota_slots as t
root, bundle, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
n = [0]
def hook(op, path):
    if op in ("replace", "rename", "symlink", "rmtree", "unlink"):
        n[0] += 1
        if n[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
fsutil.FAULTS.hook = hook
m = json.loads((bundle / "manifest.json").read_text())
SlotStore(root).install(bundle, m)
n_install = n[0]
t.sequence(SlotStore(root), (bundle, m))
print(n_install, n[0])
"""


def test_sigkill_before_every_persisted_step(kit, tmp_path):
    """A real process performs install -> trial -> commit and SIGKILLs itself before each
    step that publishes something (rename, replace, symlink, unlink, rmtree), and once not
    at all. Kills after the install start from a root where it is complete (install is
    idempotent: it publishes nothing then)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))

    def run(root, kill_at):
        return subprocess.run(
            [sys.executable, "-c", KILLER, str(root), str(kit["bundles"]["v2"][0]), str(kill_at)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    probe = clone(kit["root"], tmp_path / "probe")
    r = run(probe, 0)
    assert r.returncode == 0, r.stderr
    n_install, total = map(int, r.stdout.split())
    assert n_install >= 2 and total >= n_install + 4
    installed = clone(kit["root"], tmp_path / "installed")
    SlotStore(installed).install(*kit["bundles"]["v2"])
    seen = []
    for k in range(1, total + 2):
        root = clone(kit["root"] if k <= n_install else installed, tmp_path / f"kill{k}")
        r = run(root, k if k <= n_install else k - n_install)
        assert r.returncode == (-signal.SIGKILL if k <= total else 0), (k, r.stderr)
        SlotStore(root).recover()
        seen.append(check_invariants(root, kit["bundles"]))
        shutil.rmtree(root)
    assert seen[0] == "old" and "pending" in seen and seen[-1] == "new", seen
    assert seen == sorted(seen, key=["old", "pending", "new"].index), "never backwards"
