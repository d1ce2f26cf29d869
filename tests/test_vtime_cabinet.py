"""The example cabinet and the real agent (`python -m agent run`, which starts the
simulated cabinet as its child) on one virtual time, as fast as possible: every point
stays good, no alarm fires, an injected lamp failure is detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runtime.status_api import request
from boards.sim.vtime import rig


@pytest.mark.integration
def test_example_cabinet_holds_at_speed_and_detects_a_lamp_failure(tmp_path: Path) -> None:
    run = ["--seconds", "420", "--check-every", "30", "--data-dir", str(tmp_path)]
    args = rig.parser().parse_args([*run, "--fail", "segment1", "--fail-at", "120"])
    out = rig.run(args, status=lambda path: request(path, timeout=10))
    checks = out["checks"]
    assert len(checks) >= 12 and not [c for c in checks if "error" in c]
    assert all(c["points"] == 127 and not c["not_good"] for c in checks), checks  # nothing stale or bad
    before = [c for c in checks if c["t"] < out["fail"]["at"]]
    assert before and all(not c["alarms"] for c in before), before  # no false alarm
    assert all(set(c["alarms"]) <= {"lighting.seg1.lamp_failure"} for c in checks), checks
    assert out["fail"]["detected_at"] is not None, checks
    assert out["virtual_s"] >= 420 and out["virtual_per_wall"] > 20, out
    assert out["ok"]
