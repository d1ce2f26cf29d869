"""Remote configuration (config.apply and the health gate) on real files and the simulated
cabinet: invalid pushes rejected with every issue and nothing written; stale versions and
local edits refused; a good push (through a real Mosquitto with `cabinet config push`)
written atomically, `.previous` kept, committed by the gate after the restart; a push that
breaks a bus rolled back after the gate's deadline; restarts in the middle of applying
end with a consistent config. "Restarts" are done here: the App stops (request_stop), a
new App is built from the file on disk."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.config.model import Uplink as UplinkSettings
from agent.remote.config_apply import MAX_BOOTS, sha256_file
from agent.remote.downlink import CommandFailed
from agent.runtime.app import App, Endpoints, UplinkWiring
from agent.runtime.entry import board_infos
from agent.wire.commands import Command
from boards.sim.cabinet import SimCabinet
from drivers.dio import FilePinsDIO
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.cli.table import main as cli_main
from tools.operator.commands import with_version
from tools.provision import pki

CAB = "CAB-SIM-0001"

pytestmark = pytest.mark.integration  # the agent against the simulated cabinet (and a real broker)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Rig:
    def __init__(self, tmp: Path, mqtt_port: int | None = None, version: int = 1) -> None:
        self.tmp, self.mqtt_port = tmp, mqtt_port
        self.op_path, self.cab_path = tmp / "op.key", tmp / "cab.key"
        op_pub = pki.new_signing_key(self.op_path)
        self.cab_pub = pki.new_signing_key(self.cab_path)
        text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", "baudrate = 115200", 1)
        text += f'\n[trust]\n[trust.operators.ops]\nkey = "{op_pub.hex()}"\nallow = "*"\n'
        self.text = with_version(text, version)
        self.path = tmp / "cabinet.toml"
        self.path.write_text(self.text)
        self.original = cfg.load(self.path, board_infos())
        self.clock = ScaledClock(1.0)
        self.sim = SimCabinet(self.original, tmp / "sim", self.clock)
        self.ep: dict | None = None
        self.app: App | None = None
        self._task: asyncio.Task | None = None

    def build(self) -> App:
        """An App from the file on disk (not started); the simulator's endpoints only for buses the
        push did not change, so a changed/new bus connects where its config says."""
        config = cfg.load(self.path, board_infos())
        buses = {
            n: tuple(v)
            for n, v in (self.ep or {}).get("buses", {}).items()
            if config.buses.get(n) == self.original.buses.get(n)
        }
        endpoints = Endpoints(
            buses=buses, gps_port=(self.ep or {}).get("gps"), dio=FilePinsDIO(self.ep["pins"]) if self.ep else None
        )
        wiring = None
        if self.mqtt_port is not None:
            settings = UplinkSettings(
                broker="127.0.0.1",
                port=self.mqtt_port,
                tls=False,
                batch_max_age_s=5.0,
                backoff_initial_s=0.2,
                backoff_max_s=1.0,
            )
            no_keys: dict[bytes, Any] = {}  # no ingest key trusted: acks are not verified here
            wiring = UplinkWiring(settings, pki.load_signing_key(self.cab_path), no_keys.get)
        return App(config, data_dir=self.tmp / "agent", clock=self.clock, endpoints=endpoints, uplink=wiring)

    async def boot(self) -> App:
        if self.ep is None:
            self.ep = await self.sim.start()
        self.app = self.build()
        self._task = asyncio.create_task(self.app.run(asyncio.Event()))
        await wait_until(lambda: len(self.app._tasks) > 0, timeout=5)  # started (the gate too)
        return self.app

    async def stopped(self, timeout: float = 10.0) -> None:
        """Wait for the App to stop by itself (request_stop after an apply or a rollback)."""
        assert self._task is not None, "Rig.stopped: boot() first"
        await asyncio.wait_for(self._task, timeout)
        self._task = None

    async def stop(self) -> None:
        if self._task is not None:
            assert self.app is not None  # boot() sets both
            self.app.request_stop()
            await asyncio.wait_for(self._task, 10)
            self._task = None
        if self.ep is not None:
            await self.sim.stop()

    def marker(self) -> Path:
        return self.tmp / "agent" / "state" / "config_trial.json"

    def history(self) -> dict:
        return json.loads((self.tmp / "agent" / "state" / "config_history.json").read_text())


def command(args: dict, cid: str = "c1") -> Command:
    now = int(time.time())
    return Command(cid, "config.apply", now, now + 300, CAB, args, "ops", b"")


BROKEN_BUS = """
[buses.broken]
type = "tcp"
host = "127.0.0.1"
port = {port}
timeout_ms = 200

