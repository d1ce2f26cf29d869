"""`cabinet rig run`: the real agent as its own process on the simulated cabinet, judged.

One short run (5 simulated minutes, as fast as possible on virtual time) with a door opened and closed through the
simulator's script, one expectation that holds and one built to fail: the verdicts, the
exit code, the JUnit file and the report say so. Scenarios with actions this runner cannot
carry out are refused before anything starts (exit 2).
"""

from __future__ import annotations

import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools.cli.table import main as cli_main
from tools.rig import record

SCENARIO = """
[scenario]
name = "door-short"
description = "Berlin evening: the door opened for 2 minutes"
start = 2026-09-16T21:00:00+02:00
duration = "5m"

[[action]]
name = "open"
at = "1m"
kind = "door"
open = true

[[action]]
name = "close"
at = "3m"
kind = "door"
open = false

[[expect]]
kind = "alarm"
alarm = "climate.door_open"
after = "@open"
within = "30s"
cleared_after = "@close"
cleared_within = "1m"

[[expect]]
kind = "energy"             # the agent's accounting against what the plant drew
tolerance = 0.1

[[expect]]
name = "built-to-fail"
kind = "segment"
segment = "seg1"
state = "off"
from = "2m"
to = "end"
"""


@pytest.mark.integration
def test_a_run_is_judged_reported_and_written_as_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "door.toml"
    sc.write_text(SCENARIO)
    out, xml = tmp_path / "out", tmp_path / "junit.xml"
    rc = cli_main(["rig", "run", str(sc), "--report", str(out), "--junit", str(xml)])
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "FAIL door-short: 2/3 expectations" in text and "failed built-to-fail" in text
    rec = record.load(out / "door-short" / "run.json")
    assert rec.exit.status == "stopped"
    [door] = [a for a in rec.alarms if a.id == "climate.door_open"]
    assert 0 <= door.raised - (rec.start + 60) < 30 and door.cleared is not None
    assert [a.action for a in rec.actions] == ["door", "door"]
    assert rec.series[record.segment_series("seg1", "on")][-1][1] == 1.0  # the evening: on, so "off" failed
    suite = ET.parse(xml).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    assert set(rec.plant_energy_kwh) == {"seg1", "seg2", "seg3"} and rec.plant_energy_kwh["seg1"] > 0.1  # 1.8 kW, 5 min
    html = (out / "door-short" / "report.html").read_text()
    assert "built-to-fail" in html and html.count("<img") >= 5


def test_actions_the_runner_cannot_do_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = tmp_path / "ota.toml"
    sc.write_text(
        SCENARIO.replace('duration = "5m"', 'duration = "5m"\nuplink = true\n')
        + '\n[[action]]\nat = "1m"\nkind = "ota_offer"\ndeployment = "rel-1"\ntarget = "a.bundle"\n'
    )
    assert cli_main(["rig", "run", str(sc), "--report", str(tmp_path / "out")]) == 2
    assert "cabinet-boot" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_check_names_file_section_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "bad.toml"
    sc.write_text(SCENARIO.replace('kind = "door"\nopen = true', 'kind = "dooor"\nopen = true'))
    assert cli_main(["rig", "check", str(sc)]) == 2
    out = capsys.readouterr().out
    assert str(sc) in out and "kind" in out and "door" in out


@pytest.mark.integration
def test_an_agent_that_dies_is_a_failed_run_with_its_log_never_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent under test exits at once (its data dir is held by another agent): the run
    fails as `crashed`, with the agent's log in the record, the JUnit file and the report."""
    from agent.runtime.datadir import DataDirLock

    sc, xml = tmp_path / "door.toml", tmp_path / "junit.xml"
    sc.write_text(SCENARIO)
    # a short report path, so the runner keeps the data dir there (a long one moves it to /tmp)
    out = Path(tempfile.mkdtemp(prefix="rig-", dir="/tmp"))
    try:
        with DataDirLock(out / "door-short" / "data"):
            rc = cli_main(["rig", "run", str(sc), "--report", str(out), "--junit", str(xml)])
        _check_crashed(out, xml, rc, capsys.readouterr().out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _check_crashed(out: Path, xml: Path, rc: int, printed: str) -> None:
    assert rc == 1
    assert "agent crashed" in printed, printed
    rec = record.load(out / "door-short" / "run.json")
    assert rec.exit.status == "crashed" and any("another agent" in line for line in rec.exit.log_tail)
    suite = ET.parse(xml).getroot()
    assert suite.get("errors") == "1"
    assert "another agent" in (out / "door-short" / "report.html").read_text()
