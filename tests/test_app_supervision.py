"""The App's supervisor: a task that keeps failing is restarted with backoff and reported
(log, status `task_restarts`, `event.agent.task_failed` at the 1st, 2nd, 4th, 8th... failure)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.app import App
from agent.runtime.entry import board_infos
from tests.conftest import wait_until


async def test_a_task_that_keeps_failing_is_restarted_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ScaledClock(1000.0)  # restart delays 1, 2, 4, ... s pass in milliseconds
    app = App(cfg.load(cfg.EXAMPLE, board_infos()), data_dir=tmp_path, clock=clock)
    await app.outbox.start()
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"bug number {calls}")

    try:
        with caplog.at_level(logging.ERROR, logger="agent.app"):
            app._spawn("broken", broken)
            await wait_until(lambda: app.restarts.get("broken", 0) >= 9, timeout=10)
        await app.outbox.flush()
        events = [r for _, r in app.outbox.peek(1000) if r.point == "event.agent.task_failed"]
        bodies = [json.loads(r.value) for r in events]
        assert [b["failures"] for b in bodies][:4] == [1, 2, 4, 8]
        assert {b["task"] for b in bodies} == {"broken"}
        assert bodies[0]["error"] == "RuntimeError: bug number 1"
        assert app.status()["task_restarts"]["broken"] >= 9
        assert any("task broken failed (1 times)" in r.getMessage() for r in caplog.records)
    finally:
        for t in app._tasks:
            t.cancel()
        await asyncio.gather(*app._tasks, return_exceptions=True)
        await app.outbox.close()