[devices.meter_far]
bus = "broken"
unit = 1
profile = "sdm120"
poll_s = 1.0
"""


@pytest.fixture
async def rig(tmp_path):
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        await r.stop()


async def test_invalid_push_rejected_with_every_issue_and_nothing_written(rig):
    app = rig.build()
    bad = with_version(rig.text, 2).replace("baudrate = 115200", "baudrate = 1234", 1)
    bad = bad.replace("latitude = 52.5219", "latitude = 952.5", 1) + "\n[nonsense]\nx = 1\n"
    before = rig.path.read_bytes()
    with pytest.raises(CommandFailed) as e:
        await app.config_manager.apply(command({"toml": bad, "version": 2}))
    detail = str(e.value)
    assert detail.startswith("invalid: 3 issue(s)"), detail
    for words in ("[buses.rs485] baudrate = 1234", "[site] latitude = 952.5", "unknown section [nonsense]"):
        assert words in detail, (words, detail)
    assert rig.path.read_bytes() == before
    assert not rig.path.with_name("cabinet.toml.previous").exists() and not rig.marker().exists()
    with pytest.raises(CommandFailed, match="invalid: 1 issue"):  # TOML syntax
        await app.config_manager.apply(command({"toml": "[cabinet\n", "version": 2}))
    with pytest.raises(CommandFailed, match="config_version is 2, the push says version 3"):
        await app.config_manager.apply(command({"toml": with_version(rig.text, 2), "version": 3}))
    assert rig.path.read_bytes() == before and not rig.marker().exists()


async def test_older_or_equal_version_and_local_edits_rejected(tmp_path):
    rig = Rig(tmp_path, version=3)
    app = rig.build()
    for v in (2, 3):
        with pytest.raises(CommandFailed, match="stale_version"):
            await app.config_manager.apply(command({"toml": with_version(rig.text, v), "version": v}))
    with pytest.raises(CommandFailed, match="expect_mismatch"):
        await app.config_manager.apply(
            command({"toml": with_version(rig.text, 4), "version": 4, "expect_sha256": "0" * 64})
        )
    # a technician edits the file on site and does not push it: never silently overwritten
    edited = rig.text.replace('name = "Simulated', 'name = "Edited on site, simulated', 1)
    rig.path.write_text(edited)
    with pytest.raises(CommandFailed, match="local_changes"):
        await app.config_manager.apply(command({"toml": with_version(rig.text, 4), "version": 4}))
    assert rig.path.read_text() == edited and not rig.marker().exists()
    assert not rig.path.with_name("cabinet.toml.previous").exists()


async def test_good_push_with_cabinet_config_push_is_committed_after_the_restart(broker, tmp_path, capsys):
    rig = Rig(tmp_path, broker.plain_port)
    try:
        app = await rig.boot()
        uplink = app.uplink
        assert uplink is not None
        await wait_until(lambda: uplink.state == "connected", timeout=10)
        await asyncio.sleep(0.3)  # the command subscription follows the connect
        old_sha = app.config.sha256
        new_file = tmp_path / "new.toml"
        new_file.write_text(rig.text.replace('tags = ["sim", "demo"]', 'tags = ["sim", "demo", "festival"]'))
        argv = [
            "config",
            "push",
            str(new_file),
            "--id",
            CAB,
            "--version",
            "2",
            "--trial",
            "20s",
            "--expect-sha256",
            old_sha,
            "--key",
            str(rig.op_path),
            "--broker",
            f"127.0.0.1:{broker.plain_port}",
            "--cabinet-key",
            rig.cab_pub.hex(),
            "--timeout",
            "5",
        ]
        capsys.readouterr()
        rc = await asyncio.to_thread(cli_main, argv)
        rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rc == 0 and rep["ok"] and rep["result"]["version"] == 2 and rep["result"]["previous"] == old_sha, rep
        # written atomically: the new file in place, the previous kept, the trial marker recorded
        prev = rig.path.with_name("cabinet.toml.previous")
        assert sha256_file(prev) == old_sha and sha256_file(rig.path) == rep["result"]["sha256"]
        assert not rig.path.with_name("cabinet.toml.tmp").exists()
        marker = json.loads(rig.marker().read_text())
        assert marker["sha256"] == rep["result"]["sha256"] and marker["previous"] == str(prev)
        await rig.stopped()  # the agent asked to restart
        app = await rig.boot()
        assert app.config.config_version == 2 and "festival" in app.config.tags
        assert app.status()["config"]["trial"] is not None
        await wait_until(lambda: app.config_manager.outcome == "committed", timeout=15)
        st = app.status()["config"]
        assert st["trial"] is None and st["version"] == 2 and st["last_rollback"] is None
        assert st["last_commit"]["sha256"] == app.config.sha256 and not rig.marker().exists()
        assert rig.history()["last_commit"]["version"] == 2
        assert app.birth()["config"]["version"] == 2
        # a repeat of the same version is now stale
        with pytest.raises(CommandFailed, match="stale_version"):
            await app.config_manager.apply(command({"toml": with_version(rig.text, 2), "version": 2}))
    finally:
        await rig.stop()


async def test_push_breaking_a_bus_is_rolled_back_after_the_deadline(rig):
    app = await rig.boot()
    old_sha = app.config.sha256
    text = with_version(rig.text, 2) + BROKEN_BUS.format(port=closed_port())
    res = await app.config_manager.apply(command({"toml": text, "version": 2, "trial_s": 2, "restart_delay_s": 0}))
    assert res["applied"]
    await rig.stopped()
    app = await rig.boot()
    assert "broken" in app.config.buses
    t0 = time.monotonic()
    await rig.stopped(timeout=10)  # the gate rolled back and asked for a restart
    assert 1.9 <= time.monotonic() - t0 <= 6
    assert sha256_file(rig.path) == old_sha and not rig.marker().exists()
    assert rig.path.with_name("cabinet.toml.failed").read_text() == text
    app = await rig.boot()
    st = app.status()["config"]
    assert app.config.sha256 == old_sha and st["version"] == 1 and st["trial"] is None
    assert st["last_rollback"]["version"] == 2 and "bus:broken" in st["last_rollback"]["reason"], st
    assert "bus:rs485" not in st["last_rollback"]["reason"]


async def test_restart_in_the_middle_of_applying_ends_consistent(rig):
    app = rig.build()
    old_sha = app.config.sha256
    mgr = app.config_manager
    # 1. crash after the marker, before the rename: the old file runs, the marker is dropped
    new = with_version(rig.text, 2).replace('"demo"]', '"demo", "x"]')
    marker = {
        "sha256": cfg.loads(new, str(rig.path)).sha256,
        "version": 2,
        "previous_sha256": old_sha,
        "config": str(rig.path),
        "previous": str(rig.path) + ".previous",
        "trial_s": 2,
        "boots": 0,
    }
    mgr.stage(new.encode(), marker, crash_before_rename=True)
    app = await rig.boot()
    assert app.config.sha256 == old_sha and app.config_manager.outcome == "interrupted"
    assert not rig.marker().exists() and app.status()["config"]["trial"] is None
    app.request_stop()
    await rig.stopped()

    # 2. renamed, then the agent crashes at every start before the gate commits: a crash loop
    app = rig.build()
    text = with_version(rig.text, 3) + BROKEN_BUS.format(port=closed_port())
    marker = {**marker, "sha256": cfg.loads(text, str(rig.path)).sha256, "version": 3, "trial_s": 60}
    app.config_manager.stage(text.encode(), marker)
    for boot in range(1, MAX_BOOTS + 1):
        app = await rig.boot()
        assert app.config.config_version == 3 and app.status()["config"]["trial"]["boots"] == boot
        rig._task.cancel()  # a crash: no commit, no rollback
        await asyncio.gather(rig._task, return_exceptions=True)
        rig._task = None
    app = await rig.boot()  # one start too many: rolled back at once
    await rig.stopped(timeout=5)
    assert sha256_file(rig.path) == old_sha and not rig.marker().exists()
    app = await rig.boot()
    st = app.status()["config"]
    assert st["version"] == 1 and st["last_rollback"]["reason"].startswith("crash_loop"), st


async def test_boot_guard_rolls_back_a_pushed_config_that_cannot_load(rig):
    from agent.remote.config_apply import boot_guard

    app = rig.build()
    old_sha = app.config.sha256
    # the document validated when pushed, but no longer loads on this cabinet (e.g. a board profile changed)
    text = with_version(rig.text, 2).replace('profile = "sim"', 'profile = "gone-board"', 1)
    marker = {
        "sha256": cfg.loads(text, str(rig.path)).sha256,
        "version": 2,
        "previous_sha256": old_sha,
        "config": str(rig.path),
        "previous": str(rig.path) + ".previous",
        "trial_s": 60,
        "boots": 0,
    }
    app.config_manager.stage(text.encode(), marker)
    assert boot_guard(rig.tmp / "agent", {}) is None  # no board table given: it loads, nothing to do
    entry = boot_guard(rig.tmp / "agent", board_infos())
    assert entry is not None
    assert entry["reason"].startswith("load_failed") and "gone-board" in entry["reason"]
    assert sha256_file(rig.path) == old_sha and not rig.marker().exists()
    app = await rig.boot()  # the App reports the guard's rollback once
    await wait_until(lambda: app.config_manager.history["last_rollback"]["reported"] is True, timeout=5)
    assert app.status()["config"]["last_rollback"]["version"] == 2
