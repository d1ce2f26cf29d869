"""The pole node's firmware as code for MicroPython: type-checked against the MicroPython stubs,
compiled by mpy-cross, the pure half free of what MicroPython lacks and of the hardware."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.pole import firmware

PURE = sorted(p for p in firmware.modules() if p.stem not in firmware.HARDWARE)
# what MicroPython ships that the pure half may use
MICROPYTHON_OK = {"math"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(relative level, module) of every import in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def test_the_halves() -> None:
    names = {p.stem for p in firmware.modules()}
    assert set(firmware.HARDWARE) <= names
    assert {"rtu", "slave", "regmap", "failsafe", "detect", "settings", "node", "config"} <= {p.stem for p in PURE}


@pytest.mark.parametrize("path", PURE, ids=[p.stem for p in PURE])
def test_pure_modules_import_nothing_micropython_lacks(path: Path) -> None:
    """Relative imports of the firmware itself, and math: no typing, dataclasses, __future__,
    machine, time or anything of the CPython side (MicroPython would fail at import)."""
    bad = [m for level, m in _imports(path) if level == 0 and m not in MICROPYTHON_OK]
    assert not bad, f"{path.name} imports {bad}"
    hardware = [m for level, m in _imports(path) if level and m in firmware.HARDWARE]
    assert not hardware, f"{path.name} (pure) imports the hardware modules {hardware}"


@pytest.mark.parametrize("path", firmware.modules(), ids=[p.stem for p in firmware.modules()])
def test_firmware_imports_stay_inside(path: Path) -> None:
    """On the board the package is `pole_node`, not `boards.pole_node`: imports are relative."""
    absolute_ours = [m for level, m in _imports(path) if level == 0 and m.split(".")[0] in {"boards", "pole_node"}]
    assert not absolute_ours, f"{path.name}: absolute imports of the firmware {absolute_ours}"


@pytest.mark.integration  # mypy and mpy-cross processes; pip installs the stubs on first use
def test_firmware_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.pole.firmware", "check"],
        cwd=firmware.TOP,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
    assert f"mpy-cross compiled {len(firmware.modules())} modules" in done.stdout


@pytest.mark.integration  # a mypy process against the MicroPython stubs
def test_the_stub_check_catches_micropython_mistakes(tmp_path: Path) -> None:
    """A copy of the firmware with three mistakes that CPython's typeshed would accept or
    report differently: a Pin constant that does not exist, a CPython-only time function,
    ticks arithmetic typed as str."""
    firmware.ensure_stubs()
    package = tmp_path / "pole_node"
    shutil.copytree(firmware.SOURCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    bus = package / "hw_bus.py"
    text = bus.read_text(encoding="utf-8").replace("Pin.OUT, value=0", "Pin.OUTPUT, value=0")
    text += "\n\nSTARTED: str = time.ticks_ms()\nNS = time.monotonic_ns()\n"
    bus.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(firmware.MYPY_INI), "--cache-dir", str(tmp_path / "c")]
        + [str(p) for p in sorted(package.glob("*.py"))],
        cwd=firmware.TOP,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert '"type[Pin]" has no attribute "OUTPUT"' in done.stdout
    assert 'Module has no attribute "monotonic_ns"' in done.stdout
    assert "Found 3 errors" in done.stdout, done.stdout


@pytest.mark.integration  # an mpy-cross process
def test_mpy_cross_rejects_what_micropython_cannot_compile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = [1]\ny = [0, *x]\n", encoding="utf-8")
    with pytest.raises(
        firmware.FirmwareError, match=r"^mpy-cross bad.py:2: SyntaxError: \*x must be assignment target$"
    ):
        firmware.mpy_cross(bad, tmp_path / "bad.mpy")
