"""`cabinet rig run` with the plant's weather, a cut cable and a clock unset at boot: one short
run (8 simulated minutes, as fast as possible on virtual time) of the real agent on the
simulated cabinet. The [weather] curves reach the plant (the cabinet the agent measures
follows a freezing, humid night), the cut cable raises `no_power` (not `lamp_failure`) with
the segment still commanded on, and the agent boots not trusting its clock (fail-safe on the
photocell, `lighting.clock`) until the scenario's `clock_sync`, exactly then."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tools.cli.table import main as cli_main
from tools.rig import record, runner, scenario

SCENARIO = """
[scenario]
name = "plant-clock"
start = 2026-11-18T03:00:00+01:00
duration = "8m"

[weather]
temperature = [["start", -8.0], ["end", -10.0]]
humidity = [["start", 97]]
cloud = 1.0

[[action]]
at = "0s"
kind = "clock_unset"

[[action]]
name = "theft"
at = "2m"
kind = "cable_cut"
circuit = "segment1"

[[action]]
name = "sync"
at = "4m"
kind = "clock_sync"

[[expect]]
kind = "segment"
segment = "seg3"
state = "on"
level = 100
reason = "failsafe:clock-unknown"
from = "start+30s"
to = "@sync"

[[expect]]
kind = "alarm"
alarm = "lighting.clock"
after = "start"
within = "30s"
cleared_after = "@sync"
cleared_within = "30s"

[[expect]]
kind = "alarm"
alarm = "lighting.seg1.no_power"
after = "@theft"
within = "5m"
severity = "critical"

[[expect]]
kind = "segment"
segment = "seg1"
state = "on"
from = "@theft"
to = "end"

[[expect]]
kind = "segment"
segment = "seg3"
state = "on"
reason = "program:"
from = "@sync+30s"
to = "end"

[[expect]]
kind = "no_other_alarms"
allowed = ["lighting.failsafe", "climate.*"]
"""


def test_the_run_config_carries_the_weather_and_the_cut(tmp_path: Path) -> None:
    sc_path = tmp_path / "s.toml"
    sc_path.write_text(SCENARIO)
    sc = scenario.load(sc_path)

    doc = tomllib.loads(runner.run_config(sc, 1.0))
    assert doc["sim"]["weather"] == {
        "temperature": [[0.0, -8.0], [480.0, -10.0]],
        "humidity": [[0.0, 97]],
        "cloud": [[0.0, 1.0]],
    }
    assert {"at_s": 120.0, "cmd": "circuit", "circuit": "segment1", "cut": True} in doc["sim"]["script"]
    assert runner.clock_env(sc) == {"VTIME_CLOCK_UNSET_UNTIL": repr(sc.start + 240)}


@pytest.mark.integration
def test_weather_cable_cut_and_unset_clock_reach_the_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "plant-clock.toml"
    sc.write_text(SCENARIO)
    out = tmp_path / "out"
    rc = cli_main(["rig", "run", str(sc), "--report", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    rec = record.load(out / "plant-clock" / "run.json")
    temps = [v for _, v in rec.series[record.TEMPERATURE] if v is not None]
    assert temps and max(temps) < 0.0  # the plant's own day curve would be ~7..17 degC
    assert not [a for a in rec.alarms if a.id == "lighting.seg1.lamp_failure"]  # a cut cable, not lamps
    seg3 = [d for d in rec.decisions if d.segment == "seg3"]
    sync = rec.start + 240
    assert all(d.reason.startswith("failsafe:") for d in seg3 if d.t < sync)
    first_program = min(d.t for d in seg3 if d.reason.startswith("program:"))
    assert sync <= first_program < sync + 5  # the clock is trusted exactly at clock_sync
