"""`cabinet ota build`: a release bundle of this project (docs/ota.md, "Building a release").

    cabinet ota build --counter N [--version V] [--board B ...] [--out DIR]
                      [--platform TAG ... --python-version 3.11] [--wheelhouse DIR] [--source DIR]

1. the project's wheel, built from `--source` (default: the checkout this runs from); with
   `--version` the version is stamped into a copy of the tree first (agent/__init__.py);
2. its dependency wheels, pinned to the versions installed where this runs (the versions
   the tests ran with), for the board's platform (`--platform manylinux2014_aarch64
   --python-version 3.11` for a Raspberry Pi 4 on Bookworm), binary wheels only; from the
   package index, or offline from `--wheelhouse`;
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
    p.add_argument("--board", action="append", dest="boards", help="compatible board (repeat; default: all known)")
    p.add_argument("--out", default="dist", help="output directory (default dist/)")
    p.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        help="wheel platform tag of the board, e.g. manylinux2014_aarch64 (repeat); default: this machine",
    )
    p.add_argument("--python-version", help="the board's Python, e.g. 3.11 (default: this interpreter's)")
    p.add_argument("--wheelhouse", help="take dependency wheels from this directory only (offline)")
    p.add_argument("--source", help="project source tree (default: the one this runs from)")


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
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
            if not mf.VERSION_RE.fullmatch(version):
                raise BuildError(f"--version {version!r} is not a release version like 1.2.3")
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
) -> tuple[Path, mf.Manifest]:
    source = Path(source) if source else Path(__file__).resolve().parents[2]  # tools/ota/build.py -> the checkout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if boards is None:
        boards = sorted(known_boards())
    with tempfile.TemporaryDirectory(prefix="ota-wheels-", dir=out) as tmp:
        work = Path(tmp)
        proj = project_wheel(source, work, version)
        version = version or proj.name.split("-")[1]
        deps = dependency_wheels(
            proj,
            work,
            platforms=platforms,
            python_version=python_version,
            wheelhouse=Path(wheelhouse) if wheelhouse else None,
        )
        pip_whl = installer_wheel(work, Path(wheelhouse) if wheelhouse else None)
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
        path = bundle.build(out / f"{NAME}-{version}.bundle", man, files)
    return path, man


def build_main(a: argparse.Namespace) -> int:
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
        )
    except (BuildError, mf.ManifestError, bundle.BundleError) as e:
        print(f"cabinet ota build: {e}", file=sys.stderr)
        return 1
    size = path.stat().st_size
    print(
        f"{path}: {man.name} {man.version} counter {man.counter}, {len(man.wheels)} wheels, "
        f"{size / 2**20:.1f} MiB, boards {', '.join(man.boards)}"
    )
    return 0
