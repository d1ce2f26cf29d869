"""TUF trust checks over real HTTP: every attack of the reference table is refused with the
right OtaError reason; root rotation; expired metadata; clock far ahead / far behind; the
operator's repository tool refusing bad input."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import types
from datetime import timedelta

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient._internal import trusted_metadata_set

from ota.errors import OtaError, RepoError
from ota.repo import Repository, init_keys, load_keys, load_signer
from tests.ota_http import build_world, utcnow


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path)
    yield w
    w.rig.close()


def reason_of(fn) -> OtaError:
    with pytest.raises(OtaError) as e:
        fn()
    return e.value


@pytest.mark.integration  # `world` serves the repository over HTTP
def test_happy_path_refresh_target_download(world):
    c = world.client()
    c.refresh()
    info = c.target(world.name)
    assert info.custom == {"version": "1.0.0", "counter": 1}
    path = c.download(info)
    assert path.read_bytes() == world.payload
    assert path.name == f"{info.hashes['sha256']}.{world.name}"
    paths = world.rig.faults.paths()
    assert "/metadata/2.root.json" in paths and "/metadata/timestamp.json" in paths
    assert reason_of(lambda: c.target("nope.bundle")).reason == "unknown_target"
    assert reason_of(lambda: c.target("../x")).reason == "bad_target_name"


@pytest.mark.integration
def test_tampered_target_rejected(world):
    p = world.target_path()
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length, one byte flipped
    p.write_bytes(bytes(data))
    c = world.client()
    e = reason_of(lambda: c.download(c.target(world.name)))
    assert e.reason == "hash_mismatch" and not e.transient
    assert list(c.download_dir.iterdir()) == []  # the .part is gone


@pytest.mark.integration
def test_endless_data_rejected(world):
    with open(world.target_path(), "ab") as f:  # mirror file longer than signed
        f.write(b"\0" * 5000)
    c = world.client()
    e = reason_of(lambda: c.download(c.target(world.name)))
    assert e.reason == "endless_data" and not e.transient
    assert not any(p.stat().st_size > len(world.payload) for p in c.download_dir.iterdir())


@pytest.mark.integration
def test_rollback_of_timestamp_rejected(world):
    ts = world.repo.meta_dir / "timestamp.json"
    old = ts.read_bytes()
    world.repo.refresh_timestamp(world.keys)
    c = world.client()
    c.refresh()  # the client has seen the newer one
    ts.write_bytes(old)
    e = reason_of(c.refresh)
    assert e.reason == "rollback_attack" and not e.transient


@pytest.mark.integration
def test_freeze_expired_timestamp_then_operator_refresh(world):
    # the timestamp was valid for one day, ten days ago: a frozen mirror
    world.repo.refresh_timestamp(world.keys, 1, now=utcnow() - timedelta(days=10))
    c = world.client()
    e = reason_of(c.refresh)
    assert e.reason == "metadata_expired" and e.transient
    # the expired timestamp did not poison the cache: the next good one is taken
    world.repo.refresh_timestamp(world.keys)
    c.refresh()
    assert c.download(c.target(world.name)).read_bytes() == world.payload


@pytest.mark.integration
def test_timestamp_signed_by_unknown_key_rejected(world):
    ts = world.repo.meta_dir / "timestamp.json"
    md = Metadata.from_bytes(ts.read_bytes())
    md.signed.version += 1
    md.sign(CryptoSigner.generate_ed25519())  # replaces the good signature
    ts.write_bytes(md.to_bytes(JSONSerializer()))
    e = reason_of(world.client().refresh)
    assert e.reason == "bad_signature" and not e.transient


@pytest.mark.integration
def test_mix_and_match_targets_rejected(world):
    v = world.repo.version("targets")
    path = world.repo.meta_dir / f"{v}.targets.json"
    md = Metadata[Targets].from_bytes(path.read_bytes())
    md.signed.targets[world.name].unrecognized_fields["custom"]["boards"] = ["evil"]
    md.sign(load_signer(world.keys, "targets.pem"))  # validly signed, same version
    path.write_bytes(md.to_bytes(JSONSerializer()))
    e = reason_of(world.client().refresh)
    assert e.reason == "metadata_mismatch" and not e.transient


@pytest.mark.integration
def test_root_rotation_accepted_then_new_keys_only_rejected(world):
    c = world.client()
    c.refresh()
    v = world.repo.rotate_root(world.keys, replace={"root-3.pem": "root-4.pem"})
    assert v == 2
    two = Metadata.from_bytes(world.repo.root_bytes())
    assert two.signed.roles[Root.type].threshold == 2 and len(two.signed.roles[Root.type].keyids) == 3
    assert load_keys(world.keys)["root-4.pem"]["keyid"] in two.signed.roles[Root.type].keyids
    c.refresh()
    assert Metadata.from_bytes((c.cache_dir / "root.json").read_bytes()).signed.version == 2
    assert sorted(p.name for p in (c.cache_dir / "root_history").iterdir()) == ["1.root.json", "2.root.json"]
    fresh = world.client("b")  # bootstrapped with v1, walks to v2
    fresh.refresh()
    assert fresh.download(fresh.target(world.name)).read_bytes() == world.payload

    # 3.root.json replacing every root key, signed only by the new keys: refused
    three = Metadata.from_bytes(world.repo.root_bytes())
    for kid in list(three.signed.roles[Root.type].keyids):
        three.signed.revoke_key(kid, Root.type)
    new = [CryptoSigner.generate_ed25519() for _ in range(3)]
    for s in new:
        three.signed.add_key(s.public_key, Root.type)
    three.signed.version = 3
    three.signatures.clear()
    for s in new:
        three.sign(s, append=True)
    (world.repo.meta_dir / "3.root.json").write_bytes(three.to_bytes(JSONSerializer()))
    for client in (c, world.client("c")):
        e = reason_of(client.refresh)
        assert e.reason == "bad_signature" and not e.transient


@pytest.mark.integration
def test_rotation_of_the_timestamp_key_resigns_timestamp(world):
    c = world.client()
    c.refresh()
    world.repo.rotate_root(world.keys, replace={"timestamp.pem": "timestamp-2.pem"})
    os.unlink(world.keys / "timestamp.pem")  # the old key is gone for good
    world.repo.refresh_timestamp(world.keys)
    c.refresh()
    assert c.target(world.name).length == len(world.payload)


class _Clock(dt.datetime):
    offset = timedelta(0)

    @classmethod
    def now(cls, tz=None):
        return dt.datetime.now(tz) + cls.offset


def _shift_clock(monkeypatch, offset: timedelta) -> None:
    """Move the reference time ngclient reads at Updater creation (the system clock
    cannot be moved in a test; this is the one stand-in)."""
    clock = type("ShiftedClock", (_Clock,), {"offset": offset})
    monkeypatch.setattr(trusted_metadata_set, "datetime", types.SimpleNamespace(datetime=clock, timezone=dt.timezone))


@pytest.mark.integration
def test_clock_far_ahead_is_a_transient_expiry(world, monkeypatch):
    _shift_clock(monkeypatch, timedelta(days=400))  # beyond even the root expiry
    c = world.client()
    e = reason_of(c.refresh)
    assert e.reason == "metadata_expired" and e.transient
    monkeypatch.undo()  # clock fixed (NTP): works again
    c.refresh()
    assert c.target(world.name).length == len(world.payload)


@pytest.mark.integration
def test_clock_far_behind_accepts_stale_metadata(world, monkeypatch):
    """Why the agent enforces a clock floor: a cabinet whose clock is behind takes a
    timestamp that expired long ago (freeze protection is only as good as the clock)."""
    world.repo.refresh_timestamp(world.keys, 1, now=utcnow() - timedelta(days=30))
    assert reason_of(world.client().refresh).reason == "metadata_expired"
    _shift_clock(monkeypatch, -timedelta(days=30))
    c = world.client("behind")
    c.refresh()  # stale, yet accepted
    assert c.target(world.name).length == len(world.payload)


# ---------------------------------------------------------------- the operator side


def test_keys_are_private_and_not_overwritten(tmp_path):
    doc = init_keys(tmp_path / "k", root_keys=3)
    names = sorted(doc["keys"])
    assert names == ["root-1.pem", "root-2.pem", "root-3.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    for n in names:
        assert stat.S_IMODE((tmp_path / "k" / n).stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in (tmp_path / "k" / n).read_bytes()
    assert json.loads((tmp_path / "k" / "keys.json").read_text())["keys"]["targets.pem"]["role"] == "targets"
    with pytest.raises(RepoError, match="refusing to overwrite"):
        init_keys(tmp_path / "k")
    before = (tmp_path / "k" / "root-1.pem").read_bytes()
    init_keys(tmp_path / "k", force=True)
    assert (tmp_path / "k" / "root-1.pem").read_bytes() != before


@pytest.mark.integration
def test_repository_refuses_bad_input(world, tmp_path):
    src = tmp_path / "src.bin"
    for bad in ("a/b", "../x", ".hidden", "", "x" * 201, "a..b"):
        with pytest.raises(RepoError, match="bad target name"):
            world.repo.add_target(src, bad, {}, world.keys)
    with pytest.raises(RepoError, match="JSON-able"):
        world.repo.add_target(src, "ok.bundle", {"t": object()}, world.keys)
    with pytest.raises(RepoError, match="JSON-able"):
        world.repo.add_target(src, "ok.bundle", {"x": float("nan")}, world.keys)
    with pytest.raises(RepoError, match="custom must be a dict"):
        world.repo.add_target(src, "ok.bundle", ["list"], world.keys)
    with pytest.raises(RepoError, match="timezone-aware"):
        world.repo.refresh_timestamp(world.keys, now=dt.datetime(2030, 1, 1))
    with pytest.raises(RepoError, match="threshold"):
        world.repo.rotate_root(world.keys, threshold=4)
    with pytest.raises(RepoError, match="not empty"):
        Repository.create(world.repo.path, world.keys)
    with pytest.raises(RepoError, match="not a repository"):
        Repository(tmp_path / "nowhere")
    assert set(world.repo.targets()) == {world.name}  # nothing published by the refusals
    assert not list(world.repo.targets_dir.glob(".*.tmp"))
    (world.repo.path / "repo.json").write_text('{"expiry": {"timestamp": 0}}')
    with pytest.raises(RepoError, match=r"repo.json is not valid"):
        Repository(world.repo.path)


@pytest.mark.integration
def test_steps_load_only_the_keys_they_need(world, tmp_path):
    """A server key directory with only timestamp.pem (+ public keys.json) can refresh
    the timestamp; it cannot publish targets or rotate the root."""
    online = tmp_path / "online"
    online.mkdir()
    (online / "keys.json").write_bytes((world.keys / "keys.json").read_bytes())
    (online / "timestamp.pem").write_bytes((world.keys / "timestamp.pem").read_bytes())
    v = world.repo.version("timestamp")
    assert world.repo.refresh_timestamp(online, 1) == v + 1
    with pytest.raises(RepoError, match=r"signing targets .* needs 1"):
        world.repo.add_target(tmp_path / "src.bin", "x.bundle", {}, online)
    # one root holder alone cannot rotate (threshold 2)
    (online / "root-1.pem").write_bytes((world.keys / "root-1.pem").read_bytes())
    with pytest.raises(RepoError, match=r"signing root .* needs 2"):
        world.repo.rotate_root(online)
    assert world.repo.version("root") == 1
    # a timestamp outliving the snapshot (7 days) needs the snapshot key too
    with pytest.raises(RepoError, match="signing snapshot"):
        world.repo.refresh_timestamp(online, 8)
    snap = world.repo.version("snapshot")
    world.repo.refresh_timestamp(world.keys, 8)
    assert world.repo.version("snapshot") == snap + 1
