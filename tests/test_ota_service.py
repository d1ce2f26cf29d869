"""The agent's OTA service without a whole agent: the offer's checks, the clock policy, the
target checks before any download, and the worker's outcomes (rejected before downloading,
deferred and retried on transient failures, failure after give_up_h), against a real TUF
repository over real HTTP and a real slot root. The App is a small stand-in (the service
needs its config, clock, uplink and request_stop); the update path through the whole agent
is tests/test_ota_e2e.py."""

from __future__ import annotations

import asyncio
import socket
import sys
import types
from typing import Any

import pytest

import agent
from agent.clock import ScaledClock, SimClock
from agent.config.ota import OtaSettings
from agent.remote.downlink import CommandFailed
from agent.remote.ota_service import BUILD_FLOOR, Final, OtaService, Retry
from agent.wire.commands import Command
from ota.repo import Repository, init_keys
from ota.slots import SlotStore
from tools.ota.serve import start_server

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
NOW = BUILD_FLOOR + 330 * 86400.0


def app_stub(board: str = "sim") -> types.SimpleNamespace:
    stops = []
    return types.SimpleNamespace(
        config=types.SimpleNamespace(board=board, cabinet_id="CAB-T"),
        uplink=None,
        clock=ScaledClock(1000.0),
        request_stop=lambda: stops.append(1),
        stops=stops,
    )


def command(**args) -> Command:
    return Command(
        cid="c1", kind="ota.offer", iat=int(NOW), exp=int(NOW) + 300, to="CAB-T", args=args, operator="ops", kid=b"k"
    )


def service(tmp_path, wall=None, **settings) -> OtaService:
    root = tmp_path / "root"
    (root / "state").mkdir(parents=True)
    return OtaService(app_stub(), OtaSettings(**settings), root=root, wall=wall or SimClock(NOW))


async def test_offer_refused_without_launcher_or_repository(tmp_path):
    s = OtaService(app_stub(), OtaSettings(), root=None, wall=SimClock(NOW))
    with pytest.raises(CommandFailed, match="no_launcher"):
        await s.offer(command(deployment="d1", target="t.bundle"))
    s = service(tmp_path)
    with pytest.raises(CommandFailed, match="no repository"):
        await s.offer(command(deployment="d1", target="t.bundle"))
    with pytest.raises(CommandFailed, match="bad deployment"):
        await s.offer(command(deployment="../x", target="t.bundle", repository="http://h"))
    assert s.book.current() is None  # nothing recorded for refused offers


def test_clock_policy():
    s = OtaService(app_stub(), OtaSettings(), root=None, wall=SimClock(NOW, synced=False))
    s._floor = lambda: 0.0  # type: ignore[method-assign]  # no launcher root: no floor file
    with pytest.raises(Retry, match="clock_unknown"):
        s._check_clock({"iat": NOW})
    s.wall = SimClock(BUILD_FLOOR - 86400)  # synchronised, they say, but before any build of ours
    with pytest.raises(Retry, match="clock_unknown"):
        s._check_clock({"iat": 0})
    s.wall = SimClock(NOW)
    with pytest.raises(Retry, match="clock_behind"):  # the operator signed the offer an hour from now
        s._check_clock({"iat": NOW + 3600})
    s._check_clock({"iat": NOW + 200})  # within the skew
    s._floor = lambda: NOW + 1000.0  # type: ignore[method-assign]  # a refresh succeeded later than this clock says
    with pytest.raises(Retry, match="clock_behind"):
        s._check_clock({"iat": NOW})


def test_target_checks_before_download(tmp_path):
    s = service(tmp_path)
    assert s.root is not None
    st = SlotStore(s.root)
    with st._locked() as slot_state:
        slot_state["high_water"] = 5
        st._save(slot_state)

    def info(**c):
        return types.SimpleNamespace(
            custom={"name": "cabinet-agent", "version": "9.9.9", "counter": 6, "boards": ["sim"], "python": PY, **c}
        )

    assert s._check_target(info()) == {"version": "9.9.9", "counter": 6}
    for custom, state, words in (
        ({"boards": ["rpi4_rs485"]}, "rejected", "incompatible_board"),
        ({"python": "3.9"}, "rejected", "incompatible_python"),
        ({"counter": 5}, "rejected", "not_newer"),
        ({"counter": 4, "version": agent.__version__}, "already_installed", None),
        ({"name": "other"}, "rejected", "not cabinet-agent"),
        ({"counter": "6"}, "rejected", "version/counter"),
    ):
        with pytest.raises(Final) as e:
            s._check_target(info(**custom))
        reason = e.value.reason
        assert e.value.state == state and (words is None or (reason is not None and words in reason)), (custom, reason)


