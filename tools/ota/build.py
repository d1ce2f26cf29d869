"""`cabinet ota build`: a release bundle of this project (docs/ota.md, "Building a release").

    cabinet ota build --counter N [--version V] [--board B ...] [--out DIR]
                      [--platform TAG ... --python-version 3.11] [--wheelhouse DIR|BUNDLE] [--source DIR]

Boards are checked against boards/registry.py before anything is built; the steps are told
to `progress` (stderr on the command line) as they start.

1. the project's wheel, built from `--source` (default: the checkout this runs from); with
   `--version` the version is stamped into a copy of the tree first (agent/__init__.py);
2. its dependency wheels, pinned to the versions installed where this runs (the versions
   the tests ran with), for the board's platform (`--platform manylinux2014_aarch64
   --platform manylinux_2_28_aarch64 --python-version 3.11` for a Raspberry Pi 4 on Bookworm:
   pip takes each tag literally, and some wheels exist only for one of them), binary wheels
   only; from the package index, or offline from `--wheelhouse` (a directory of wheels, or
   an earlier bundle);
3. pip's own wheel (the installer the cabinet runs from the bundle);
4. manifest.json (version, release counter, boards, python) and the bundle tar.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from boards.registry import boards as known_boards
from ota import bundle
from ota import manifest as mf

NAME = "cabinet-agent"
SOURCE_PARTS = ("agent", "drivers", "boards", "ota", "tools", "setup.cfg", "pyproject.toml", "README.md")
VERSION_LINE = re.compile(r'^__version__\s*=\s*"[^"]*"', re.M)


class BuildError(RuntimeError):
    pass


def add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--counter", type=int, required=True, help="release counter (anti-rollback): must grow with every release"
    )
    p.add_argument("--version", help="stamp this version (default: the source's agent.__version__)")
    p.add_argument(
        "--board",
        action="append",
        dest="boards",
        help=f"compatible board, one of {', '.join(sorted(known_boards()))} (repeat; default: all known)",
    )
    p.add_argument("--out", default="dist", help="output directory (default dist/)")
    p.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        help="wheel platform tag of the board (repeat), e.g. manylinux2014_aarch64 and manylinux_2_28_aarch64 "
        "for a Pi on Bookworm; default: this machine's",
    )
    p.add_argument("--python-version", help="the board's Python, e.g. 3.11 (default: this interpreter's)")
    p.add_argument(
        "--wheelhouse",
        help="take dependency wheels only from this directory or from the wheels of an earlier bundle (offline)",
    )
    p.add_argument("--source", help="project source tree (default: the one this runs from)")


Progress = Callable[[str], None]


def check_boards(boards: list[str] | None) -> list[str]:
    """The bundle's boards: the given ones, each a known board (boards/registry.py), else all known."""
    known = sorted(known_boards())
    if boards is None:
        return known
    unknown = [b for b in boards if b not in known]
    if unknown:
        raise ValueError(
            f"--board {', '.join(map(repr, unknown))}: unknown board; the known boards are {', '.join(known)}"
        )
    return sorted(set(boards))


def check_version(version: str | None) -> None:
    if version is not None and not mf.VERSION_RE.fullmatch(version):
        raise ValueError(f"--version {version!r}: not a release version like 1.2.3")


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = [x for x in (r.stderr or r.stdout).strip().splitlines() if not x.startswith("WARNING: ")]
        tail = "\n".join(lines[-15:])
        raise BuildError(f"{what} failed (exit {r.returncode}):\n{tail}")


def project_wheel(source: Path, out: Path, version: str | None) -> Path:
    """Build the project wheel (stamping `version` into a copy of the tree when given)."""
    with tempfile.TemporaryDirectory(prefix="ota-build-") as tmp:
        tree = Path(tmp) / "src"
        tree.mkdir()
        for part in SOURCE_PARTS:
            src = source / part
            if src.is_dir():
                shutil.copytree(src, tree / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                shutil.copy2(src, tree / part)
        if version is not None:
            check_version(version)
            init = tree / "agent" / "__init__.py"
            text = init.read_text()
            if not VERSION_LINE.search(text):
                raise BuildError(f"{init}: no __version__ line to stamp")
            init.write_text(VERSION_LINE.sub(f'__version__ = "{version}"', text, count=1))
        before = set(out.glob("*.whl"))
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
            "building the project wheel",
        )
        made = [p for p in out.glob("cabinet_agent-*.whl") if p not in before]
        if len(made) != 1:
            raise BuildError(f"expected one new cabinet_agent wheel in {out}, found {[p.name for p in made]}")
        return made[0]


def pins() -> list[str]:
    """name==version for the project's dependency closure as installed here."""
    seen: dict[str, str] = {}
    todo = [NAME]
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            m = re.match(r"[A-Za-z0-9_.-]+", req)
            if m:
                todo.append(m.group(0))
    seen.pop(NAME, None)
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


