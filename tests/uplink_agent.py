"""A cabinet in a process, for the kill -9 tests: an outbox and an uplink to a broker.

    python tests/uplink_agent.py DIR PORT [--drain]

Appends readings numbered 0, 1, 2, ... (point "n", t = 1.8e9 + number), in slices,
flushes each slice and prints "first last" of it (so the test knows what reached the
outbox durably), while the uplink sends and deletes acknowledged batches. A slice's
numbers are reserved in DIR/next before it is appended, so a restart never reuses a
number (a killed slice leaves a gap, never a double). With --drain it appends nothing and
exits once the outbox is empty.
Keys: DIR/cab.key (signing), DIR/ingest.pub (trusted for acks)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.clock import WallClock
from agent.config.model import Uplink as UplinkSettings
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.uplink.client import Uplink
from agent.wire import cose
from tools.provision import pki

CAB = "CAB-K9"


async def main(d: Path, port: int, drain: bool) -> None:
    clock = WallClock()
    outbox = Outbox(d / "outbox.db", clock=clock)
    await outbox.start()
    ingest = Ed25519PublicKey.from_public_bytes(bytes.fromhex((d / "ingest.pub").read_text()))
    settings = UplinkSettings(
        broker="127.0.0.1",
        port=port,
        tls=False,
        batch_max_age_s=0.05,
        batch_max_readings=300,
        ack_timeout_s=2.0,
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
    )
    uplink = Uplink(
        settings,
        cabinet_id=CAB,
        outbox=outbox,
        signing_key=pki.load_signing_key(d / "cab.key"),
        ingest_keys={cose.key_id(ingest): ingest}.get,
        clock=clock,
        birth=dict,
    )
    task = asyncio.create_task(uplink.run())
    nxt = int((d / "next").read_text()) if (d / "next").exists() else 0
    print("ready", flush=True)
    if drain:
        while True:
            st = outbox.stats()
            if st["rows_pending"] + st["rows_sealed"] == 0:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await outbox.close()
        return
    while True:
        n = 97
        (d / "next.tmp").write_text(str(nxt + n))
        (d / "next.tmp").replace(d / "next")
        await outbox.put([Reading("n", 1.8e9 + i, i, Quality.GOOD) for i in range(nxt, nxt + n)])
        await outbox.flush()
        print(nxt, nxt + n - 1, flush=True)
        nxt += n
        uplink.wake()
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), "--drain" in sys.argv))
