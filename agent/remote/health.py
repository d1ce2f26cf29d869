"""The health gate's checks, shared by a config on trial (agent/remote/config_apply.py) and a new
release on trial (agent/remote/ota_service.py): every bus has completed a transaction, the
control loop has ticked (when there is one), and the uplink is connected — for a release,
the ingest must also have acknowledged a batch sent by this process."""

from __future__ import annotations

from typing import Any


def initial(app: Any) -> dict[str, bool]:
    checks = {f"bus:{n}": False for n in app.engines}
    if app.controls.active:
        checks["control"] = False
    if app.uplink is not None:
        checks["uplink"] = False
    return checks


def update(app: Any, checks: dict[str, bool], *, need_ack: bool = False) -> bool:
    """Mark what has become true since; True when every check passed."""
    for n, e in app.engines.items():
        if e.stats.get("completed", 0) > 0:
            checks[f"bus:{n}"] = True
    if "control" in checks and app.controls.steps > 0:
        checks["control"] = True
    if (
        "uplink" in checks
        and app.uplink.state == "connected"
        and (not need_ack or app.uplink.stats["batches_acked"] > 0)
    ):
        checks["uplink"] = True
    return all(checks.values())
