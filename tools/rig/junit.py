"""JUnit XML for CI: one testsuite per scenario run, one testcase per expectation.

A failed expectation is a `<failure>` whose message is the verdict's message and whose
text holds the evidence (time in the site's zone, value). An agent that did not last
the run (crashed, or hung and killed) adds an `<error>` testcase `agent` with its exit
and the tail of its log, so the CI shows the crash beside the expectations it broke.
Pure: builds a string (xml.etree); the caller writes the file.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from tools.rig.expect import Verdict, local
from tools.rig.record import RunRecord


@dataclass(frozen=True)
class SuiteResult:
    """One scenario's run and verdicts; `error`: the run could not be judged at all (its message)."""

    record: RunRecord
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        return not self.record.exit.crashed and all(v.passed for v in self.verdicts)


def evidence_text(r: RunRecord, v: Verdict) -> str:
    """The evidence of a verdict as one line: `at 2026-06-21 21:45:00 CEST: {"on": false ...}`."""
    if v.evidence is None:
        return "no evidence"
    value = json.dumps(v.evidence.value, ensure_ascii=False, sort_keys=True, default=str)
    if v.evidence.t is None:
        return f"over the run: {value}"
    return f"at {local(r, v.evidence.t)}: {value}"


def _clean(text: str) -> str:
    """Text XML 1.0 can hold: control characters (a garbled log line) become U+FFFD."""
    return "".join(c if c in "\t\n\r" or ord(c) >= 0x20 else "\ufffd" for c in text)


def to_xml(results: Iterable[SuiteResult]) -> str:
    root = ET.Element("testsuites", name="cabinet rig")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for res in results:
        suite = _suite(res)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, n in totals.items():
        root.set(key, str(n))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(res: SuiteResult) -> ET.Element:
    r = res.record
    crashed = r.exit.crashed
    failures = sum(1 for v in res.verdicts if not v.passed)
    suite = ET.Element(
        "testsuite",
        name=r.scenario,
        tests=str(len(res.verdicts) + (1 if crashed else 0)),
        failures=str(failures),
        errors=str(1 if crashed else 0),
        skipped="0",
        time=f"{r.wall_s or 0.0:.3f}",
        file=r.scenario_file,
    )
    props = ET.SubElement(suite, "properties")
    for k, val in (
        ("config", r.config_id),
        ("start", local(r, r.start)),
        ("end", local(r, r.end)),
        ("speed", "max" if r.speed is None else f"{r.speed:g}"),
    ):
        ET.SubElement(props, "property", name=k, value=val)
    for v in res.verdicts:
        case = ET.SubElement(suite, "testcase", name=_clean(v.name), classname=f"rig.{r.scenario}.{v.kind}", time="0")
        if not v.passed:
            f = ET.SubElement(case, "failure", message=_clean(v.message), type=v.kind)
            f.text = _clean(evidence_text(r, v))
    if crashed:
        case = ET.SubElement(suite, "testcase", name="agent", classname=f"rig.{r.scenario}.agent", time="0")
        code = "no exit code" if r.exit.code is None else f"exit code {r.exit.code}"
        msg = f"the agent {r.exit.status} ({code}){': ' + r.exit.message if r.exit.message else ''}"
        e = ET.SubElement(case, "error", message=_clean(msg), type=r.exit.status)
        e.text = _clean("\n".join(r.exit.log_tail) or "(no log)")
    return suite
