"""Scenarios of the shipped library run whole in the test suite, through `cabinet rig run` with
a JUnit file, as a rig's CI would: the shortest one here (4 simulated hours, about two minutes
on virtual time). The whole library takes about two hours of CPU on this machine (issue 15:
the day-in-a-minute target is not met, docs/benchmarks.md), so the rest run by hand:
`cabinet rig run NAME ...` with the names `cabinet rig list` prints (docs/rig.md)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools.cli.table import main as cli_main
from tools.rig import scenario

IN_CI = ("clock-unknown-at-boot",)


@pytest.mark.integration
@pytest.mark.parametrize("name", IN_CI)
def test_a_library_scenario_passes_with_its_junit_file(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert (scenario.LIBRARY / f"{name}.toml").is_file()
    xml = tmp_path / "junit.xml"
    rc = cli_main(["rig", "run", name, "--report", str(tmp_path / "out"), "--junit", str(xml)])
    text = capsys.readouterr().out
    assert rc == 0, text
    suite = ET.parse(xml).getroot()
    assert int(suite.get("tests") or 0) >= 3 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert (tmp_path / "out" / name / "report.html").is_file()