@pytest.fixture
def repo(tmp_path):
    keys = tmp_path / "keys"
    init_keys(keys)
    r = Repository.create(tmp_path / "repo", keys)
    payload = tmp_path / "b.bin"
    payload.write_bytes(b"x" * 1000)
    r.add_target(
        payload,
        "other-board.bundle",
        {"name": "cabinet-agent", "version": "9.0.0", "counter": 9, "boards": ["rpi4_rs485"], "python": PY},
        keys,
    )
    server, url = start_server(tmp_path / "repo")
    yield r, url
    server.shutdown()
    server.server_close()


async def _settle(s: OtaService, timeout: float = 20.0) -> dict:
    assert s.task is not None, "no worker running"
    await asyncio.wait_for(s.task, timeout)
    rec = s.book.current()
    assert rec is not None
    return rec


@pytest.mark.integration  # `repo` serves a TUF repository over HTTP
async def test_incompatible_release_rejected_before_download(tmp_path, repo):
    r, url = repo
    s = service(tmp_path, wall=SimClock(NOW))
    assert s.root is not None
    (s.root / "trusted_root.json").write_bytes(r.root_bytes(1))
    reply = await s.offer(command(deployment="d-board", target="other-board.bundle", repository=url))
    assert reply["state"] == "offered"
    rec = await _settle(s)
    assert rec["state"] == "rejected" and "incompatible_board" in rec["reason"]
    assert not list((s.root / "downloads").glob("*")) if (s.root / "downloads").exists() else True
    assert not s.offer_path.exists()
    # the same deployment again: idempotent, nothing re-done
    again = await s.offer(command(deployment="d-board", target="other-board.bundle", repository=url))
    assert again == {"state": "rejected", "seq": rec["seq"], "duplicate": True}
    missing = await s.offer(command(deployment="d-missing", target="nope.bundle", repository=url))
    assert missing["state"] == "offered"
    rec = await _settle(s)
    assert rec["state"] == "failure" and "unknown_target" in rec["reason"]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.integration
async def test_unreachable_repository_deferred_then_failure(tmp_path, repo):
    r, _ = repo
    wall = SimClock(NOW)
    s = service(tmp_path, wall=wall, retry_s=60, max_retry_s=600, give_up_h=1)
    assert s.root is not None
    (s.root / "trusted_root.json").write_bytes(r.root_bytes(1))
    seen: list[tuple[str, Any]] = []  # (state, reason) of every status set
    real_set = s._set

    def spy(dep: str, state: str, **kw: Any) -> dict[str, Any]:
        seen.append((state, kw.get("reason")))
        if state == "deferred":
            wall.set_wall(wall.now() + 1500)  # time passes while it waits
        return real_set(dep, state, **kw)

    s._set = spy  # type: ignore[method-assign,assignment]  # a spy around the real one
    await s.offer(command(deployment="d-down", target="x.bundle", repository=f"http://127.0.0.1:{closed_port()}"))
    rec = await _settle(s, 30)
    deferred = [r for st, r in seen if st == "deferred"]
    assert len(deferred) >= 2 and all("unreachable" in r for r in deferred), seen
    assert rec["state"] == "failure" and "gave up after 1 h" in rec["reason"], rec
    assert s.app.stops == []  # type: ignore[attr-defined]  # app_stub() counts request_stop() there; the agent keeps running


@pytest.mark.integration
async def test_busy_while_another_deployment_runs(tmp_path, repo):
    r, url = repo
    s = service(tmp_path, wall=SimClock(NOW, synced=False), retry_s=3600)  # clock unknown: it waits
    assert s.root is not None
    (s.root / "trusted_root.json").write_bytes(r.root_bytes(1))
    await s.offer(command(deployment="d-wait", target="other-board.bundle", repository=url))
    for _ in range(100):
        rec = s.book.current()
        assert rec is not None  # "offered" at least
        if rec["state"] == "deferred":
            break
        await asyncio.sleep(0.02)
    rec = s.book.current()
    assert rec is not None
    assert rec["reason"].startswith("clock_unknown")
    with pytest.raises(CommandFailed, match="busy: deployment d-wait is deferred"):
        await s.offer(command(deployment="d-other", target="t.bundle", repository=url))
    await s.close()


def test_watchdog_pings_only_while_the_control_loop_steps():
    from agent.runtime.watchdog import STALL_PERIODS, Watchdog

    controls = types.SimpleNamespace(active=True, steps=0)
    w = Watchdog(types.SimpleNamespace(controls=controls))
    assert w.healthy()  # first look
    controls.steps = 1
    assert w.healthy()
    assert [w.healthy() for _ in range(STALL_PERIODS)] == [True] * (STALL_PERIODS - 1) + [False]
    controls.steps = 2  # stepping again: pings resume
    assert w.healthy()
    controls.active = False  # no control loop configured: the event loop running is enough
    assert all(w.healthy() for _ in range(STALL_PERIODS + 2))
