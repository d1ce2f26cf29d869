"""`cabinet config check` (issue 14): the point count is the running agent's, a value of the
wrong type says so once, and docs/config.md documents every section the loader accepts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.config.loader import SECTIONS
from agent.runtime.app import App, agent_points
from agent.runtime.entry import board_infos
from tests.conftest import issues_of

ROOT = Path(__file__).resolve().parent.parent
UPLINK = '\n[uplink]\nbroker = "127.0.0.1"\nport = 1883\ntls = false\n'


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "config", "check", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.parametrize("extra", ["", UPLINK], ids=["no uplink", "uplink"])
async def test_the_count_is_the_agents_process_image(tmp_path: Path, extra: str) -> None:
    """config check said 106 points where the agent showed 135: the agent adds the GPS's, the
    lighting segments' and its own telemetry's points (and the uplink's with an uplink)."""
    path = tmp_path / "cab.toml"
    path.write_text(cfg.EXAMPLE.read_text() + extra)
    config = cfg.load(path, board_infos())
    app = App(config, data_dir=tmp_path / "data", clock=ScaledClock(1.0), uplink=None)
    image = {p.name for p in app.image.points()}
    if extra:  # the App's uplink needs keys and a broker: count its points as SelfTelemetry adds them
        from agent.uplink.selftel import POINTS

        image |= {p.name for p in POINTS}
    assert sorted(p.name for p in agent_points(config, uplink=bool(extra))) == sorted(image)
    assert len(config.points()) < len(image)  # the config alone is not the count


@pytest.mark.integration  # a `cabinet config check` process
def test_config_check_prints_the_agents_count() -> None:
    config = cfg.load(cfg.EXAMPLE, board_infos())
    n = len(agent_points(config, uplink=False))
    r = check("boards/sim/cabinet.toml")
    assert r.returncode == 0, r.stderr
    assert f", {n} points ({len(config.points())} of devices and pins, {n - len(config.points())} " in r.stdout
    doc = json.loads(check("--json", "boards/sim/cabinet.toml").stdout)
    assert doc["ok"] is True and doc["points"] == n


def test_a_wrong_type_says_what_it_got_and_the_allowed_values_once() -> None:
    text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", 'baudrate = "9600"', 1)
    issues = issues_of(text, board_infos())
    [issue] = [i for i in issues if i.section == "buses.rs485" and i.key == "baudrate"]
    line = str(issue)
    assert issue.message == "expected an integer, got a string", line
    assert line.count("921600") == 1, line  # the allowed list once (it was printed twice)
    assert 'baudrate = "9600"' in line


@pytest.mark.parametrize(
    "value,got",
    [("true", "a boolean"), ("9600.0", "a decimal number"), ("[9600]", "a list"), ("{ a = 1 }", "a table")],
)
def test_every_wrong_type_is_named(value: str, got: str) -> None:
    text = cfg.EXAMPLE.read_text().replace("baudrate = 9600", f"baudrate = {value}", 1)
    [issue] = [i for i in issues_of(text, board_infos()) if i.section == "buses.rs485" and i.key == "baudrate"]
    assert issue.message == f"expected an integer, got {got}"


@pytest.mark.integration  # a `cabinet config check` process
def test_the_cli_prints_one_line_per_error_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.EXAMPLE.read_text().replace("baudrate = 9600", 'baudrate = "9600"'))
    r = check(str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[-1] == f"2 error(s) in {bad}"
    assert all("expected an integer, got a string" in x and x.count("(allowed:") == 1 for x in lines[:2])
    doc = json.loads(check("--json", str(bad)).stdout)
    assert doc["ok"] is False and [e["value"] for e in doc["errors"]] == ["9600", "9600"]
    missing = check(str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "cannot read" in missing.stdout and "Traceback" not in missing.stderr


def test_every_section_the_loader_accepts_is_in_docs_config_md() -> None:
    """`[ota]` was documented only in a docstring, and docs/config.md said the section was rejected."""
    text = (ROOT / "docs" / "config.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    missing = [s for s in SECTIONS if not any(re.search(rf"`\[{re.escape(s)}[\].]", h) for h in headings)]
    assert not missing, f"sections without a heading in docs/config.md: {missing}"
    stale = [s for s in SECTIONS if re.search(rf"unknown section \[{re.escape(s)}\]", text)]
    assert not stale, f"docs/config.md calls accepted sections unknown: {stale}"
    assert "comes with the update stage" not in text


def test_the_loader_accepts_exactly_these_sections() -> None:
    text = cfg.EXAMPLE.read_text() + "\n[nonsense]\nx = 1\n"
    [issue] = [i for i in issues_of(text, board_infos()) if "unknown section" in i.message]
    assert issue.allowed == ", ".join(SECTIONS)
