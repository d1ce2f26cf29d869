"""OTA end to end with real parts: releases N, N+1 and a broken N+2 of THIS project built with
`cabinet ota build`, published into a TUF repository served by a real HTTP server, offered
as signed commands over a real Mosquitto to agents running under the launcher
(`cabinet-boot`) in temporary roots, on the simulated cabinet, acknowledged by a real ingest.

- N -> N+1: downloads, installs, restarts into N+1, passes its health gate, commits, reports
  success (every state in order, seq growing); the high-water release counter is raised.
- N+1 -> broken N+2 (exits at start): the launcher rolls back after the crash loop; the cabinet
  reports rolled_back and runs N+1 again; the counter stays.
- `cabinet ota rollout` of the broken release across three simulated cabinets halts at its
  failure threshold after the canary rolled back; the other cabinets are never offered it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from agent import config as cfg
from agent.wire import cose
from agent.wire.ota_status import open_status
from ota import bundle
from ota.repo import Repository, init_keys
from tests.broker import broker  # noqa: F401
from tools.ingest.store import Store
from tools.ota.build import SOURCE_PARTS, build
from tools.ota.serve import RepoHandler, start_server
from tools.provision import pki

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "city/v1"


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Bundles N (0.90.0, counter 1), N+1 (0.90.1, 2), broken (0.90.2, 3) and a template root with
    N installed (its dependency store is hard-linked into each test's roots: installs take seconds)."""
    d = tmp_path_factory.mktemp("releases")
    t0 = time.monotonic()
    n, _man_n = build(counter=1, version="0.90.0", out=d / "dist", boards=["sim"])
    first_build_s = time.monotonic() - t0
    x = d / "n"
    bundle.extract(n, x)
    wheelhouse = d / "wheelhouse"
    shutil.copytree(x / "wheels", wheelhouse)
    n1, _ = build(counter=2, version="0.90.1", out=d / "dist", boards=["sim"], wheelhouse=wheelhouse)
    src = d / "broken-src"
    src.mkdir()
    for part in SOURCE_PARTS:
        p = REPO_ROOT / part
        (
            shutil.copytree(p, src / part, ignore=shutil.ignore_patterns("__pycache__"))
            if p.is_dir()
            else shutil.copy2(p, src / part)
        )
    (src / "agent" / "__main__.py").write_text('raise SystemExit("broken release: exits at start")\n')
    broken, _ = build(counter=3, version="0.90.2", out=d / "dist", boards=["sim"], wheelhouse=wheelhouse, source=src)
    template = d / "template"
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "ota.launcher", "install", str(x), "--root", str(template)],
        check=True,
        capture_output=True,
    )
    first_install_s = time.monotonic() - t0
    print(
        f"\nfirst build {first_build_s:.1f} s, bundle {n.stat().st_size / 2**20:.1f} MiB, "
        f"first install {first_install_s:.1f} s"
    )
    return {"n": n, "n_dir": x, "n1": n1, "broken": broken, "template": template, "dir": d}


RANGES: list[str | None] = []


class SlowHandler(RepoHandler):
    """Serves targets at about 2 MB/s (a cellular link) and records their Range headers."""

    def send_body(self, path: Path, f, count: int) -> None:
        if "/targets/" in str(path):
            RANGES.append(self.headers.get("Range"))
        while count > 0:
            chunk = f.read(min(65536, count))
            if not chunk:
                break
            self.wfile.write(chunk)
            count -= len(chunk)
            time.sleep(0.03)


