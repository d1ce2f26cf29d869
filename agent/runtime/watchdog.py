"""The agent's side of the service watchdog (docs/ota.md, "systemd"): READY=1 once the app
has started, then WATCHDOG=1 at a third of the interval — but only while the agent is
healthy: the event loop runs (this task runs in it) and the control loop keeps stepping.
A stuck control loop stops the pings, and the launcher (or systemd) restarts the agent;
during the trial of a new release that counts as a failed start.

The interval is real time (the launcher's watchdog is), so this uses the event loop's
clock, not the app's (possibly scaled) clock. Without NOTIFY_SOCKET it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os

from agent.remote.host import Host
from ota import sdnotify

log = logging.getLogger("agent.watchdog")

DEFAULT_INTERVAL_S = 30.0
STALL_PERIODS = 3  # periods without a control step before the pings stop


class Watchdog:
    def __init__(self, app: Host) -> None:
        self.app = app
        self.pings = 0
        self.withheld = 0
        self._last_steps = -1
        self._stalled = 0  # periods without a control step

    @staticmethod
    def wanted() -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def healthy(self) -> bool:
        controls = self.app.controls
        if not controls.active or controls.steps != self._last_steps:
            self._last_steps, self._stalled = controls.steps, 0
            return True
        self._stalled += 1
        return self._stalled < STALL_PERIODS

    async def run(self) -> None:
        interval = sdnotify.watchdog_interval() or DEFAULT_INTERVAL_S
        period = max(0.05, interval / 3)
        sdnotify.ready()
        sdnotify.status(f"running, cabinet {self.app.config.cabinet_id}")
        while True:
            if self.healthy():
                sdnotify.watchdog()
                self.pings += 1
            else:
                self.withheld += 1
                if self.withheld == 1:
                    log.error(
                        "control loop has not stepped for %d watchdog periods: watchdog pings stop", self._stalled
                    )
            await asyncio.sleep(period)
