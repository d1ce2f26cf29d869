"""The pole node's pure firmware modules: the same test vectors (tests/micropython/vectors_*.py)
under CPython and under a real MicroPython (the WebAssembly port from npm, under Node.js), from
the .py sources and from the .mpy files mpy-cross makes for the board.

The MicroPython half needs `node` and `npm ci --prefix tests/micropython`; without them it is
skipped on a developer's machine and FAILS when CI is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.micropython import vectors_bus, vectors_flash, vectors_lamp
from tools.pole import firmware

HERE = Path(__file__).resolve().parent / "micropython"
RUNNER = HERE / "run_vectors.mjs"
MODULES = (vectors_bus, vectors_lamp, vectors_flash)
VECTORS = (HERE / "common.py", *(HERE / f"{m.__name__.rsplit('.', 1)[1]}.py" for m in MODULES))
CASES = {
    f"{m.__name__.rsplit('.', 1)[1]}.{name}": getattr(m, name)
    for m in MODULES
    for name in dir(m)
    if name.startswith("test_")
}
NAMES = sorted(CASES)
NPM_CI = "npm ci --prefix tests/micropython --no-audit --no-fund"


def _node() -> str:
    node = shutil.which("node")
    package = HERE / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    missing = None
    if node is None:
        missing = "Node.js (`node`) is not installed"
    elif not package.is_dir():
        missing = f"the MicroPython WebAssembly port is not installed: run `{NPM_CI}`"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the firmware's MicroPython tests cannot run: {missing}")
        pytest.skip(missing)
    assert node is not None
    return node


def run_micropython(
    firmware_dir: Path, files: tuple[Path, ...] = VECTORS
) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    """Every vector of `files` under MicroPython: ({module.name: result}, the summary line)."""
    done = subprocess.run(
        [_node(), str(RUNNER), str(firmware_dir), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the runner printed no results (exit {done.returncode}): {done.stderr[-2000:]}"
    results = {r["name"]: r for r in lines if "name" in r}
    return results, lines[-1]


@pytest.mark.parametrize("name", NAMES)
def test_vector_under_cpython(name: str) -> None:
    CASES[name]()


def judge(results: dict[str, dict[str, object]], summary: dict[str, object], names: list[str] = NAMES) -> None:
    assert str(summary["implementation"]).startswith("micropython 1."), summary
    assert sorted(results) == names, "MicroPython ran other vectors than expected"
    failed = {name: r["error"] for name, r in results.items() if not r["ok"]}
    assert not failed, f"vectors failing under MicroPython: {failed}"
    assert summary["passed"] == len(names) and summary["failed"] == 0


@pytest.mark.integration  # a Node.js process
def test_vectors_under_micropython_from_source() -> None:
    results, summary = run_micropython(firmware.SOURCE)
    judge(results, summary)


@pytest.mark.integration  # mpy-cross and a Node.js process
def test_vectors_under_micropython_from_mpy(tmp_path: Path) -> None:
    made = firmware.compile_all(tmp_path)
    assert {p.stem for p in made} == {p.stem for p in firmware.modules()}
    results, summary = run_micropython(tmp_path)
    judge(results, summary)


@pytest.mark.integration  # a Node.js process
def test_the_hardware_half_boots_under_micropython() -> None:
    """main.run() with hw_bus, hw_sense and hw_store on a stand-in `machine` (no board here):
    boots from its config file, answers the cabinet on the bus with DE around its reply, stays
    silent for another unit, drives the lamp by its fail-safe; a bad config stops the boot."""
    results, summary = run_micropython(firmware.SOURCE, (HERE / "hw_vectors.py", HERE / "machine.py"))
    judge(
        results,
        summary,
        [
            "hw_vectors.test_bad_config_stops_the_boot_with_its_key",
            "hw_vectors.test_main_loop_answers_the_cabinet_and_drives_the_lamp",
        ],
    )


@pytest.mark.integration  # a Node.js process
def test_a_failing_vector_is_reported(tmp_path: Path) -> None:
    """The runner is honest: a vector that fails under MicroPython shows up as failed, with its error."""
    planted = tmp_path / "vectors_planted.py"
    planted.write_text(
        "from boards.pole_node import rtu\n\n"
        "def test_good():\n    assert rtu.crc16(b'\\x01\\x03\\x00\\x00\\x00\\x01') == 0x0A84\n\n"
        "def test_bad():\n    assert rtu.t35_us(9600) == 1, 'planted'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [_node(), str(RUNNER), str(firmware.SOURCE), str(planted)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"name": "vectors_planted.test_bad", "ok": False, "error": "AssertionError: planted"} in lines
    assert lines[-1]["passed"] == 1 and lines[-1]["failed"] == 1