class Fleet:
    """A repository + HTTP server, an ingest, and cabinets under launchers, on one broker."""

    def __init__(self, tmp: Path, releases: dict, port: int, handler=RepoHandler) -> None:
        self.tmp, self.rel, self.port = tmp, releases, port
        self.keys = tmp / "ota-keys"
        init_keys(self.keys)
        self.repo = Repository.create(tmp / "repo", self.keys)
        self.server, self.url = start_server(tmp / "repo", handler=handler)
        self.op_key = tmp / "op.key"
        self.op_pub = pki.new_signing_key(self.op_key)
        self.ingest_key = tmp / "ingest.key"
        self.ingest_pub = pki.new_signing_key(self.ingest_key)
        self.db = tmp / "ingest.db"
        self.cabinets: dict[str, dict] = {}
        self.procs: list[subprocess.Popen] = []
        self.ingest: subprocess.Popen[bytes] | None = None

    def publish(self, path: Path) -> str:
        man = bundle.read_manifest(path)
        self.repo.add_target(path, path.name, man.custom(), self.keys)
        return path.name

    def add_cabinet(self, cab: str, tags: tuple[str, ...] = ()) -> dict:
        d = self.tmp / cab
        root = d / "root"
        (root / "store").mkdir(parents=True)
        for entry in (self.rel["template"] / "store").iterdir():  # the template's dependency installs
            subprocess.run(["cp", "-al", str(entry), str(root / "store" / entry.name)], check=True)
        r = subprocess.run(
            [sys.executable, "-m", "ota.launcher", "install", str(self.rel["n_dir"]), "--root", str(root)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        shutil.copy(self.tmp / "repo" / "metadata" / "1.root.json", root / "trusted_root.json")
        key = d / "cab.key"
        pub = pki.new_signing_key(key)
        store = Store(str(self.db))
        store.add_key(cab, cose.key_id(pki.load_signing_key(key).public_key()), pub, time.time())
        store.close()
        text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", "baudrate = 115200", 1)
        text = text.replace('id = "CAB-SIM-0001"', f'id = "{cab}"', 1)
        assert f'id = "{cab}"' in text
        if tags:
            text = text.replace('tags = ["sim", "demo"]', f"tags = {json.dumps(['sim', *tags])}", 1)
            assert json.dumps(["sim", *tags]) in text
        text += (
            f'\n[uplink]\nbroker = "127.0.0.1"\nport = {self.port}\ntls = false\nsigning_key = "{key}"\n'
            f'ingest_key = "{self.ingest_pub.hex()}"\nbatch_max_age_s = 2\nbackoff_initial_s = 0.2\n'
            f"backoff_max_s = 2\nack_timeout_s = 10\n"
            f'\n[trust]\n[trust.operators.ops]\nkey = "{self.op_pub.hex()}"\nallow = "*"\n'
            f'\n[ota]\nrepository = "{self.url}"\ntrial_s = 120\nretry_s = 2\n'
        )
        (d / "cabinet.toml").write_text(text)
        c = {"id": cab, "dir": d, "root": root, "config": d / "cabinet.toml", "pub": pub, "log": d / "launcher.log"}
        self.cabinets[cab] = c
        return c

    def start_ingest(self) -> None:
        log = open(self.tmp / "ingest.log", "wb")  # noqa: SIM115 - the ingest's output for as long as it runs
        self.ingest = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.cli",
                "ingest",
                "run",
                "--db",
                str(self.db),
                "--broker",
                f"127.0.0.1:{self.port}",
                "--key",
                str(self.ingest_key),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(self.ingest)

    def launch(self, c: dict) -> None:
        log = open(c["log"], "ab")  # noqa: SIM115 - the launcher's output for as long as it runs
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        c["proc"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ota.launcher",
                "--root",
                str(c["root"]),
                "--watchdog-s",
                "60",
                "--",
                "run",
                "--config",
                str(c["config"]),
                "--data-dir",
                str(c["dir"] / "data"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.procs.append(c["proc"])

    def kill9(self, c: dict) -> None:
        """SIGKILL the launcher, the agent and the simulator at once (a power cut)."""
        os.killpg(c["proc"].pid, signal.SIGKILL)
        c["proc"].wait(10)

    def ota_state(self, c: dict) -> dict:
        return json.loads((c["root"] / "state" / "ota.json").read_text())

    def keys_file(self) -> Path:
        p = self.tmp / "cabinet-keys.json"
        p.write_text(json.dumps({cab: c["pub"].hex() for cab, c in self.cabinets.items()}))
        return p

    def offer(self, cab: str, deployment: str, target: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tools.cli",
                "cmd",
                "send",
                "ota.offer",
                "--id",
                cab,
                "--arg",
                f"deployment={deployment}",
                "--arg",
                f"target={target}",
                "--key",
                str(self.op_key),
                "--broker",
                f"127.0.0.1:{self.port}",
                "--cabinet-key",
                self.cabinets[cab]["pub"].hex(),
                "--timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM) if p is not self.ingest else p.terminate()
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.server.shutdown()
        self.server.server_close()


class Watcher:
    """Every verified OTA status and birth message on the broker."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.statuses: dict[str, list[dict]] = {}
        self.births: dict[str, dict] = {}
        self.task: asyncio.Task | None = None

    async def run(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", self.fleet.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(f"{PREFIX}/cab/+/ota/status", qos=1)
            await client.subscribe(f"{PREFIX}/cab/+/state", qos=1)
            ready.set()
            async for msg in client.messages:
                topic = str(msg.topic)
                cab = topic.split("/")[3]
                if topic.endswith("/state"):
                    self.births[cab] = json.loads(msg.payload)
                    continue
                pub = self.fleet.cabinets[cab]["pub"]
                from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

                key = Ed25519PublicKey.from_public_bytes(pub)
                doc = open_status(bytes(msg.payload), topic=topic, keys={cose.key_id(key): key}.get)
                self.statuses.setdefault(cab, []).append(doc)

    async def start(self) -> None:
        ready = asyncio.Event()
        self.task = asyncio.create_task(self.run(ready))
        await asyncio.wait_for(ready.wait(), 10)

    async def wait(self, pred, timeout: float, what: str, fleet: Fleet) -> None:
        end = time.monotonic() + timeout
        assert self.task is not None, "Watcher.wait: start() first"
        while not pred():
            if self.task.done():
                self.task.result()
            if time.monotonic() > end:
                logs = "\n".join(
                    f"--- {c['id']}\n" + c["log"].read_text(errors="replace")[-3000:] for c in fleet.cabinets.values()
                )
                raise AssertionError(f"timed out waiting for {what}; statuses {self.statuses}\n{logs}")
            await asyncio.sleep(0.2)

    def states(self, cab: str, deployment: str) -> list[str]:
        out, last = [], -1
        for s in self.statuses.get(cab, []):
            if s["deployment"] == deployment and s["seq"] > last:
                out.append(s["state"])
                last = s["seq"]
        return out

    def final(self, cab: str, deployment: str) -> dict | None:
        got = [s for s in self.statuses.get(cab, []) if s["deployment"] == deployment]
        return max(got, key=lambda s: s["seq"]) if got else None


@pytest.fixture
def fleet(tmp_path, releases, broker):
    f = Fleet(tmp_path, releases, broker.plain_port)
    yield f
    f.close()


async def test_update_commits_then_a_broken_release_rolls_back(fleet, releases):
    n1 = fleet.publish(releases["n1"])
    c = fleet.add_cabinet("CAB-OTA-1")
    fleet.start_ingest()
    w = Watcher(fleet)
    await w.start()
    fleet.launch(c)
    await w.wait(lambda: w.births.get("CAB-OTA-1", {}).get("online"), 60, "the agent's birth", fleet)
    assert w.births["CAB-OTA-1"]["version"] == "0.90.0"

    t0 = time.monotonic()
    r = fleet.offer("CAB-OTA-1", "d-n1", n1)
    assert r.returncode == 0, r.stdout + r.stderr
    await w.wait(lambda: (w.final("CAB-OTA-1", "d-n1") or {}).get("state") == "success", 240, "success", fleet)
    update_s = time.monotonic() - t0
    states = w.states("CAB-OTA-1", "d-n1")
    order = ["offered", "downloading", "downloaded", "installing", "restarting", "verifying", "success"]
    distinct = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert distinct == order, states  # every state, in order (downloading repeats with its percent)
    pcts = [s["percent"] for s in w.statuses["CAB-OTA-1"] if s["state"] == "downloading"]
    assert pcts == sorted(pcts) and pcts[-1] == 100, pcts
    assert "failure" not in states and "rolled_back" not in states
    st = fleet.ota_state(c)
    assert os.readlink(c["root"] / "current") == "releases/2-0.90.1"
    assert st["high_water"] == 2 and st["pending"] is None and st["last_good"] == "2-0.90.1"
    await w.wait(lambda: w.births.get("CAB-OTA-1", {}).get("version") == "0.90.1", 30, "birth of 0.90.1", fleet)
    print(f"\nupdate N -> N+1 took {update_s:.1f} s (offer to success)")
    (fleet.tmp / "update_s.txt").write_text(f"{update_s:.1f}")

    broken = fleet.publish(releases["broken"])
    r = fleet.offer("CAB-OTA-1", "d-broken", broken)
    assert r.returncode == 0, r.stdout + r.stderr
    await w.wait(
        lambda: (w.final("CAB-OTA-1", "d-broken") or {}).get("state") == "rolled_back", 240, "rolled_back", fleet
    )
    final = w.final("CAB-OTA-1", "d-broken")
    assert final is not None
    assert "crash_loop" in final["reason"], final
    st = fleet.ota_state(c)
    assert os.readlink(c["root"] / "current") == "releases/2-0.90.1"
    assert st["high_water"] == 2 and st["pending"] is None
    await w.wait(
        lambda: w.births.get("CAB-OTA-1", {}).get("online") and w.births["CAB-OTA-1"].get("version") == "0.90.1",
        60,
        "N+1 running again",
        fleet,
    )
    assert w.task is not None
    w.task.cancel()


async def test_rollout_of_a_broken_release_halts(fleet, releases):
    broken = fleet.publish(releases["broken"])
    cabs = [fleet.add_cabinet("CAB-R-1", tags=("canary",)), fleet.add_cabinet("CAB-R-2"), fleet.add_cabinet("CAB-R-3")]
    fleet.start_ingest()
    w = Watcher(fleet)
    await w.start()
    for c in cabs:
        fleet.launch(c)
    await w.wait(lambda: all(w.births.get(c["id"], {}).get("online") for c in cabs), 90, "three births", fleet)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "ota",
        "rollout",
        "--target",
        broken,
        "--version",
        "0.90.2",
        "--deployment",
        "roll-1",
        "--waves",
        "1,100",
        "--min-cabinets",
        "1",
        "--max-failures",
        "10",
        "--cabinet-timeout",
        "5m",
        "--key",
        str(fleet.op_key),
        "--broker",
        f"127.0.0.1:{fleet.port}",
        "--cabinet-keys",
        str(fleet.keys_file()),
        "--state",
        str(fleet.tmp / "rollout.json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode()
    assert proc.returncode == 3, text
    assert "halt" in text.lower()
    assert (w.final("CAB-R-1", "roll-1") or {}).get("state") == "rolled_back", text
    for c in cabs[1:]:  # never offered: nothing reported, still on N
        assert w.final(c["id"], "roll-1") is None
        assert os.readlink(c["root"] / "current") == "releases/1-0.90.0"
    saved = json.loads((fleet.tmp / "rollout.json").read_text())
    assert saved["state"] == "halted"
    assert w.task is not None
    w.task.cancel()


async def test_kill9_in_every_state_ends_committed(tmp_path, releases, broker):
    """Power cuts (SIGKILL of launcher, agent and simulator) while downloading, installing and
    verifying: each time the cabinet comes back on a working version, resumes the deployment
    (the download from where it stopped), and ends committed with a consistent status."""
    fleet = Fleet(tmp_path, releases, broker.plain_port, handler=SlowHandler)
    try:
        RANGES.clear()
        n1 = fleet.publish(releases["n1"])
        c = fleet.add_cabinet("CAB-KILL-1")
        fleet.start_ingest()
        w = Watcher(fleet)
        await w.start()
        fleet.launch(c)
        await w.wait(lambda: w.births.get("CAB-KILL-1", {}).get("online"), 60, "birth", fleet)
        assert fleet.offer("CAB-KILL-1", "d-kill", n1).returncode == 0
        last = lambda: w.final("CAB-KILL-1", "d-kill") or {}  # noqa: E731
        killed = []
        for state, cond in (
            ("downloading", lambda s: s.get("state") == "downloading" and (s.get("percent") or 0) >= 30),
            ("installing", lambda s: s.get("state") in ("installing", "restarting")),
            ("verifying", lambda s: s.get("state") == "verifying"),
        ):
            await w.wait(lambda cond=cond: cond(last()) or last().get("state") == "success", 240, state, fleet)
            if last().get("state") == "success":
                break
            fleet.kill9(c)
            killed.append(last()["state"])
            assert os.path.realpath(c["root"] / "current").split("/")[-1] in ("1-0.90.0", "2-0.90.1")
            fleet.launch(c)
        await w.wait(lambda: last().get("state") == "success", 300, "success after the kills", fleet)
        assert killed[0] == "downloading" and len(killed) >= 2, killed
        resumed = [r for r in RANGES if r and not r.startswith("bytes=0-")]
        assert resumed, RANGES  # the download continued from the partial file
        seqs = [s["seq"] for s in w.statuses["CAB-KILL-1"] if s["deployment"] == "d-kill"]
        assert max(seqs) == seqs[-1]
        st = fleet.ota_state(c)
        assert os.readlink(c["root"] / "current") == "releases/2-0.90.1"
        assert st["high_water"] == 2 and st["pending"] is None
        assert not list((c["root"] / "releases").glob("*.tmp"))
        print(f"\nkilled in {killed}; resumed with {resumed}")
        assert w.task is not None
        w.task.cancel()
    finally:
        fleet.close()
