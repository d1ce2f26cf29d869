"""`cabinet rig`: run scenarios against the real agent on the simulated cabinet.

    cabinet rig list                                   the scenario library (tools/rig/scenarios/)
    cabinet rig check SCENARIO...                      validate; every error with file, section, key
    cabinet rig run SCENARIO... [--report DIR] [--junit FILE] [--speed N]

SCENARIO: a file, or the name of a library scenario (`lamp-failures`). Exit codes: 0 every
expectation passed (check: no errors), 1 an expectation failed or the agent crashed, 2 a
scenario with errors or one this runner cannot carry out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.config.schema import ConfigError
from agent.runtime.entry import board_infos
from tools.rig import scenario as scn


def add_parsers(sub: Any) -> None:
    rig = sub.add_parser("rig", help="hardware-in-the-loop scenarios: run the agent through them, judge, report")
    rsub = rig.add_subparsers(dest="rig_command", required=True, metavar="SUBCOMMAND")
    ls = rsub.add_parser("list", help="the scenario library with each scenario's description")
    ls.set_defaults(func=list_main)
    ck = rsub.add_parser("check", help="validate scenarios: every error at once; exit 2 on errors")
    ck.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="a scenario file or a library name")
    ck.set_defaults(func=check_main)
    rn = rsub.add_parser(
        "run",
        help="run scenarios: the agent as its own process on the simulated cabinet; exit 1 if any expectation failed",
        epilog="exit codes: 0 all passed, 1 an expectation failed or the agent crashed, 2 a scenario with errors",
    )
    rn.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="a scenario file or a library name")
    rn.add_argument("--report", metavar="DIR", help="write DIR/<scenario>/report.html and run.json (default rig-out)")
    rn.add_argument("--junit", metavar="FILE", help="write JUnit XML: one testcase per expectation")
    rn.add_argument("--speed", type=float, help="simulated seconds per second (default: the scenario's)")
    rn.set_defaults(func=run_main)


def pace(speed: float | None) -> str:
    return f"at {speed:g}x" if speed else "as fast as possible"


def resolve(name: str) -> Path:
    """A file path, or the library scenario of that name."""
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        return p
    return scn.LIBRARY / f"{name}.toml"


def list_main(_a: argparse.Namespace) -> int:
    for path in scn.library():
        try:
            sc = scn.load(path, board_infos())
            print(f"{path.stem:28s} {sc.description}")
        except ConfigError as e:
            print(f"{path.stem:28s} INVALID: {len(e.issues)} error(s)")
    return 0


def check_main(a: argparse.Namespace) -> int:
    bad = 0
    for name in a.scenarios:
        path = resolve(name)
        issues = scn.check(path, board_infos())
        for issue in issues:
            print(issue)
        print(f"{path}: {len(issues)} error(s)" if issues else f"{path}: OK")
        bad += bool(issues)
    return 2 if bad else 0


def run_main(a: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401 - the report's plots
        import tomli_w  # noqa: F401 - the run's config
    except ModuleNotFoundError as e:
        print(f"cabinet rig run: needs {e.name}, which is not installed: pip install -e '.[rig]'", file=sys.stderr)
        return 2
    from tools.rig import junit, record, report  # deferred: matplotlib (the `rig` extra)
    from tools.rig.runner import RunError, run

    out = Path(a.report or "rig-out")
    scenarios = []
    for name in a.scenarios:
        try:
            scenarios.append(scn.load(resolve(name), board_infos()))
        except ConfigError as e:
            for issue in e.issues:
                print(issue, file=sys.stderr)
            return 2
    results = []
    for sc in scenarios:
        try:
            res = run(sc, out / sc.name, speed=a.speed)
        except RunError as e:
            print(f"cabinet rig run: {e}", file=sys.stderr)
            return 2
        record.save(res.record, res.work / "run.json")
        (res.work / "report.html").write_text(report.render(res.record, res.verdicts))
        results.append(junit.SuiteResult(res.record, res.verdicts))
        failed = [v for v in res.verdicts if not v.passed]
        verdict = "PASS" if res.passed else "FAIL"
        print(
            f"{verdict} {sc.name}: {len(res.verdicts) - len(failed)}/{len(res.verdicts)} expectations, "
            f"{res.record.wall_s:.0f} s wall {pace(res.record.speed)}; report {res.work / 'report.html'}"
        )
        if res.record.exit.crashed:
            print(f"  agent {res.record.exit.status}: {res.record.exit.message}")
        for v in failed:
            print(f"  failed {v.name}: {v.message}")
    if a.junit:
        Path(a.junit).write_text(junit.to_xml(results))
    return 0 if all(r.passed for r in results) else 1
