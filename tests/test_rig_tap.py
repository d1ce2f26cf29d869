"""The rig's tap on the agent's outbox (tools/rig/tap.py): the agent's own Outbox opens the
prepared file as its own, every row it writes is tapped, and an acknowledgement that deletes
rows from the outbox leaves the tap whole; deliveries compare the tap with the ingest's rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.clock import WallClock
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from tools.rig import tap
from tools.rig.record import Delivery

T0 = 1_789_596_000.0


async def test_the_agents_outbox_opens_the_prepared_file_and_every_row_is_tapped(tmp_path: Path):
    db = tmp_path / "outbox.db"
    tap.prepare(db)
    assert tap.tapped(db)
    outbox = Outbox(db, clock=WallClock())
    await outbox.start()
    try:
        assert outbox.boot_epoch == 1  # as for a new file: the agent counts its first boot
        await outbox.put([Reading("a.x", T0 + i, float(i), Quality.GOOD) for i in range(5)])
        await outbox.put([Reading("b.y", T0 + 1.0004, True, Quality.GOOD)])
        await outbox.flush()
        assert len(tap.produced(db)) == 6
        sealed = await outbox.seal(lambda rs, seq: b"batch", max_readings=100)
        assert sealed is not None
        assert await outbox.ack([sealed.seq]) == 6  # acknowledged: gone from the outbox ...
        assert tap.pending_before(db, T0 + 10) == 0
    finally:
        await outbox.close()
    made = tap.produced(db)  # ... but not from the tap
    assert [(r.point, r.t, r.value) for r in made] == [
        ("a.x", T0, 0.0),
        ("a.x", T0 + 1, 1.0),
        ("b.y", T0 + 1.0004, True),
        ("a.x", T0 + 2, 2.0),
        ("a.x", T0 + 3, 3.0),
        ("a.x", T0 + 4, 4.0),
    ]


def test_prepare_refuses_an_existing_file(tmp_path: Path):
    db = tmp_path / "outbox.db"
    db.write_bytes(b"")
    with pytest.raises(tap.TapError, match="exists already"):
        tap.prepare(db)


def test_deliveries_match_on_point_and_millisecond():
    made = [Reading("a", T0 + i, 1.0, Quality.GOOD) for i in range(4)] + [Reading("b", T0 + 0.0004, 2.0, Quality.GOOD)]
    stored = [("a", T0), ("a", T0 + 1), ("a", T0 + 1), ("a", T0 + 3), ("b", T0), ("c", T0)]
    d = tap.deliveries(made, stored)
    assert d["a"] == Delivery(4, 4, 1) and d["a"].missing == 1  # T0+2 missing, T0+1 twice
    assert d["b"] == Delivery(1, 1, 0)  # 0.4 ms: the same millisecond the batch format keeps
    assert d["c"] == Delivery(0, 1, 1)  # stored, never produced: counted as a duplicate
