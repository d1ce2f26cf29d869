"""`cabinet pole build`: the files one pole node needs, ready to copy to its flash.

    OUT/pole_node/*.mpy     every firmware module, compiled by mpy-cross
    OUT/main.py             the boot file: runs pole_node.main.run() unless /maintenance exists
    OUT/pole_config.json    the node's address, line settings, pins and calibration
    OUT/MANIFEST.json       firmware version, address, each file's size and SHA-256

The config is validated by the firmware's own boards.pole_node.config, the same code the
node runs at boot, so a bundle never carries a config the node would refuse.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from boards.pole_node import VERSION
from boards.pole_node import config as node_config
from tools.pole import firmware

MAINTENANCE = "maintenance"
BOOT = f'''"""Pole node boot file (written by `cabinet pole build`)."""

import os

try:
    os.stat("{MAINTENANCE}")
    print("pole node: /{MAINTENANCE} present, not starting (remove it and reset to run)")
except OSError:
    import pole_node.main

    pole_node.main.run()
'''


class BundleError(Exception):
    """The bundle cannot be made or is incomplete; the message names the file or key."""


def expected_files() -> list[str]:
    """Every path a complete bundle holds (relative, '/' separated), MANIFEST.json aside."""
    return sorted(
        [f"pole_node/{p.stem}.mpy" for p in firmware.modules()] + ["main.py", node_config.FILE],
    )


def build(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Make the bundle in `out` (emptied first); returns the manifest."""
    cfg, errors = node_config.check(settings)
    if errors:
        raise BundleError("; ".join(errors))
    if out.exists():
        if not out.is_dir():
            raise BundleError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / "MANIFEST.json").exists():
            raise BundleError(f"{out}: a folder with other files in it (not a pole bundle): give an empty or new --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        firmware.compile_all(out / "pole_node")
        (out / "main.py").write_text(BOOT, encoding="utf-8")
        firmware.mpy_cross(out / "main.py", out / "main.check.mpy")  # the boot file compiles too
        (out / "main.check.mpy").unlink()
    except firmware.FirmwareError as e:
        raise BundleError(str(e)) from None
    (out / node_config.FILE).write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {
        "firmware_version": f"{VERSION[0]}.{VERSION[1]}",
        "address": cfg["address"],
        "baudrate": cfg["baudrate"],
        "files": {name: _describe(out / name) for name in expected_files()},
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _describe(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def verify(out: Path) -> dict[str, Any]:
    """The manifest of a complete, unchanged bundle; BundleError naming what is missing or changed."""
    if not (out / "MANIFEST.json").is_file():
        raise BundleError(f"{out}: no pole bundle here (make one with `cabinet pole build --address N --out {out}`)")
    try:
        manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{out}/MANIFEST.json: {e}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleError(f"{out}/MANIFEST.json: no 'files' table")
    problems = []
    for name in expected_files():
        if name not in files:
            problems.append(f"{name}: not in the manifest")
        elif not (out / name).is_file():
            problems.append(f"{name}: missing")
        elif _describe(out / name) != files[name]:
            problems.append(f"{name}: changed since the build (size or SHA-256)")
    try:
        cfg = json.loads((out / node_config.FILE).read_text(encoding="utf-8"))
        problems += node_config.check(cfg)[1]
    except (OSError, ValueError) as e:
        problems.append(f"{node_config.FILE}: {e}")
    if problems:
        raise BundleError(f"{out}: incomplete bundle: " + "; ".join(problems))
    return dict(manifest)
