"""Resumable, verified, bounded bundle downloads over a real HTTP server with injected link
faults; the repository server itself (ranges, HEAD, refusals, the CLI)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ota.errors import OtaError
from tests.ota_http import build_world, fast_fetcher

SIZE = 300_000

pytestmark = pytest.mark.integration  # a real HTTP server (in a thread, and `tools.ota.serve` processes)


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path, size=SIZE)
    yield w
    w.rig.close()


def fail(fn) -> OtaError:
    with pytest.raises(OtaError) as e:
        fn()
    return e.value


def _part(c, info) -> Path:
    return c.download_dir / (c.file_name(info) + ".part")


@pytest.mark.parametrize("cut", [1, SIZE // 2, SIZE - 1])
def test_cut_download_resumes_on_the_next_call(world, cut):
    c = world.client(fetcher=fast_fetcher(retries=0, min_progress=0))
    info = c.target(world.name)
    world.rig.faults.cuts = [cut]
    e = fail(lambda: c.download(info))
    assert e.reason == "unreachable" and e.transient
    assert _part(c, info).stat().st_size == cut  # kept for the next call
    path = c.download(info)
    assert path.read_bytes() == world.payload
    assert world.rig.faults.ranges() == [None, f"bytes={cut}-"]
    assert not _part(c, info).exists()


def test_link_drops_retried_within_one_call(world):
    c = world.client(fetcher=fast_fetcher(retries=3, min_progress=0))
    info = c.target(world.name)
    world.rig.faults.cuts = [50_000, 100_000, 100_000]
    seen = []
    path = c.download(info, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == world.payload
    assert world.rig.faults.ranges() == [None, "bytes=50000-", "bytes=150000-", "bytes=250000-"]
    assert seen[-1] == (SIZE, SIZE) and all(t == SIZE for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_retry_budget_spent_then_progress_resets_it(world):
    info = world.client().target(world.name)
    # 3 drops, 1 retry, no reset: gives up after the second drop
    c = world.client("x", fetcher=fast_fetcher(retries=1, min_progress=0))
    world.rig.faults.cuts = [70_000, 70_000, 70_000]
    assert fail(lambda: c.download(info)).reason == "unreachable"
    assert _part(c, info).stat().st_size == 140_000
    # the same drops, but each attempt moved 70 kB >= 64 kB: the count resets, one call
    c2 = world.client("y", fetcher=fast_fetcher(retries=1, min_progress=64 * 1024))
    world.rig.faults.cuts = [70_000, 70_000, 70_000]
    assert c2.download(info).read_bytes() == world.payload


def test_restart_resumes_from_the_part_on_disk(world):
    c = world.client(fetcher=fast_fetcher(retries=0))
    info = c.target(world.name)
    world.rig.faults.cuts = [120_000]
    assert fail(lambda: c.download(info)).reason == "unreachable"
    c = None  # "power cut": new objects, same dirs
    c2 = world.client(fetcher=fast_fetcher(retries=0))
    assert c2.download(c2.target(world.name)).read_bytes() == world.payload
    assert world.rig.faults.ranges() == [None, "bytes=120000-"]


def test_corrupted_part_rejected_deleted_then_fresh_download(world):
    c = world.client(fetcher=fast_fetcher(retries=0))
    info = c.target(world.name)
    world.rig.faults.cuts = [100_000]
    fail(lambda: c.download(info))
    _part(c, info).write_bytes(b"\0" * 100_000)  # a poisoned partial file
    e = fail(lambda: c.download(info))
    assert e.reason == "hash_mismatch" and not e.transient
    assert list(c.download_dir.iterdir()) == []
    assert c.download(info).read_bytes() == world.payload
    assert world.rig.faults.ranges() == [None, "bytes=100000-", None]


def test_server_ignoring_range_restarts_cleanly(world):
    c = world.client(fetcher=fast_fetcher(retries=0))
    info = c.target(world.name)
    world.rig.faults.cuts = [100_000]
    fail(lambda: c.download(info))
    world.rig.faults.ignore_range = True
    assert c.download(info).read_bytes() == world.payload  # 200: truncated and started over
    assert world.rig.faults.ranges() == [None, "bytes=100000-"]


def test_part_longer_than_the_target_is_discarded(world):
    c = world.client()
    info = c.target(world.name)
    c.download_dir.mkdir(parents=True)
    _part(c, info).write_bytes(b"x" * (SIZE + 10))
    assert c.download(info).read_bytes() == world.payload
    assert world.rig.faults.ranges() == [None]


@pytest.mark.parametrize("announced", [True, False])
def test_endless_data_from_the_mirror(world, announced):
    """More bytes than signed: refused from Content-Length, or (no length announced, the
    body ends when the connection closes) while streaming, never writing past the length."""
    c = world.client()
    info = c.target(world.name)
    world.rig.faults.extra = 1000
    world.rig.faults.no_length = not announced
    written = []
    e = fail(lambda: c.download(info, progress=lambda d, t: written.append(d)))
    assert e.reason == "endless_data" and not e.transient
    assert list(c.download_dir.iterdir()) == []
    if announced:
        assert written == []  # refused before any byte
    else:
        assert 0 < max(written) <= SIZE  # streamed, stopped at the limit


def test_verified_download_reused_and_a_damaged_one_replaced(world):
    c = world.client()
    info = c.target(world.name)
    path = c.download(info)
    assert c.download(info) == path and len(world.rig.faults.ranges()) == 1
    path.write_bytes(b"\0" * SIZE)
    assert c.download(info).read_bytes() == world.payload
    assert len(world.rig.faults.ranges()) == 2


def test_no_space_when_the_reserve_cannot_be_met(world):
    c0 = world.client()
    info = c0.target(world.name)
    c0.download_dir.mkdir(parents=True)
    free = shutil.disk_usage(c0.download_dir).free
    c = world.client(reserve_bytes=free)  # free < length + reserve
    e = fail(lambda: c.download(info))
    assert e.reason == "no_space" and e.transient
    assert world.rig.faults.ranges() == []  # nothing was fetched


def test_too_large(world):
    c = world.client(max_bundle_bytes=SIZE - 1)
    e = fail(lambda: c.download(c.target(world.name)))
    assert e.reason == "too_large" and not e.transient
    assert world.rig.faults.ranges() == []


def test_missing_target_file_is_http_404(world):
    c = world.client()
    info = c.target(world.name)
    world.target_path().unlink()
    e = fail(lambda: c.download(info))
    assert e.reason == "http_404" and not e.transient


def test_metadata_cut_mid_body_is_unreachable_not_oserror(world):
    world.rig.faults.match = "/metadata/timestamp.json"
    world.rig.faults.cuts = [20]
    e = fail(world.client().refresh)
    assert e.reason == "unreachable" and e.transient


def test_server_down_is_unreachable(world):
    c = world.client()
    world.rig.close()
    e = fail(c.refresh)
    assert e.reason == "unreachable" and e.transient


def test_cleanup_keeps_only_what_is_asked(world):
    c = world.client()
    info = c.target(world.name)
    kept = c.download(info)
    junk = [
        c.download_dir / ("a" * 64 + ".old.bundle"),
        c.download_dir / ("b" * 64 + ".x.part"),
        c.download_dir / "notes.txt",
    ]
    for p in junk:
        p.write_bytes(b"1")
    assert sorted(c.cleanup({world.name})) == sorted(p.name for p in junk[:2])
    assert sorted(p.name for p in c.download_dir.iterdir()) == sorted([kept.name, "notes.txt"])
    assert c.cleanup({kept.name}) == []
    assert c.cleanup(set()) == [kept.name]


def test_client_refuses_bad_configuration(world, tmp_path):
    for url in ("ftp://x/", "repo", "http://", "http://h/?q=1"):
        assert fail(lambda url=url: _client(world, url)).reason == "bad_repository"
    with pytest.raises(OtaError, match="bad_root"):
        _client(world, world.rig.url, root=b"{}")
    with pytest.raises(OtaError, match="bad_root"):
        _client(world, world.rig.url, root=(world.repo.meta_dir / "timestamp.json").read_bytes())


def _client(world, url, root=None):
    from ota.client import UpdateClient

    return UpdateClient(
        cache_dir=world.tmp / "c",
        download_dir=world.tmp / "d",
        repository_url=url,
        bootstrap_root=root if root is not None else world.repo.root_bytes(1),
    )


# ---------------------------------------------------------------- the server


def _get(url: str, path: str, method: str = "GET", headers: dict | None = None):
    host, port = url[len("http://") :].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), body


def test_server_ranges_head_and_refusals(world):
    url, p = world.rig.url, "/targets/" + world.target_path().name
    st, h, body = _get(url, p, headers={"Range": "bytes=10-19"})
    assert (st, h["Content-Range"], h["Content-Length"], body) == (
        206,
        f"bytes 10-19/{SIZE}",
        "10",
        world.payload[10:20],
    )
    st, h, body = _get(url, p, headers={"Range": "bytes=-5"})
    assert (st, body) == (206, world.payload[-5:])
    st, h, body = _get(url, p, headers={"Range": f"bytes={SIZE}-"})
    assert (st, h["Content-Range"], body) == (416, f"bytes */{SIZE}", b"")
    st, h, body = _get(url, p, headers={"Range": "bytes=0-1,5-6"})  # several: whole file
    assert (st, body) == (200, world.payload)
    st, h, body = _get(url, p, "HEAD")
    assert (st, h["Content-Length"], body) == (200, str(SIZE), b"")
    for bad in (
        "/metadata/../../keys/root-1.pem",
        "/%2e%2e/keys/root-1.pem",
        "/.lock",
        "/metadata/%2E%2E/%2E%2E/src.bin",
    ):
        assert _get(url, bad)[0] == 403, bad
    assert _get(url, "/metadata/")[0] == 404  # no listing
    assert _get(url, "/")[0] == 404
    assert _get(url, "/repo.json")[0] == 404  # only metadata/ and targets/
    assert _get(url, "/metadata/9.root.json")[0] == 404
    os.symlink(world.tmp / "src.bin", world.repo.path / "targets" / "link.bin")
    assert _get(url, "/targets/link.bin")[0] == 403  # resolves outside the root


def test_serve_cli(world, tmp_path):
    assert (
        subprocess.run(
            [sys.executable, "-m", "tools.ota.serve", str(tmp_path / "no")],
            capture_output=True,
            cwd=Path(__file__).parent.parent,
        ).returncode
        == 2
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.ota.serve", str(world.repo.path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split("/ ")[0]
        assert _get(url, "/metadata/1.root.json")[2] == world.repo.root_bytes(1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
