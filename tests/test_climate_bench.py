"""The climate benchmark runs and reports its keys (figures are recorded in
docs/benchmarks.md by `python -m tools.bench climate`, never asserted here)."""

from __future__ import annotations

import json

from tools.bench import climate
from tools.bench.__main__ import main


def test_climate_bench_reports_its_figures():
    out = climate.run(days=0.05)
    assert {"step_us", "step_alarms_us", "week_s", "steps", "switches", "cabinet_c", "min_dew_margin_k", "met"} <= set(
        out
    )
    assert out["step_us"] > 0 and out["week_s"] > 0 and out["steps"] > 400  # 72 min: a poll every 10 s at least
    assert set(out["met"]) == {"week_s<=10"}
    json.dumps(out, allow_nan=False)


def test_climate_bench_command_line(capsys):
    main(["climate", "--json", "--seconds", "1800"])
    out = json.loads(capsys.readouterr().out)
    assert out["days"] == 1800 / 86_400 and "step_us" in out
