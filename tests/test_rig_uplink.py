"""`cabinet rig run` with an uplink: a real Mosquitto and `cabinet ingest run` beside the agent
(tools/rig/uplink.py), the broker and the ingest going down and back on the timeline, and
the `delivered` expectation judged on the agent's outbox tap against the ingest's rows.

Two short runs (a few simulated minutes at the uplink pace): one where every reading
arrives exactly once although the broker and then the ingest were away, and a signed
`light.override` (the rig's operator key in the agent's [trust]) switches a segment off
for a minute; and one built to fail, whose broker never comes back, so the readings of
its last minutes are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.cli.table import main as cli_main
from tools.rig import record

pytestmark = pytest.mark.integration  # real Mosquitto, the agent, the simulator and the ingest as processes

SCENARIO = """
[scenario]
name = "uplink-short"
start = 2026-09-16T20:00:00+02:00
duration = "7m"
uplink = true

[[action]]
name = "down"
at = "1m"
kind = "broker"
up = false

[[action]]
name = "up"
at = "@down+2m"
kind = "broker"
up = true

[[action]]
name = "ingest-down"
at = "4m"
kind = "ingest"
up = false

[[action]]
at = "@ingest-down+1m"
kind = "ingest"
up = true

[[action]]
name = "cmd"
at = "5m30s"
kind = "command"
command = "light.override"
args = { on = false, segments = ["seg1"], for_s = 60 }

[[expect]]
kind = "delivered"

[[expect]]
kind = "segment"
segment = "seg1"
state = "off"
reason = "override"
from = "@cmd+5s"
to = "@cmd+55s"

[[expect]]
kind = "segment"
segment = "seg1"
state = "on"
reason = "program:"
from = "@cmd+65s"
to = "end"

[[expect]]
kind = "no_other_alarms"
"""

NEVER_BACK = """
[scenario]
name = "uplink-lost"
start = 2026-09-16T20:00:00+02:00
duration = "4m"
uplink = true

[[action]]
at = "2m"
kind = "broker"
up = false

[[expect]]
kind = "delivered"
"""


def test_every_reading_arrives_once_after_a_broker_and_an_ingest_outage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = tmp_path / "uplink.toml"
    sc.write_text(SCENARIO)
    out = tmp_path / "out"
    rc = cli_main(["rig", "run", str(sc), "--report", str(out), "--junit", str(tmp_path / "j.xml")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "at 50x" in text  # uplink scenarios are paced (their broker and ingest run in real time)
    rec = record.load(out / "uplink-short" / "run.json")
    assert [a.action for a in rec.actions] == ["broker", "broker", "ingest", "ingest", "command"]
    assert all(a.ok for a in rec.actions), rec.actions
    assert rec.actions[0].outcome == "broker stopped" and rec.actions[3].outcome.startswith("ingest started")
    assert "signed light.override" in rec.actions[4].outcome and "done" in rec.actions[4].outcome
    for a, at in zip(rec.actions, (60, 180, 240, 300, 330), strict=True):
        assert 0 <= a.t - (rec.start + at) < 5  # carried out within seconds of their time
    assert rec.deliveries is not None
    produced = sum(d.produced for d in rec.deliveries.values())
    assert produced > 1000 and all(d.missing == 0 and d.duplicates == 0 for d in rec.deliveries.values())
    assert "climate.temperature" in rec.deliveries and "alarm.climate.door_open" not in rec.deliveries
    log = (out / "uplink-short" / "uplink" / "mosquitto.log").read_text()
    assert log.count("running") == 2  # started, stopped, started again on the same port


def test_a_broker_that_never_comes_back_fails_delivered_with_the_missing_readings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = tmp_path / "lost.toml"
    sc.write_text(NEVER_BACK)
    out = tmp_path / "out"
    rc = cli_main(["rig", "run", str(sc), "--report", str(out)])
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "missing" in text
    rec = record.load(out / "uplink-lost" / "run.json")
    assert rec.exit.status == "stopped" and rec.deliveries is not None
    assert sum(d.missing for d in rec.deliveries.values()) > 0
    assert "missing" in (out / "uplink-lost" / "report.html").read_text()