def dependency_wheels(
    project: Path, out: Path, *, platforms: list[str] | None, python_version: str | None, wheelhouse: Path | None
) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="ota-deps-") as tmp:
        constraints = Path(tmp) / "pins.txt"
        constraints.write_text("\n".join(pins()) + "\n")
        dest = Path(tmp) / "w"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "-d",
            str(dest),
            "-c",
            str(constraints),
            str(project),
        ]
        for p in platforms or []:
            cmd += ["--platform", p]
        if python_version:
            cmd += ["--python-version", python_version, "--implementation", "cp"]
        if wheelhouse is not None:
            cmd += ["--no-index", "--find-links", str(wheelhouse)]
        _run(cmd, "downloading the dependency wheels")
        wheels = []
        for w in sorted(dest.glob("*.whl")):
            if w.name == project.name:
                continue
            shutil.copy2(w, out / w.name)
            wheels.append(out / w.name)
        if not wheels:
            raise BuildError("no dependency wheels were downloaded")
        return wheels


def installer_wheel(out: Path, wheelhouse: Path | None) -> Path:
    version = metadata.version("pip")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(out),
        f"pip=={version}",
    ]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    _run(cmd, "downloading pip's wheel")
    found = sorted(out.glob(f"pip-{version}-*.whl"))
    if not found:
        raise BuildError(f"pip {version} wheel not found after download")
    return found[0]


def build(
    *,
    counter: int,
    version: str | None = None,
    boards: list[str] | None = None,
    out: Path,
    platforms: list[str] | None = None,
    python_version: str | None = None,
    wheelhouse: Path | None = None,
    source: Path | None = None,
    progress: Progress | None = None,
) -> tuple[Path, mf.Manifest]:
    """Build the bundle; `progress` is told each step as it starts. Bad arguments (an unknown
    board, a version that is not a release version, a counter out of range) raise ValueError
    before anything is built; a failing step raises BuildError."""
    source = Path(source) if source else Path(__file__).resolve().parents[2]  # tools/ota/build.py -> the checkout
    boards = check_boards(boards)
    check_version(version)
    if not 1 <= counter < 2**31:
        raise ValueError(f"--counter {counter}: give 1..2147483647 (and more than every earlier release's)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()

    def step(n: int, what: str) -> None:
        say(f"[{n}/4 {time.monotonic() - t0:4.1f} s] {what}")

    with tempfile.TemporaryDirectory(prefix="ota-wheels-", dir=out) as tmp:
        work = Path(tmp)
        house = Path(wheelhouse) if wheelhouse else None
        where = f"offline from {house}" if house is not None else "from the package index"
        if house is not None and house.is_file():
            step(0, f"unpacking the bundle {house} for its wheels")
            bundle.extract(house, work / "earlier")
            house = work / "earlier" / "wheels"
        step(1, f"building the project wheel from {source}" + (f" as version {version}" if version else ""))
        proj = project_wheel(source, work, version)
        version = version or proj.name.split("-")[1]
        plat = ", ".join(platforms) if platforms else "this machine's platform"
        step(2, f"dependency wheels for {plat}, Python {python_version or 'of this interpreter'}, {where}")
        deps = dependency_wheels(proj, work, platforms=platforms, python_version=python_version, wheelhouse=house)
        step(3, "pip's own wheel (the cabinet installs offline with it)")
        pip_whl = installer_wheel(work, house)
        deps = [d for d in deps if d.name != pip_whl.name]
        files = [proj, pip_whl, *deps]
        created = dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        man = mf.parse(
            {
                "format": mf.FORMAT,
                "name": NAME,
                "version": version,
                "counter": counter,
                "boards": boards,
                "python": python_version or f"{sys.version_info[0]}.{sys.version_info[1]}",
                "created": created,
                "project_wheel": proj.name,
                "installer_wheel": pip_whl.name,
                "wheels": bundle.describe_wheels(files),
            }
        )
        step(4, f"writing the bundle: manifest and {len(files)} wheels")
        path = bundle.build(out / f"{NAME}-{version}.bundle", man, files)
    return path, man


def build_main(a: argparse.Namespace) -> int:
    name = "cabinet ota build"
    try:
        path, man = build(
            counter=a.counter,
            version=a.version,
            boards=a.boards,
            out=Path(a.out),
            platforms=a.platforms,
            python_version=a.python_version,
            wheelhouse=a.wheelhouse,
            source=a.source,
            progress=lambda msg: print(f"{name}: {msg}", file=sys.stderr, flush=True),
        )
    except (BuildError, bundle.BundleError, OSError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # ManifestError too: what was asked for is not a valid release
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    size = path.stat().st_size
    print(
        f"{path}: {man.name} {man.version} counter {man.counter}, {len(man.wheels)} wheels, "
        f"{size / 2**20:.1f} MiB, boards {', '.join(man.boards)}"
    )
    return 0
