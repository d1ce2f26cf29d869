"""OTA figures for this project: bundle size, build time, slot install time (cold: every
dependency wheel installed; warm: the dependency store already holds them, as for an
update that changes only our code), TUF refresh and verified download over local HTTP.
The end-to-end update time (offer to committed success, through the launcher, the
restart and the health gate) is printed by `pytest -s tests/test_ota_e2e.py -k commits`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ota import bundle
from ota.client import UpdateClient
from ota.repo import Repository, init_keys
from ota.slots import SlotStore
from tools.ota.build import build
from tools.ota.serve import start_server


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ota-") as tmp:
        d = Path(tmp)
        n1 = build_figures(d, out)
        install_figures(d, d / "x", d / "x1", out)
        tuf_figures(d, n1, out)
    return out


def build_figures(d: Path, out: dict[str, Any]) -> Path:
    """Build a release (timed) and a second one from the first one's wheels; extract both
    (the second one timed) into d/x and d/x1. The second bundle."""
    t0 = time.perf_counter()
    n, man = build(counter=1, version="0.90.0", out=d / "dist", boards=["sim"])
    out["build_s"] = round(time.perf_counter() - t0, 1)
    out["bundle_mib"] = round(n.stat().st_size / 2**20, 2)
    out["wheels"] = len(man.wheels)
    out["project_wheel_kib"] = round(man.wheels[man.project_wheel]["size"] / 1024, 1)
    x = d / "x"
    bundle.extract(n, x)
    n1, _ = build(counter=2, version="0.90.1", out=d / "dist", boards=["sim"], wheelhouse=x / "wheels")
    x1 = d / "x1"
    t0 = time.perf_counter()
    bundle.extract(n1, x1)
    out["extract_verify_s"] = round(time.perf_counter() - t0, 2)
    return n1


def install_figures(d: Path, x: Path, x1: Path, out: dict[str, Any]) -> None:
    """Bootstrap a root from x through the launcher (cold: every dependency installed), then
    install x1 into it (warm: the store holds the dependencies)."""
    root = d / "root"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ota.launcher", "install", str(x), "--root", str(root)],
        check=True,
        capture_output=True,
    )
    out["install_cold_s"] = round(time.perf_counter() - t0, 1)
    man1 = json.loads((x1 / "manifest.json").read_text())
    t0 = time.perf_counter()
    SlotStore(root).install(x1, man1)
    out["install_warm_s"] = round(time.perf_counter() - t0, 1)
    out["slot_mib"] = round(
        sum(f.stat().st_size for f in (root / "releases" / "2-0.90.1").rglob("*") if f.is_file()) / 2**20, 2
    )
    out["store_mib"] = round(sum(f.stat().st_size for f in (root / "store").rglob("*") if f.is_file()) / 2**20, 1)


def tuf_figures(d: Path, n1: Path, out: dict[str, Any]) -> None:
    """Publish n1 in a new repository served over local HTTP; the best of three TUF
    refreshes and verified downloads by fresh clients."""
    keys = d / "keys"
    init_keys(keys)
    repo = Repository.create(d / "repo", keys)
    repo.add_target(n1, n1.name, {"version": "0.90.1", "counter": 2}, keys)
    server, url = start_server(d / "repo")
    try:
        refresh, download = [], []
        for i in range(3):
            c = UpdateClient(
                cache_dir=d / f"tuf{i}",
                download_dir=d / f"dl{i}",
                repository_url=url,
                bootstrap_root=repo.root_bytes(1),
            )
            t0 = time.perf_counter()
            c.refresh()
            refresh.append(time.perf_counter() - t0)
            info = c.target(n1.name)
            t0 = time.perf_counter()
            c.download(info)
            download.append(time.perf_counter() - t0)
            shutil.rmtree(d / f"dl{i}")
    finally:
        server.shutdown()
        server.server_close()
    out["tuf_refresh_ms"] = round(min(refresh) * 1000, 1)
    out["download_verify_s"] = round(min(download), 2)
    out["download_mib_s"] = round(n1.stat().st_size / 2**20 / min(download), 1)
