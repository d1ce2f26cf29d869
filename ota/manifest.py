"""The release manifest (docs/ota-internals.md, "Bundle"): what a bundle says about itself,
parsed strictly. A manifest that does not pass `parse` is never installed.

    {"format": 1, "name": "cabinet-agent", "version": "0.9.0", "counter": 12,
     "boards": ["rpi4-rs485", "sim"], "python": "3.11", "created": "2026-11-22T10:00:00Z",
     "project_wheel": "...whl", "installer_wheel": "pip-...whl",
     "wheels": {"<file>.whl": {"sha256": hex, "size": int}}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
MAX_MANIFEST = 256 * 1024
MAX_WHEELS = 200
VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+){0,3}([a-z]+[0-9]*)?(\.post[0-9]+|\.dev[0-9]+)?(\+[a-z0-9.]+)?")
WHEEL_RE = re.compile(r"[A-Za-z0-9_.+-]{1,200}\.whl")
BOARD_RE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,39}")
SHA_RE = re.compile(r"[0-9a-f]{64}")
PYTHON_RE = re.compile(r"3\.[0-9]{1,2}")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class ManifestError(ValueError):
    """The manifest is not one we install; the message names the field."""


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    counter: int
    boards: tuple[str, ...]
    python: str
    created: str
    project_wheel: str
    installer_wheel: str
    wheels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def slot(self) -> str:
        """The slot directory name: <counter>-<version> (sorts by counter in `ls`)."""
        return f"{self.counter}-{self.version}"

    @property
    def dependency_wheels(self) -> list[str]:
        return sorted(w for w in self.wheels if w not in (self.project_wheel, self.installer_wheel))

    def custom(self) -> dict[str, Any]:
        """What the TUF target's signed `custom` repeats, so a cabinet can refuse before downloading."""
        return {
            "name": self.name,
            "version": self.version,
            "counter": self.counter,
            "boards": list(self.boards),
            "python": self.python,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "counter": self.counter,
            "boards": list(self.boards),
            "python": self.python,
            "created": self.created,
            "project_wheel": self.project_wheel,
            "installer_wheel": self.installer_wheel,
            "wheels": {k: dict(v) for k, v in sorted(self.wheels.items())},
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True).encode() + b"\n"


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "manifest") -> Any:
    if key not in d:
        raise ManifestError(f"{where}: {key!r} is missing")
    v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise ManifestError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {type(v).__name__}")
    return v


def parse(data: bytes | str | dict[str, Any]) -> Manifest:
    """A validated Manifest from JSON bytes/text or a decoded dict; raises ManifestError."""
    if isinstance(data, (bytes, str)):
        if len(data) > MAX_MANIFEST:
            raise ManifestError(f"manifest: {len(data)} bytes, at most {MAX_MANIFEST}")
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"manifest: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError("manifest: must be a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(
            f"manifest: format {data.get('format')!r} is not {FORMAT} (a newer bundle for a newer launcher?)"
        )
    name = _get(data, "name", str)
    if not NAME_RE.fullmatch(name):
        raise ManifestError(f"manifest: name {name!r} is not a project name")
    version = _get(data, "version", str)
    if not VERSION_RE.fullmatch(version):
        raise ManifestError(f"manifest: version {version!r} is not a release version like 1.2.3")
    counter = _get(data, "counter", int)
    if not 1 <= counter < 2**31:
        raise ManifestError(f"manifest: counter {counter} must be 1..2^31-1")
    boards = _get(data, "boards", list)
    if not boards or not all(isinstance(b, str) and BOARD_RE.fullmatch(b) for b in boards):
        raise ManifestError("manifest: boards must be a non-empty list of board names")
    python = _get(data, "python", str)
    if not PYTHON_RE.fullmatch(python):
        raise ManifestError(f"manifest: python {python!r} must be like 3.11")
    created = _get(data, "created", str)
    if len(created) > 40:
        raise ManifestError("manifest: created is too long")
    clean = _wheels(_get(data, "wheels", dict))
    for key in ("project_wheel", "installer_wheel"):
        w = _get(data, key, str)
        if w not in clean:
            raise ManifestError(f"manifest: {key} {w!r} is not among the wheels")
    project, installer = data["project_wheel"], data["installer_wheel"]
    if not installer.startswith("pip-"):
        raise ManifestError(f"manifest: installer_wheel {installer!r} must be pip's wheel")
    if project == installer:
        raise ManifestError("manifest: project_wheel and installer_wheel must differ")
    return Manifest(
        name=name,
        version=version,
        counter=counter,
        boards=tuple(boards),
        python=python,
        created=created,
        project_wheel=project,
        installer_wheel=installer,
        wheels=clean,
    )


def _wheels(wheels: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's wheels table checked: {file name: {"sha256", "size"}}."""
    if not 1 <= len(wheels) <= MAX_WHEELS:
        raise ManifestError(f"manifest: wheels must list 1..{MAX_WHEELS} files")
    clean: dict[str, dict[str, Any]] = {}
    for fname, meta in wheels.items():
        where = f"manifest: wheels[{fname!r}]"
        if not isinstance(fname, str) or not WHEEL_RE.fullmatch(fname) or fname.startswith("."):
            raise ManifestError(f"{where}: not a wheel file name")
        if not isinstance(meta, dict):
            raise ManifestError(f"{where}: must be an object with sha256 and size")
        sha = _get(meta, "sha256", str, where)
        if not SHA_RE.fullmatch(sha):
            raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits")
        size = _get(meta, "size", int, where)
        if not 0 < size < 2**32:
            raise ManifestError(f"{where}: size {size} out of range")
        clean[fname] = {"sha256": sha, "size": size}
    return clean
