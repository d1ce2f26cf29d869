"""Durable file operations for the OTA code, and the fault hook that tests use.

Owns: every mutating filesystem step of ota.slots and ota.status (write, fsync, replace,
rename, symlink, rmtree, unlink, mkdir, running an installer subprocess) and validated
JSON loads. Each step first calls `step(op, path)`, which calls `FAULTS.hook` when a test
set one: a hook that raises at step k simulates a power cut (or, with SIGKILL, a kill)
between step k-1 and step k. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class _Faults:
    """The fault hook: `hook(op, path)` runs before every mutating step (None = off)."""

    hook: Callable[[str, str], None] | None = None


FAULTS = _Faults()


class CorruptFile(Exception):
    """A persisted file that does not parse or validate."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path = Path(path)
        self.why = why


def step(op: str, path: os.PathLike | str) -> None:
    hook = FAULTS.hook
    if hook is not None:
        hook(op, str(path))


def _fsync(path: os.PathLike | str) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: os.PathLike | str) -> None:
    """fsync a file or a directory by path."""
    step("fsync", path)
    _fsync(path)


def fsync_tree(path: os.PathLike | str) -> None:
    """fsync every regular file and directory below path (one step for the fault hook)."""
    step("fsync", path)
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p) and os.path.isfile(p):
                _fsync(p)
        _fsync(dirpath)


def write_file(path: os.PathLike | str, data: bytes) -> None:
    """Write (truncate) and fsync a file in place (for files inside a not-yet-published dir)."""
    step("write", path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        step("fsync", path)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: os.PathLike | str, data: bytes) -> None:
    """Replace path with data: write path.tmp, fsync it, rename over path, fsync the dir."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write_file(tmp, data)
    replace(tmp, path)
    fsync_path(path.parent)


def write_json_atomic(path: os.PathLike | str, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: os.PathLike | str, validate: Callable[[Any], None] | None = None) -> Any:
    """The parsed file, None when missing; CorruptFile when unreadable or invalid.

    validate(obj) raises ValueError (or TypeError/KeyError) with a reason for a bad shape.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CorruptFile(path, f"unreadable: {e}") from e
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptFile(path, f"not JSON: {e}") from e
    if validate is not None:
        try:
            validate(obj)
        except (ValueError, TypeError, KeyError) as e:
            raise CorruptFile(path, f"invalid: {e}") from e
    return obj


def move_aside(path: os.PathLike | str) -> Path:
    """Rename a corrupt file to <name>.bad (keeping earlier .bad files as .bad.N)."""
    path = Path(path)
    dest = path.with_name(path.name + ".bad")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.bad.{n}")
        n += 1
    rename(path, dest)
    fsync_path(path.parent)
    return dest


def replace(src: os.PathLike | str, dst: os.PathLike | str) -> None:
    step("replace", dst)
    os.replace(src, dst)


def rename(src: os.PathLike | str, dst: os.PathLike | str) -> None:
    step("rename", dst)
    os.rename(src, dst)


def symlink(target: str, link: os.PathLike | str) -> None:
    step("symlink", link)
    os.symlink(target, link)


def unlink(path: os.PathLike | str) -> None:
    step("unlink", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rmtree(path: os.PathLike | str) -> None:
    step("rmtree", path)
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=False)


def makedirs(path: os.PathLike | str) -> None:
    if not os.path.isdir(path):
        step("mkdir", path)
        os.makedirs(path, exist_ok=True)


def run(
    argv: list[str], *, timeout: float, cwd: os.PathLike | str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run an installer step (a subprocess that writes files), capturing output."""
    step("run", argv[0] if len(argv) < 3 else " ".join(map(str, argv[:3])))
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def unzip(archive: os.PathLike | str, dest: os.PathLike | str) -> None:
    """Extract a zip (a wheel) into dest; ValueError for absolute or `..` member names."""
    step("unzip", dest)
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"unsafe member name {name!r}")
        os.makedirs(dest, exist_ok=True)
        z.extractall(dest)


def sha256_file(path: os.PathLike | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rewrite_prefix(directory: os.PathLike | str, old: bytes, new: bytes) -> None:
    """Rewrite the regular files in directory that start with old to start with new."""
    for p in Path(directory).iterdir():
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            if data.startswith(old):
                write_file(p, new + data[len(old) :])
                os.chmod(p, 0o755)
