"""The built-in commands every cabinet answers (docs/commands.md): ping, status,
light.override, light.cancel, alarm.ack, log.level, reboot.

Each is a method of `Builtins`, given only what it needs of the agent (`Host`); the
lighting commands are the control loop's own actions, so a command and the local
`cabinet light` command line share their validation, persistence and audit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import agent
from agent.logs import LEVELS as LOG_LEVELS
from agent.remote.downlink import Downlink
from agent.remote.host import Host
from agent.wire.commands import Arg, Command

log = logging.getLogger("agent.downlink")

OUTBOX_KEYS = ("rows_pending", "rows_sealed", "batches_unacked", "oldest_pending_age_s", "bytes")
LIGHT_OVERRIDE_ARGS = {
    "on": Arg("bool"),
    "level": Arg("number", min=0, max=100),
    "segments": Arg("list[str]", max_len=64),
    "for_s": Arg("number", min=1, max=366 * 86400),
    "until": Arg("int", min=0),
    "forever": Arg("bool"),
}


class Builtins:
    def __init__(self, dl: Downlink, host: Host) -> None:
        self.dl, self.host = dl, host

    def install(self) -> None:
        dl = self.dl
        dl.register("ping", self.ping, {}, clock_free=True)
        dl.register("status", self.status, {}, clock_free=True)
        if self.host.controls.active:
            dl.register("light.override", self.light_override, LIGHT_OVERRIDE_ARGS)
            dl.register("light.cancel", self.light_cancel, {"segments": Arg("list[str]", max_len=64)})
            dl.register("alarm.ack", self.alarm_ack, {"id": Arg("str", required=True, max_len=128)})
        dl.register("log.level", self.log_level, {"level": Arg("str", required=True, choices=LOG_LEVELS)})
        dl.register("reboot", self.reboot, {"delay_s": Arg("number", min=0, max=60)})

    async def ping(self, cmd: Command) -> dict[str, Any]:
        clock = self.host.clock
        return {"pong": True, "t": clock.now(), "uptime_s": round(clock.monotonic() - self.host.started_mono, 3)}

    async def status(self, cmd: Command) -> dict[str, Any]:
        host, controls = self.host, self.host.controls
        brief = host.brief()
        ob = brief["outbox"]
        up = host.uplink.snapshot() if host.uplink else {}
        return {
            "version": agent.__version__,
            "config_sha256": host.config.sha256,
            "cabinet": host.config.cabinet_id,
            "clock_trusted": self.dl.clock_trusted(),
            "t": host.clock.now(),
            "points": brief["points"],
            "alarms": controls.alarms.active() if controls.active else [],
            "lighting_mode": controls.mode if controls.active else None,
            "outbox": {k: ob.get(k) for k in OUTBOX_KEYS if k in ob},
            "uplink": {k: v for k, v in up.items() if k in ("state", "batches_sent", "batches_acked")},
            "downlink": {
                k: v for k, v in self.dl.snapshot().items() if k in ("received", "accepted", "rejected", "by_reason")
            },
        }

    async def light_override(self, cmd: Command) -> dict[str, Any]:
        a = cmd.args
        level = a.get("level")
        args: dict[str, Any] = {
            "on": a.get("on", level is None or level > 0),
            "source": f"cmd:{cmd.operator}",
            "note": cmd.cid,
        }
        for k in ("level", "segments", "until", "forever"):
            if k in a:
                args[k] = a[k]
        if "for_s" in a:
            args["minutes"] = a["for_s"] / 60
        res = await self.host.controls.override(args)
        return {"override": res["override"]}

    async def light_cancel(self, cmd: Command) -> dict[str, Any]:
        return await self.host.controls.cancel({**cmd.args, "source": f"cmd:{cmd.operator}"})

    async def alarm_ack(self, cmd: Command) -> dict[str, Any]:
        return await self.host.controls.acknowledge({"id": cmd.args["id"], "by": f"cmd:{cmd.operator}"})

    async def log_level(self, cmd: Command) -> dict[str, Any]:
        root = logging.getLogger()
        before = logging.getLevelName(root.level).lower()
        root.setLevel(cmd.args["level"].upper())
        log.warning("log level %s -> %s by command %s", before, cmd.args["level"], cmd.cid)
        return {"before": before, "level": cmd.args["level"]}

    async def reboot(self, cmd: Command) -> dict[str, Any]:
        delay = float(cmd.args.get("delay_s", 1.0))
        log.warning("graceful restart in %.1f s by command %s (operator %s)", delay, cmd.cid, cmd.operator)
        asyncio.get_running_loop().call_later(delay, self.host.request_stop)
        return {"stopping_in_s": delay}
