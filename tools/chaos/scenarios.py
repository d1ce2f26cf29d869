"""The faults the suite injects, one scenario each, on a running `Rig`:

    kill    SIGKILL the agent and its simulated cabinet (the process group: a power cut) at a
            random moment of its life, `kills` times, restarting it each time
    ingest  SIGKILL the ingest at a random moment, leave it down 0-2 s, restart it, `ingest_restarts` times
    broker  stop the broker (SIGTERM and SIGKILL, alternately) for `outage_s`, restart it on the
            same port, `broker_restarts` times, waiting for the pipeline to recover after each
    clock   the cabinet's clock jumps at a reboot: the agent is killed and restarted with the
            simulated clock one day behind, then one day ahead, then right again. The simulator
            has no way to step its clock while running (boards/sim/control.py), so a jump
            happens across a restart, as an RTC losing its time over a power cut does
    disk    the agent's data dir is a DISK_MB tmpfs (for the whole run: mounted before the agent
            starts; needs root, else skipped); a filler file takes every free byte of it at a
            random moment and is deleted `full_s` later, `disk_fills` times

The random moments come from one seeded generator, so a seed replays the same schedule
(the processes' own timing still varies). Every scenario stops injecting once the time
budget is spent, and ends by waiting (at most `recover_s`) for a batch stored after its
last fault, so the next scenario starts on a working pipeline.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter
from dataclasses import dataclass

from tools.chaos.rig import Rig

SCENARIOS = ("kill", "ingest", "broker", "clock", "disk")
DEFAULT = SCENARIOS
DISK_MB = 16  # the outbox caps itself at half of (free + its own files): 8 MiB here
CLOCK_JUMPS_S = (-86_400.0, +86_400.0, 0.0)  # the simulated clock at each reboot, relative to real time


@dataclass(frozen=True)
class Plan:
    kills: int = 200
    ingest_restarts: int = 20
    broker_restarts: int = 3
    outage_s: float = 5.0
    disk_fills: int = 3
    full_s: float = 5.0  # how long the disk stays full
    seconds: float = 3600.0  # fault-injection budget (the drain comes after it)
    recover_s: float = 30.0  # at the end of a scenario: wait at most this for a new batch
    kill_after_s: tuple[float, float] = (0.2, 5.0)  # the agent's life before its kill, uniform
    seed: int = 13


class Runner:
    def __init__(self, rig: Rig, plan: Plan) -> None:
        self.rig = rig
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.deadline = time.monotonic() + plan.seconds
        self.done: Counter[str] = Counter()
        self.skipped: dict[str, str] = {}
        self.budget_spent = False

    def run(self, name: str) -> None:
        getattr(self, f"_{name}")()
        if self.rig.faults:
            self.rig.wait_batch_after(self.rig.faults[-1].back_t, self.plan.recover_s)

    def _more(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.budget_spent = True
        return not self.budget_spent

    def _restart_agent(self, kind: str) -> None:
        """SIGKILL the agent's process group, look at what it left in the outbox, start it again."""
        struck = time.time()
        self.rig.agent.kill()
        self.rig.look()  # every row it committed before it died (nothing deletes them while it is down)
        self.rig.agent.start()
        self.rig.fault(kind, struck)
        self.done[kind] += 1

    def _kill(self) -> None:
        lo, hi = self.plan.kill_after_s
        for _ in range(self.plan.kills):
            self.rig.idle(self.rng.uniform(lo, hi))
            if not self._more():
                return
            self._restart_agent("kill")

    def _ingest(self) -> None:
        for _ in range(self.plan.ingest_restarts):
            self.rig.idle(self.rng.uniform(0.5, 5.0))
            if not self._more():
                return
            struck = time.time()
            self.rig.ingest.kill()
            self.rig.idle(self.rng.uniform(0.0, 2.0))
            self.rig.ingest.start()
            self.rig.fault("ingest", struck)
            self.done["ingest"] += 1

    def _broker(self) -> None:
        for i in range(self.plan.broker_restarts):
            self.rig.idle(self.rng.uniform(1.0, 4.0))
            if not self._more():
                return
            struck = time.time()
            if i % 2 == 0:
                crash = self.rig.broker.stop()
                if crash is not None:
                    self.rig.crashes.append(crash)
            else:
                self.rig.broker.kill()
            self.rig.idle(self.plan.outage_s)
            self.rig.broker.start()
            self.rig.fault("broker", struck)
            self.done["broker"] += 1
            self.rig.wait_batch_after(self.rig.faults[-1].back_t, self.plan.recover_s)

    def _clock(self) -> None:
        for jump in CLOCK_JUMPS_S:
            if not self._more():
                return
            start = "now" if jump == 0 else dt.datetime.fromtimestamp(time.time() + jump, dt.UTC).isoformat()
            self.rig.write_config(start)
            self._restart_agent("clock")
            self.rig.wait_batch_after(self.rig.faults[-1].back_t, self.plan.recover_s)
            self.rig.idle(2.0)  # readings stamped by the jumped clock go through

    def _disk(self) -> None:
        disk = self.rig.disk
        if disk is None:
            self.skipped["disk"] = self.rig.disk_error or "the rig has no small disk"
            return
        for _ in range(self.plan.disk_fills):
            self.rig.idle(self.rng.uniform(1.0, 4.0))
            if not self._more():
                return
            struck = time.time()
            disk.fill()
            self.rig.idle(self.plan.full_s)
            disk.free()
            self.rig.fault("disk", struck)
            self.done["disk"] += 1
            self.rig.wait_batch_after(self.rig.faults[-1].back_t, self.plan.recover_s)
