"""The health gate's checks, shared by a config on trial (agent/remote/config_apply.py) and a new
release on trial (agent/remote/ota_service.py): every bus has completed a transaction, the
control loop has ticked (when there is one), and the uplink is connected — for a release,
the ingest must also have acknowledged a batch sent by this process."""

from __future__ import annotations

from agent.remote.host import Host


def initial(app: Host) -> dict[str, bool]:
    checks = {f"bus:{n}": False for n in app.engines}
    if app.controls.active:
        checks["control"] = False
    if app.uplink is not None:
        checks["uplink"] = False
    return checks


def update(app: Host, checks: dict[str, bool], *, need_ack: bool = False) -> bool:
    """Mark what has become true since; True when every check passed."""
    for n, e in app.engines.items():
        if e.stats.get("completed", 0) > 0:
            checks[f"bus:{n}"] = True
    if "control" in checks and app.controls.steps > 0:
        checks["control"] = True
    up = app.uplink
    if "uplink" in checks and up is not None and up.state == "connected":
        checks["uplink"] = not need_ack or up.stats["batches_acked"] > 0
    return all(checks.values())
