"""The uplink after a broker outage and on a graceful stop, with the documented defaults
(docs/uplink.md): back within seconds of the broker (the reconnect backoff is capped at
6 s ±30 %), and a graceful stop leaves `online: false` retained for the fleet to see."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from agent.aio import cancel_all
from agent.config.model import Uplink as UplinkSettings
from agent.uplink.backoff import Backoff
from tests.broker import Broker, broker  # noqa: F401
from tests.conftest import wait_until
from tests.test_uplink import CAB, Rig, readings

pytestmark = pytest.mark.integration

DEFAULTS = UplinkSettings(broker="127.0.0.1")


def test_the_default_backoff_never_waits_longer_than_8_s() -> None:
    b = Backoff(DEFAULTS.backoff_initial_s, DEFAULTS.backoff_max_s, jitter=0.3, seed=CAB)
    waits = [b.failure("refused") for _ in range(1000)]  # a 5-minute outage is ~50 of these
    assert max(waits) <= 6.0 * 1.3 and sum(waits[:4]) < 15


async def test_first_delivery_within_10_s_of_the_broker_coming_back(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(tmp_path, broker.plain_port)
    rig.settings = dataclasses.replace(
        rig.settings, backoff_initial_s=DEFAULTS.backoff_initial_s, backoff_max_s=DEFAULTS.backoff_max_s
    )
    await rig.start_ingest()
    await rig.start_cabinet()
    try:
        await rig.outbox.put(readings(100))
        await wait_until(lambda: rig.stored() == 100, timeout=20)
        broker.stop()
        await rig.outbox.put(readings(100, start=100))  # waits in the outbox during the outage
        # long enough for the backoff to reach its cap (1 + 2 + 4 + 6 + 6 ... s): what a
        # 5-minute outage looks like to the cabinet from its 5th attempt on
        await asyncio.sleep(20)
        assert rig.uplink.backoff.failures >= 4
        broker.start()
        back = time.monotonic()
        await wait_until(lambda: rig.stored() == 200, timeout=30)
        took = time.monotonic() - back
        assert took <= 10.0, f"first delivery {took:.1f} s after the broker came back"
    finally:
        await rig.stop()


async def test_a_graceful_stop_leaves_online_false_retained(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(tmp_path, broker.plain_port)
    await rig.start_cabinet()
    state_topic = f"city/v1/cab/{CAB}/state"
    await wait_until(lambda: rig.uplink.state == "connected", timeout=10)
    await cancel_all(rig.tasks)  # what App.stop does on SIGTERM
    assert rig.uplink.state == "stopped"
    assert broker.plain_port is not None
    async with aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(state_topic, qos=1)
        msg = await asyncio.wait_for(anext(aiter(c.messages)), 5)
        state = json.loads(msg.payload)
        assert msg.retain and state == {"online": False, "boot": rig.outbox.boot_epoch, "reason": "stopped"}
    await rig.outbox.close()
    rig.store.close()
