"""JUnit XML of rig runs: one testsuite per scenario, one testcase per expectation, the
evidence in each failure, and a crashed agent as an error testcase with its log tail."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.test_rig_expect import T02, T04, WHOLE
from tests.test_rig_record import synthetic
from tools.rig.expect import AlarmExpect, DeliveredExpect, NoOtherAlarms, judge_all
from tools.rig.junit import SuiteResult, to_xml


def results(crashed: bool = False) -> SuiteResult:
    r = synthetic(crashed=crashed)
    exps = [
        AlarmExpect("lamp failure detected", "lighting.seg2.lamp_failure", T02, 300, T04, 300),
        NoOtherAlarms("no other alarms", ("lighting.seg2.lamp_failure",), WHOLE),  # fails: the door alarm
        DeliveredExpect("every reading once"),
    ]
    return SuiteResult(r, tuple(judge_all(exps, r)))


def test_counts_and_failure_evidence():
    ok = results()
    bad = SuiteResult(ok.record, ok.verdicts)
    root = ET.fromstring(to_xml([ok, bad]))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "2", "0")
    suites = root.findall("testsuite")
    assert len(suites) == 2
    s = suites[0]
    assert (s.get("name"), s.get("tests"), s.get("failures"), s.get("errors")) == ("synthetic", "3", "1", "0")
    cases = s.findall("testcase")
    assert [c.get("name") for c in cases] == ["lamp failure detected", "no other alarms", "every reading once"]
    assert cases[0].find("failure") is None
    f = cases[1].find("failure")
    assert f is not None and "climate.door_open" in (f.get("message") or "")
    assert f.text is not None and f.text.startswith("at 2026-06-21 13:00:00 CEST") and "climate.door_open" in f.text
    props = {p.get("name"): p.get("value") for p in s.iter("property")}
    assert props["speed"] == "max" and props["config"] == "CAB-SIM-0001"
    assert not ok.passed


def test_a_crashed_agent_is_an_error_testcase_with_its_log():
    res = results(crashed=True)
    root = ET.fromstring(to_xml([res]))
    s = root.find("testsuite")
    assert s is not None and (s.get("tests"), s.get("errors")) == ("4", "1")
    err = s.findall("testcase")[-1]
    assert err.get("name") == "agent"
    e = err.find("error")
    assert e is not None and e.get("type") == "crashed" and "exit code 1" in (e.get("message") or "")
    assert e.text is not None and "ERROR boom: <&> \ufffd" in e.text  # escaped, control character replaced
    assert root.get("errors") == "1"
