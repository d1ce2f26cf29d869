"""The lighting benchmark runs with a tiny size and reports its keys (figures are
measured by `python -m tools.bench lighting`, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.bench import lighting


def test_lighting_bench_reports_step_cost_and_year_figures():
    out = lighting.run(steps=200, days=2, step_s=600)
    assert {"step_us", "year_s", "year_wall_s", "year_steps", "segments"} <= set(out)
    assert out["step_us"] > 0 and out["year_s"] > 0 and out["year_steps"] == 2 * 86400 // 600
    assert out["segments"] == 3 and out["switches"] >= 1  # the example cabinet lit its segments
    assert "met" not in out  # the target is judged only for a whole year


@pytest.mark.integration
def test_bench_command_accepts_the_lighting_workload():
    proc = subprocess.run([sys.executable, "-m", "tools.bench", "--help"], capture_output=True, text=True, timeout=60)
    assert "lighting" in proc.stdout
    json.dumps(lighting.run(steps=10, days=0.5, step_s=3600))
