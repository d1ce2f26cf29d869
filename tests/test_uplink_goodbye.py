"""A graceful stop always leaves a retained "offline" state (issue 14, found while checking
the documented state messages): a stop that comes while the birth is on its way ends the
connection with a clean DISCONNECT, which fires no will, so without a goodbye the broker
would keep the retained "online" birth for ever."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from agent.clock import WallClock
from agent.config.model import Uplink as UplinkSettings
from agent.outbox.writer import Outbox
from agent.uplink.client import Uplink
from tests.broker import broker  # noqa: F401
from tools.provision import pki

pytestmark = pytest.mark.integration  # a real broker
CAB = "CAB-BYE"


async def test_a_stop_during_the_birth_still_says_goodbye(broker, tmp_path):
    pki.new_signing_key(tmp_path / "cab.key")
    outbox = Outbox(tmp_path / "outbox.db", clock=WallClock())
    await outbox.start()
    task: asyncio.Task | None = None

    def birth() -> dict:
        assert task is not None
        task.cancel()  # SIGTERM arrives just as the birth is published
        return {"boot": outbox.boot_epoch}

    uplink = Uplink(
        UplinkSettings(broker="127.0.0.1", port=broker.plain_port, tls=False),
        cabinet_id=CAB,
        outbox=outbox,
        signing_key=pki.load_signing_key(tmp_path / "cab.key"),
        ingest_keys=lambda kid: None,
        clock=WallClock(),
        birth=birth,
    )
    try:
        task = asyncio.create_task(uplink.run())
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
        async with aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5) as c:
            await c.subscribe(f"city/v1/cab/{CAB}/state", qos=1)
            msg = await asyncio.wait_for(anext(aiter(c.messages)), 10)
        assert json.loads(msg.payload) == {"online": False, "boot": outbox.boot_epoch, "reason": "stopped"}
    finally:
        await outbox.close()
