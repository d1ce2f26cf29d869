"""Update bundles: build one from wheels and a manifest, and unpack one safely.

A bundle is an uncompressed tar (wheels are already compressed) holding `manifest.json`
first and `wheels/<file>.whl`, nothing else. `extract` trusts nothing in it: only regular
files with exactly those names (no links, devices, absolute or `..` paths, duplicates),
sizes bounded by the manifest, every wheel's SHA-256 and size checked against the
manifest, and the set of wheels equal to the manifest's. The bundle itself was verified
against signed TUF metadata before (ota.client); this is defence in depth and the check
for bundles carried on a USB stick.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import time
from pathlib import Path

from ota import fsutil
from ota import manifest as mf

CHUNK = 1 << 20
MAX_MEMBERS = mf.MAX_WHEELS + 1


class BundleError(ValueError):
    """The bundle is not one we install; the message says what and where."""


def describe_wheels(paths: list[Path]) -> dict[str, dict[str, object]]:
    return {p.name: {"sha256": fsutil.sha256_file(p), "size": p.stat().st_size} for p in paths}


def build(out: Path, manifest: mf.Manifest, wheels: list[Path]) -> Path:
    """Write the bundle `out` (atomically) from `wheels`, which must be exactly the manifest's."""
    by_name = {p.name: p for p in wheels}
    if set(by_name) != set(manifest.wheels):
        raise BundleError(f"wheels given {sorted(by_name)} differ from the manifest's {sorted(manifest.wheels)}")
    for name, meta in manifest.wheels.items():
        if fsutil.sha256_file(by_name[name]) != meta["sha256"]:
            raise BundleError(f"{name}: SHA-256 differs from the manifest")
    body = manifest.to_json()
    tmp = out.with_name(out.name + ".tmp")
    mtime = int(time.time())
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mtime, info.mode = len(body), mtime, 0o644
        tar.addfile(info, io.BytesIO(body))
        for name in sorted(by_name):
            info = tarfile.TarInfo(f"wheels/{name}")
            info.size, info.mtime, info.mode = by_name[name].stat().st_size, mtime, 0o644
            with open(by_name[name], "rb") as f:
                tar.addfile(info, f)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return out


def read_manifest(bundle: Path) -> mf.Manifest:
    """The manifest of a bundle (the first member), without unpacking the wheels."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            first = tar.next()
            if first is None or first.name != "manifest.json" or not first.isreg():
                raise BundleError(f"{bundle}: the first member must be the regular file manifest.json")
            if first.size > mf.MAX_MANIFEST:
                raise BundleError(f"{bundle}: manifest.json is {first.size} bytes, at most {mf.MAX_MANIFEST}")
            f = tar.extractfile(first)
            assert f is not None
            return mf.parse(f.read())
    except (tarfile.TarError, OSError) as e:
        raise BundleError(f"{bundle}: not a readable bundle: {e}") from None
    except mf.ManifestError as e:
        raise BundleError(f"{bundle}: {e}") from None


def extract(bundle: Path, dest: Path) -> mf.Manifest:
    """Unpack `bundle` into `dest` (created; must not exist) and check everything; returns the
    manifest. On any error `dest` is removed and BundleError raised."""
    dest = Path(dest)
    if dest.exists():
        raise BundleError(f"{dest} exists already")
    man = read_manifest(bundle)
    (dest / "wheels").mkdir(parents=True)
    try:
        _extract(bundle, dest, man)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return man


def _extract(bundle: Path, dest: Path, man: mf.Manifest) -> None:
    seen: set[str] = set()
    try:
        with tarfile.open(bundle, "r:") as tar:
            for i, member in enumerate(tar):
                if i >= MAX_MEMBERS:
                    raise BundleError(f"{bundle}: more than {MAX_MEMBERS} members")
                name = member.name
                if i == 0:
                    continue  # manifest.json, read and checked by read_manifest
                if not member.isreg():
                    raise BundleError(f"{bundle}: member {name!r} is not a regular file")
                if not name.startswith("wheels/") or "/" in name[7:] or name[7:] not in man.wheels:
                    raise BundleError(f"{bundle}: member {name!r} is not a wheel listed in the manifest")
                wheel = name[7:]
                if wheel in seen:
                    raise BundleError(f"{bundle}: {name!r} appears twice")
                seen.add(wheel)
                meta = man.wheels[wheel]
                if member.size != meta["size"]:
                    raise BundleError(f"{bundle}: {name}: {member.size} bytes, the manifest says {meta['size']}")
                src = tar.extractfile(member)
                assert src is not None
                h = hashlib.sha256()
                with open(dest / "wheels" / wheel, "xb") as out:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != meta["sha256"]:
                    raise BundleError(f"{bundle}: {name}: SHA-256 differs from the manifest")
    except tarfile.TarError as e:
        raise BundleError(f"{bundle}: damaged tar: {e}") from None
    missing = sorted(set(man.wheels) - seen)
    if missing:
        raise BundleError(f"{bundle}: wheels missing from the bundle: {', '.join(missing)}")
    (dest / "manifest.json").write_bytes(man.to_json())
