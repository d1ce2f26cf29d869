"""Durable file operations, and the fault hook that tests use.

Owns: every mutating filesystem step of ota.slots and ota.status (write, fsync, replace,
rename, symlink, rmtree, unlink, mkdir, running an installer subprocess), validated JSON
loads, and `write_atomic`: the project's one helper for replacing a file durably (options
for the repository tool's metadata and key files: a mode, refusing to overwrite, a hidden
temp file). Each step first calls `step(op, path)`, which calls `FAULTS.hook` when a test
set one: a hook that raises at step k simulates a power cut (or, with SIGKILL, a kill)
between step k-1 and step k. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PathArg = str | os.PathLike[str]


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


def step(op: str, path: PathArg) -> None:
    hook = FAULTS.hook
    if hook is not None:
        hook(op, str(path))


def _fsync(path: PathArg) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: PathArg) -> None:
    """fsync a file or a directory by path."""
    step("fsync", path)
    _fsync(path)


def fsync_tree(path: PathArg) -> None:
    """fsync every regular file and directory below path (one step for the fault hook)."""
    step("fsync", path)
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p) and os.path.isfile(p):
                _fsync(p)
        _fsync(dirpath)


def write_file(path: PathArg, data: bytes, *, mode: int = 0o644) -> None:
    """Write (truncate) and fsync a file in place (for files inside a not-yet-published dir).

    `mode` applies when the file is created (as for open(2): less the umask)."""
    _write_new(path, data, os.O_TRUNC, mode)


def _write_new(path: PathArg, data: bytes, flags: int, mode: int) -> None:
    step("write", path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        step("fsync", path)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: PathArg, data: bytes, *, mode: int = 0o644, exclusive: bool = False, hidden_tmp: bool = False
) -> None:
    """Replace path with data: write a temp file beside it, fsync it, rename it over path,
    fsync the directory. A power cut leaves the old file or the new one, never a torn one.

    mode: the new file's permission bits from its first byte on (given to open(2) when the
        temp file is created, so the umask applies).
    exclusive: refuse to replace an existing path: FileExistsError, checked before writing.
    hidden_tmp: the temp file is `.<name>.<random>.tmp`: a dot file (tools/ota/serve.py never
        serves one), always created new (O_EXCL, so never with an older temp file's
        permissions), removed when the write fails. Otherwise the temp file is `<name>.tmp`,
        truncated when an earlier crash left one.

    Fault-hook steps: write and fsync (the temp file), replace (path), fsync (the directory).
    """
    path = Path(path)
    if exclusive and path.exists():
        raise FileExistsError(f"{path}: exists; refusing to overwrite it")
    if not hidden_tmp:
        tmp = path.with_name(path.name + ".tmp")
        write_file(tmp, data, mode=mode)
        replace(tmp, path)
    else:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            _write_new(tmp, data, os.O_EXCL, mode)
            replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_path(path.parent)


def write_json_atomic(path: PathArg, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: PathArg, validate: Callable[[Any], None] | None = None) -> Any:
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


def move_aside(path: PathArg) -> Path:
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


def replace(src: PathArg, dst: PathArg) -> None:
    step("replace", dst)
    os.replace(src, dst)


def rename(src: PathArg, dst: PathArg) -> None:
    step("rename", dst)
    os.rename(src, dst)


def symlink(target: str, link: PathArg) -> None:
    step("symlink", link)
    os.symlink(target, link)


def unlink(path: PathArg) -> None:
    step("unlink", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rmtree(path: PathArg) -> None:
    step("rmtree", path)
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=False)


def makedirs(path: PathArg) -> None:
    if not os.path.isdir(path):
        step("mkdir", path)
        os.makedirs(path, exist_ok=True)


def run(
    argv: Sequence[PathArg], *, timeout: float, cwd: PathArg | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
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


def unzip(archive: PathArg, dest: PathArg) -> None:
    """Extract a zip (a wheel) into dest; ValueError for absolute or `..` member names."""
    step("unzip", dest)
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"unsafe member name {name!r}")
        os.makedirs(dest, exist_ok=True)
        z.extractall(dest)


def sha256_file(path: PathArg) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rewrite_prefix(directory: PathArg, old: bytes, new: bytes) -> None:
    """Rewrite the regular files in directory that start with old to start with new."""
    for p in Path(directory).iterdir():
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            if data.startswith(old):
                write_file(p, new + data[len(old) :])
                os.chmod(p, 0o755)
