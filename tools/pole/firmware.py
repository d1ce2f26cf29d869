"""The pole node's firmware (boards/pole_node/) as files: which modules, compiled with
mpy-cross, type-checked against the MicroPython stubs.

    python -m tools.pole.firmware check    the CI step of `python -m tools.check`: mypy against
                                            micropython-rp2-stubs (installed into build/typings_mpy
                                            on first use), then mpy-cross on every module

The stubs go into their own folder with `pip install --target`, never into the venv: their
top-level time.pyi, machine.pyi and stdlib/ would shadow CPython's typeshed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent.parent
SOURCE = TOP / "boards" / "pole_node"
STUBS = TOP / "build" / "typings_mpy"
STUB_PACKAGE = "micropython-rp2-stubs==1.29.0.post1"
MYPY_INI = Path(__file__).resolve().parent / "mypy-firmware.ini"
# modules that import `machine` and run only on the board (excluded from the CPython mypy)
HARDWARE = ("hw_bus", "hw_sense", "hw_store", "main")


class FirmwareError(Exception):
    """A firmware tool step failed; the message says which and why."""


def modules() -> list[Path]:
    """Every module of the firmware, __init__ first."""
    return sorted(SOURCE.glob("*.py"), key=lambda p: (p.stem != "__init__", p.name))


def _exe(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FirmwareError(f"{name} not found: pip install -e '.[test]' installs it")
    return found


def mpy_cross(source: Path, target: Path, extra: tuple[str, ...] = ()) -> None:
    """Compile one module to .mpy; FirmwareError with the compiler's message if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [_exe("mpy-cross"), "-O2", *extra, "-o", str(target), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        text = (done.stderr or done.stdout).strip()
        where = re.search(r", line (\d+)", text)
        at = f":{where.group(1)}" if where else ""
        raise FirmwareError(f"mpy-cross {source.name}{at}: {text.splitlines()[-1] if text else done.returncode}")


def compile_all(out: Path) -> list[Path]:
    """Every firmware module compiled into `out`; the .mpy paths."""
    made = []
    for source in modules():
        target = out / (source.stem + ".mpy")
        mpy_cross(source, target)
        made.append(target)
    return made


def ensure_stubs() -> Path:
    """The MicroPython stubs folder, installed with pip --target if it is not there yet."""
    if (STUBS / "machine.pyi").exists() and (STUBS / "stdlib" / "VERSIONS").exists():
        return STUBS
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(STUBS), STUB_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise FirmwareError(f"pip install --target {STUBS} {STUB_PACKAGE}: {done.stderr.strip()}")
    return STUBS


def typecheck() -> tuple[int, str]:
    """mypy over the firmware against the MicroPython stubs: (exit code, output)."""
    ensure_stubs()
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(MYPY_INI), *(str(p.relative_to(TOP)) for p in modules())],
        cwd=TOP,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def check() -> int:
    """Type check, then compile every module: 0 when both pass."""
    failed = 0
    try:
        code, output = typecheck()
    except FirmwareError as e:
        code, output = 1, str(e)
    print(f"firmware: mypy against the MicroPython stubs: {output.splitlines()[-1] if output else code}")
    if code:
        print(output)
        failed = 1
    with tempfile.TemporaryDirectory(prefix="pole-mpy-") as tmp:
        try:
            made = compile_all(Path(tmp))
            print(f"firmware: mpy-cross compiled {len(made)} modules")
        except FirmwareError as e:
            print(f"firmware: {e}")
            failed = 1
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.pole.firmware", description="the pole node firmware's checks")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="mypy against the MicroPython stubs, then mpy-cross on every module")
    ap.parse_args(argv)
    return check()


if __name__ == "__main__":
    sys.exit(main())
