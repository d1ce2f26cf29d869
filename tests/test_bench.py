"""The benchmarks run and report their keys (figures themselves are not asserted:
speed is measured by `python -m tools.bench`, recorded in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from tools.bench import rtu, w1

pytestmark = pytest.mark.integration  # the device simulator runs in its own process


async def test_w1_reports_its_figures_and_the_plan_optimum():
    out = await w1.run(seconds=2.0, devices=3, warmup=1.0)
    assert {"tx_per_cycle", "values_per_cpu_s", "rss_mb"} <= set(out)
    assert out["tx_per_cycle"] == 3  # one request per device: the planner's optimum
    assert out["failures"] == 0 and out["points_not_good"] == 0
    assert out["values"] > 0 and out["rss_mb"] > 0


async def test_rtu_bench_reports_line_efficiency_and_dead_device_rate():
    out = await rtu.run(seconds=2.0)
    assert {"line_efficiency", "dead_device_rate_kept", "cycle_limit_ms"} <= set(out)
    assert 0 < out["line_efficiency"] <= 1.05
    assert out["dead_device_attempts"] <= 3  # backoff: the dead device is rarely retried
    # 4 x (8 + 45 bytes at 11 bits / 9600 Bd + 2 x 3.5 characters) = 275 ms
    assert abs(out["cycle_limit_ms"] - 275.0) < 0.5
