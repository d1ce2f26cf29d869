"""Relay-board variants (issue 14): the plain 8-channel boards have no discrete inputs.

The profile used to poll 8 discrete inputs (FC02) by default; a plain board refuses
FC02 with exception 2, so every poll became 9 requests after the block split and 8
points went bad. Now discrete inputs are polled only where the variant has them
(`inputs = N`), and the simulated relay board is the same variant as the config says.
"""

from __future__ import annotations

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.entry import board_infos
from boards.sim.cabinet import SimCabinet
from boards.sim.store import IllegalAddress
from drivers import profiles
from drivers.modbus.engine import BusEngine, ModbusFault
from drivers.modbus.planner import plan
from drivers.profiles.base import Table


def test_the_default_relay_board_is_the_plain_board_one_request_per_poll():
    prof = profiles.get("relay-board").build({})
    assert not [p for p in prof.points if p.table is Table.DISCRETE]
    blocks = plan(prof.points, prof.limits)
    assert [(b.table, b.start, b.count) for b in blocks] == [(Table.COIL, 0, 8)]


def test_boards_with_inputs_say_so():
    prof = profiles.get("relay-board").build({"inputs": 8})
    inputs = [p for p in prof.points if p.table is Table.DISCRETE]
    assert [p.key for p in inputs] == [f"input_{n}" for n in range(1, 9)]
    assert len(plan(prof.points, prof.limits)) == 2
    # such boards also have the per-relay control mode registers; plain ones do not
    assert "config.mode_1" in {c.key for c in prof.config}
    assert "config.mode_1" not in {c.key for c in profiles.get("relay-board").build({}).config}


def test_example_cabinet_and_its_simulated_board_agree(tmp_path):
    config = cfg.load(cfg.EXAMPLE, board_infos())
    dev = config.devices["relays"]
    assert not [p for p in dev.profile.points if p.table is Table.DISCRETE]
    assert len(plan(dev.profile.points, dev.profile.limits)) == 1
    store = SimCabinet(config, tmp_path, ScaledClock(1.0)).stores["relays"]  # built, not started
    assert store.spans(Table.DISCRETE) == [] and store.spans(Table.COIL) == [(0, 8)]


@pytest.fixture
async def sim(tmp_path):
    config = cfg.load(cfg.EXAMPLE, board_infos())
    cab = SimCabinet(config, tmp_path / "sim", ScaledClock(1.0))
    ep = await cab.start()
    yield cab, ep
    await cab.stop()


@pytest.mark.integration  # the simulated cabinet's RS-485 line
async def test_the_simulated_plain_board_refuses_fc02_like_the_real_one(sim):
    cab, ep = sim
    store = cab.stores["relays"]
    with pytest.raises(IllegalAddress):
        store.read(Table.DISCRETE, 0, 8)
    engine = BusEngine.rtu("t", ep["buses"]["rs485"][1], baudrate=9600, timeout_ms=200)
    assert await engine.connect()
    try:
        assert await engine.read(20, "coil", 0, 8) == [False] * 8
        with pytest.raises(ModbusFault) as e:
            await engine.read(20, "discrete", 0, 8)
        assert e.value.kind == "exception" and e.value.code == 2
    finally:
        await engine.close()
