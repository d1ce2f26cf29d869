"""The console's audit trail: every login (good or bad), logout and action is a log line and an
event in the outbox (`event.console.login|logout|action`, Priority.EVENT) that the cloud gets
with the next batch: who (user, role, client address), what (the action and its arguments),
when (the cabinet's wall clock), and how it ended."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.model import Priority, Quality, Reading

log = logging.getLogger("agent.console")

Put = Callable[[list[Reading], Priority], Awaitable[None]]


class Audit:
    def __init__(self, put: Put | None, wall: Callable[[], float]) -> None:
        self.put, self.wall = put, wall
        self.recorded = 0

    async def record(self, kind: str, who: str, role: str | None, peer: str, **detail: Any) -> None:
        body = {"user": who, "role": role, "from": peer, **detail}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        level = logging.INFO if detail.get("ok", True) else logging.WARNING
        log.log(level, "console %s: %s", kind, text)
        self.recorded += 1
        if self.put is None:
            return
        try:
            await self.put([Reading(f"event.console.{kind}", self.wall(), text, Quality.GOOD)], Priority.EVENT)
        except Exception as e:  # noqa: BLE001 - an outbox that fails is reported by the outbox; the log has the event
            log.warning("console event not queued: %s", e)
