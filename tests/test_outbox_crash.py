"""kill -9 tests of the outbox: a real writer process (tests/outbox_writer.py) is
SIGKILLed at random moments and the store reopened and checked each time (what is
checked: see outbox_writer.py's docstring).

The normal run does 60 kills (about 15-20 s). The random moments come from a seed
printed on failure; repeat one with OUTBOX_CRASH_SEED=N.

Soak (a script, not part of the suite):
    python tests/outbox_writer.py --soak 1000 [--seed N] [--dir DIR]
"""

from __future__ import annotations

import json
import os
import random

import pytest

from agent.clock import WallClock
from agent.outbox.writer import Outbox
from tests import outbox_writer as w

KILLS = 60

pytestmark = pytest.mark.integration  # a writer process, SIGKILLed


def _seed() -> int:
    return int(os.environ.get("OUTBOX_CRASH_SEED") or random.randrange(2**31))


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path):
    seed = _seed()
    try:
        c = await w.run_kills(str(tmp_path / "outbox.db"), KILLS, seed=seed)
    except AssertionError as e:
        raise AssertionError(f"{e} (OUTBOX_CRASH_SEED={seed})") from e
    assert c.runs == KILLS
    assert c.flushed > 1000 and c.seals > 20 and c.acks > 20, vars(c)  # the kills hit real work
    print(f"{KILLS} kills, seed {seed}: {c.flushed} flushed numbers checked, {c.seals} seals, {c.acks} acks")


async def test_kill_between_encode_and_commit_never_reuses_the_seq(tmp_path):
    db = str(tmp_path / "outbox.db")
    lines, _ = await w.run_one(db, 1, 7, 0.05, after_ready=True, hang_in_encode=True)
    seen = int(next(x for x in lines if x.startswith("E ")).split()[1])
    async with Outbox(db, clock=WallClock()) as ob:
        assert ob.unacked() == []  # the batch never committed
        assert [r.value for _, r in ob.peek()] == [1]  # its reading is still unsealed
        sealed = await ob.seal(w.encode, max_readings=10)
    assert sealed is not None
    assert sealed.seq > seen
    assert json.loads(sealed.payload)["n"] == [1]
