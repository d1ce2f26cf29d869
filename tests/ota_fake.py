"""Fake OTA material for the slot and launcher tests: tiny wheels and extracted bundles.

Wheels are written as zips by hand (dist-info METADATA, WHEEL, RECORD; fixed timestamps so
the same content gives the same sha256). The fake project wheel holds a package `agent`
whose `python -m agent` behaves as told ("ok": READY, WATCHDOG=1 pings, commits itself after
CABINET_FAKE_HEALTH_S; "nohealth": the same without the commit; "hang": READY, then no pings
and SIGTERM ignored; "crash": exit 1; "exit0": exit 0), baked in or overridden by the file
<data dir>/behaviour-<version>,
a fake dependency wheel (`fakedep`, imported by agent to prove the store .pth works) and a
wheel of the real ota package from this tree (so a slot can commit through ota.slots).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

OTA_SRC = Path(__file__).resolve().parent.parent / "ota"
OTA_MODULES = ("__init__.py", "fsutil.py", "slots.py", "slotstate.py", "sdnotify.py", "status.py")
PIP_VERSION = "23.2.1"

AGENT_MAIN = r"""
import os, signal, sys, time
import fakedep
from agent import __version__, BEHAVIOUR

def main(argv):
    data = argv[argv.index("--data-dir") + 1] if "--data-dir" in argv else "."
    over = os.path.join(data, "behaviour-" + __version__)
    behaviour = open(over).read().strip() if os.path.exists(over) else BEHAVIOUR

    def event(*words):
        with open(os.path.join(data, "events.log"), "a") as f:
            f.write(" ".join([__version__, *map(str, words)]) + "\n")

    event("start", os.getpid(), behaviour, fakedep.VALUE)
    if behaviour in ("crash", "exit0"):
        sys.exit(1 if behaviour == "crash" else 0)
    from ota import sdnotify
    from ota.slots import SlotStore
    stop = []
    if behaviour == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    sdnotify.ready()
    event("ready")
    health_s = float(os.environ.get("CABINET_FAKE_HEALTH_S", "0.5"))
    wd = sdnotify.watchdog_interval() or 1.0
    t0 = time.monotonic()
    committed = False
    while not stop:
        if behaviour != "hang":
            sdnotify.watchdog()
        if behaviour == "ok" and not committed and time.monotonic() - t0 >= health_s:
            slot = os.path.basename(os.path.realpath(sys.prefix))
            ok = SlotStore(os.environ["CABINET_OTA_ROOT"]).commit(slot)
            event("commit", slot, ok)
            committed = True
        time.sleep(min(0.1, wd / 4))
    event("term")

main(sys.argv[1:])
"""


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    out_dir: Path,
    dist: str,
    version: str,
    files: Mapping[str, str | bytes],
    requires: tuple[str, ...] = (),
    entry_points: str | None = None,
) -> Path:
    """A py3-none-any wheel holding files {archive path: content}; its path."""
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    wheel = "Wheel-Version: 1.0\nGenerator: ota_fake\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries = dict(files)
    entries[f"{info}/METADATA"] = meta
    entries[f"{info}/WHEEL"] = wheel
    if entry_points:
        entries[f"{info}/entry_points.txt"] = entry_points
    record = []
    blobs = {}
    for name, content in entries.items():
        data = content.encode() if isinstance(content, str) else content
        blobs[name] = data
        record.append(f"{name},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}")
    record.append(f"{info}/RECORD,,")
    blobs[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in blobs.items():
            zi = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            z.writestr(zi, data)
    return path


def agent_wheel(out_dir: Path, version: str, behaviour: str = "ok") -> Path:
    return build_wheel(
        out_dir,
        "cabinet-agent",
        version,
        {
            "agent/__init__.py": f'import fakedep\n__version__ = "{version}"\nBEHAVIOUR = '
            f'"{behaviour}"\n\ndef say_version():\n    print(__version__)\n',
            "agent/__main__.py": AGENT_MAIN,
        },
        entry_points="[console_scripts]\ncabinet-fake = agent:say_version\n",
    )


def dep_wheel(out_dir: Path, version: str = "1.0", value: str = "dep-ok") -> Path:
    return build_wheel(out_dir, "fakedep", version, {"fakedep/__init__.py": f'VALUE = "{value}"\n'})


def ota_wheel(out_dir: Path) -> Path:
    files = {f"ota/{m}": (OTA_SRC / m).read_bytes() for m in OTA_MODULES}
    return build_wheel(out_dir, "cabinet-ota", "1.0", files)


def pip_wheel(cache_dir: Path) -> Path:
    """A real pip wheel: downloaded once into cache_dir, else zipped from the running pip."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob("pip-*.whl"))
    if found:
        return found[0]
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"pip=={PIP_VERSION}", "--no-deps", "-q", "-d", str(cache_dir)],
        capture_output=True,
    )
    found = sorted(cache_dir.glob("pip-*.whl"))
    if r.returncode == 0 and found:
        return found[0]
    import pip  # offline: a wheel of the pip this interpreter has

    root = Path(pip.__file__).parent
    files = {
        f"pip/{p.relative_to(root)}": p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    return build_wheel(cache_dir, "pip", pip.__version__, files)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_bundle(
    dest: Path, pip_whl: Path, *, version: str, counter: int, behaviour: str = "ok", dep_version: str = "1.0"
) -> tuple[Path, dict]:
    """An extracted bundle dir (manifest.json + wheels/) and its manifest."""
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    made = [agent_wheel(wheels, version, behaviour), dep_wheel(wheels, dep_version), ota_wheel(wheels)]
    pip_dst = wheels / pip_whl.name
    pip_dst.write_bytes(pip_whl.read_bytes())
    made.append(pip_dst)
    manifest = {
        "format": 1,
        "name": "cabinet-agent",
        "version": version,
        "counter": counter,
        "boards": ["sim"],
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "created": "2026-11-22T10:00:00Z",
        "project_wheel": made[0].name,
        "installer_wheel": pip_dst.name,
        "wheels": {p.name: {"sha256": sha256(p), "size": p.stat().st_size} for p in made},
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dest, manifest
