"""The operator's TUF repository: signed metadata and target files on disk.

Owns `Repository`, which writes consistent-snapshot metadata with python-tuf's Metadata
API (the key directory, `init_keys` and keys.json, is ota.repo_keys; its `init_keys`,
`load_keys` and `load_signer` are re-exported here):

    <path>/metadata/N.root.json  N.targets.json  N.snapshot.json  timestamp.json
    <path>/targets/<sha256>.<name>
    <path>/repo.json             expiry defaults (days per role)

Keys: the root keys belong OFFLINE, held by different people or on tokens (2-of-3 by
default); the targets key with the release manager; snapshot and timestamp keys may live
on the update server. Every method takes a key directory and loads only the keys its step
needs, so a key directory may hold a subset of the keys (plus keys.json, which is public):
publishing needs targets+snapshot+timestamp, `refresh_timestamp` needs timestamp (and
snapshot when that expires first), `rotate_root` needs a threshold of old and new root keys.
Every method takes `now` (tz-aware UTC) so tests can make already-expired metadata.
Files are written with ota.fsutil.write_atomic and a hidden temp file, so a repository
directory never serves a half-written one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from ota.errors import RepoError
from ota.fsutil import write_atomic
from ota.repo_keys import ROLES, keyfile_name, new_key, public_key, save_keys, threshold_signers
from ota.repo_keys import init_keys as init_keys  # re-exported: the operator's one import
from ota.repo_keys import load_keys as load_keys
from ota.repo_keys import load_signer as load_signer

DEFAULT_EXPIRY = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 7}
MAX_CUSTOM_BYTES = 64 * 1024
_TARGET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,199}$")
_SER = JSONSerializer(compact=True)
_CHUNK = 1024 * 1024


def utc(now: datetime | None = None) -> datetime:
    """`now` (tz-aware) as UTC without microseconds; the wall clock when None."""
    if now is None:
        now = datetime.now(UTC)
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise RepoError(f"now must be a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC).replace(microsecond=0)


def validate_target_name(name: str) -> str:
    """A target name usable as the file name `<sha256>.<name>` and in a URL."""
    if not isinstance(name, str) or not _TARGET_RE.match(name) or ".." in name:
        raise RepoError(
            f"bad target name {name!r}: 1-200 characters of A-Z a-z 0-9 . _ + ~ -, "
            "starting with a letter or digit, no '/' and no '..'"
        )
    return name


class Repository:
    """A TUF repository directory (see the module docstring for the layout)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.meta_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"
        if not (self.meta_dir / "1.root.json").is_file():
            raise RepoError(f"{self.path} is not a repository (no metadata/1.root.json)")
        rj, self.expiry = self.path / "repo.json", dict(DEFAULT_EXPIRY)
        try:
            if rj.exists():
                self.expiry = _check_expiry({**DEFAULT_EXPIRY, **json.loads(rj.read_text())["expiry"]})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RepoError(f"{rj} is not valid: {e}") from None

    @classmethod
    def create(
        cls,
        path: Path,
        keydir: Path,
        *,
        root_threshold: int = 2,
        expiry: dict[str, int] | None = None,
        now: datetime | None = None,
    ) -> Repository:
        """A new repository: root v1 (all root keys of keys.json, `root_threshold` of them
        signing), empty targets v1, snapshot v1, timestamp v1."""
        now = utc(now)
        exp = _check_expiry({**DEFAULT_EXPIRY, **(expiry or {})})
        path = Path(path)
        if (path / "metadata").exists() and any((path / "metadata").iterdir()):
            raise RepoError(f"{path}/metadata is not empty; refusing to create a repository there")
        keys = load_keys(keydir)
        root = Metadata(Root(expires=now + timedelta(days=exp["root"])))
        for _, e in sorted(keys.items()):
            root.signed.add_key(public_key(e), e["role"])
        if missing := [r for r in ROLES if not root.signed.roles[r].keyids]:
            raise RepoError(f"{keydir}/keys.json has no {', '.join(missing)} key")
        n_root = len(root.signed.roles[Root.type].keyids)
        if isinstance(root_threshold, bool) or not isinstance(root_threshold, int) or not 1 <= root_threshold <= n_root:
            raise RepoError(f"root_threshold must be 1..{n_root}, got {root_threshold!r}")
        root.signed.roles[Root.type].threshold = root_threshold
        for s in threshold_signers(keydir, keys, Root.type, root.signed):
            root.sign(s, append=True)
        (path / "metadata").mkdir(parents=True, exist_ok=True)
        (path / "targets").mkdir(exist_ok=True)
        write_atomic(path / "repo.json", json.dumps({"format": 1, "expiry": exp}, indent=2).encode(), hidden_tmp=True)
        write_atomic(path / "metadata" / "1.root.json", root.to_bytes(_SER), hidden_tmp=True)
        repo = cls(path)
        with repo._lock():
            repo._publish(keydir, now, targets={}, snapshot=True)
        return repo

    def version(self, role: str) -> int:
        """The newest published version of a role (0: none yet)."""
        if role == Timestamp.type:
            ts = self.meta_dir / "timestamp.json"
            return Metadata.from_bytes(ts.read_bytes()).signed.version if ts.exists() else 0
        return max(
            [int(v) for p in self.meta_dir.glob(f"*.{role}.json") if (v := p.name.split(".", 1)[0]).isdigit()],
            default=0,
        )

    def _file(self, role: str, version: int | None = None) -> Path:
        if role == Timestamp.type:
            return self.meta_dir / "timestamp.json"
        return self.meta_dir / f"{self.version(role) if version is None else version}.{role}.json"

    def _load(self, role: str, version: int | None = None) -> Metadata:
        return Metadata.from_bytes(self._file(role, version).read_bytes())

    def root_bytes(self, version: int | None = None) -> bytes:
        """The exact bytes of N.root.json (the newest when None): ship one in the image as
        the bootstrap root; the client walks from it to the newest root."""
        p = self._file(Root.type, version)
        if not p.is_file():
            raise RepoError(f"no root version {version}")
        return p.read_bytes()

    def targets(self) -> dict[str, dict[str, Any]]:
        """{name: {"length", "sha256", "custom"}} of the newest targets metadata."""
        return {
            n: {"length": t.length, "sha256": t.hashes["sha256"], "custom": t.custom}
            for n, t in self._load(Targets.type).signed.targets.items()
        }

    def add_target(
        self, file: Path, name: str, custom: dict, keydir: Path, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Publish `file` as target `name` with signed `custom` data; returns its info."""
        now = utc(now)
        validate_target_name(name)
        custom = _check_custom(custom)
        file = Path(file)
        if not file.is_file():
            raise RepoError(f"{file} is not a file")
        with self._lock():
            root, keys = self._load(Root.type).signed, load_keys(keydir)
            for r in (Targets.type, Snapshot.type, Timestamp.type):
                threshold_signers(keydir, keys, r, root)  # refuse before copying
            tmp = self.targets_dir / f".{name}.tmp"
            h, length = hashlib.sha256(), 0
            with open(file, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)  # hash exactly the bytes written (gotcha 7)
                    h.update(chunk)
                    length += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            digest = h.hexdigest()
            os.replace(tmp, self.targets_dir / f"{digest}.{name}")
            tf = TargetFile(length, {"sha256": digest}, name, unrecognized_fields={"custom": custom})
            current = dict(self._load(Targets.type).signed.targets)
            current[name] = tf
            self._publish(keydir, now, targets=current, snapshot=True)
        return {"name": name, "length": length, "sha256": digest, "custom": custom}

    def refresh_timestamp(self, keydir: Path, days: int | None = None, *, now: datetime | None = None) -> int:
        """A new timestamp version valid `days` (default: repo.json); the snapshot is
        re-signed too when it would expire before the new timestamp. Returns the version."""
        now = utc(now)
        days = self.expiry[Timestamp.type] if days is None else _check_days("timestamp", days)
        with self._lock():
            resign = self._load(Snapshot.type).signed.expires < now + timedelta(days=days)
            self._publish(keydir, now, snapshot=resign, ts_days=days)
        return self.version(Timestamp.type)

    def rotate_root(
        self,
        keydir: Path,
        *,
        replace: dict[str, str] | None = None,
        threshold: int | None = None,
        days: int | None = None,
        now: datetime | None = None,
    ) -> int:
        """Publish N+1.root.json: each old key file of `replace` is swapped for the new one
        (generated in keydir when it does not exist yet; same role), the root threshold
        optionally changed, the expiry renewed. Signed by a threshold of the old root's
        keys AND of the new root's keys found in keydir. When a targets/snapshot/timestamp
        key changed, those roles are re-signed with the new key. Returns N+1."""
        now = utc(now)
        days = self.expiry[Root.type] if days is None else _check_days("root", days)
        with self._lock():
            old, keys = self._load(Root.type), load_keys(keydir)
            new = Metadata.from_bytes(self.root_bytes())
            n_root = len(new.signed.roles[Root.type].keyids)
            if threshold is not None and (
                isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= n_root
            ):
                raise RepoError(f"threshold must be 1..{n_root}, got {threshold!r}")
            changed = set()
            for old_name, new_name in (replace or {}).items():
                role, old_id = keys.get(keyfile_name(old_name), {}).get("role"), keys.get(old_name, {}).get("keyid")
                if role is None or old_id not in new.signed.roles[role].keyids:
                    raise RepoError(f"{old_name} is not a key of root v{old.signed.version} in {keydir}/keys.json")
                if keyfile_name(new_name) not in keys:
                    new_key(keydir, new_name, role, keys)
                    save_keys(keydir, keys)
                elif keys[new_name]["role"] != role or keys[new_name]["keyid"] in new.signed.roles[role].keyids:
                    raise RepoError(f"{new_name} is not a new {role} key")
                new.signed.revoke_key(old_id, role)
                new.signed.add_key(public_key(keys[new_name]), role)
                changed.add(role)
            if threshold is not None:
                new.signed.roles[Root.type].threshold = threshold
            new.signed.version += 1
            new.signed.expires = now + timedelta(days=days)
            new.signatures.clear()
            signers = {
                sg.public_key.keyid: sg
                for r in (old.signed, new.signed)
                for sg in threshold_signers(keydir, keys, Root.type, r)
            }
            for sg in signers.values():
                new.sign(sg, append=True)
            data = new.to_bytes(_SER)
            for trusted in (old.signed, new.signed):  # old threshold AND new threshold
                trusted.verify_delegate(Root.type, Metadata.from_bytes(data).signed_bytes, new.signatures)
            write_atomic(self.meta_dir / f"{new.signed.version}.root.json", data, hidden_tmp=True)
            if changed - {Root.type}:  # re-sign with the new online keys
                cur = self._load(Targets.type).signed.targets if Targets.type in changed else None
                self._publish(keydir, now, targets=cur, snapshot=True)
        return new.signed.version

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.path / ".lock", "a") as f:  # released when closed
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _publish(
        self,
        keydir: Path,
        now: datetime,
        *,
        targets: dict | None = None,
        snapshot: bool = False,
        ts_days: int | None = None,
    ) -> None:
        """New targets (when given) -> snapshot (when targets or snapshot) -> timestamp.
        All keys are loaded before anything is written; timestamp.json is written last
        so clients never see it point at missing files."""
        keys, root, exp = load_keys(keydir), self._load(Root.type).signed, self.expiry
        roles = (
            ([Targets.type] if targets is not None else [])
            + ([Snapshot.type] if targets is not None or snapshot else [])
            + [Timestamp.type]
        )
        signers = {r: threshold_signers(keydir, keys, r, root) for r in roles}

        def write(md: Metadata, fname: str) -> bytes:
            for sg in signers[md.signed.type]:
                md.sign(sg, append=True)
            write_atomic(self.meta_dir / fname, data := md.to_bytes(_SER), hidden_tmp=True)
            return data

        ts_exp = now + timedelta(days=exp[Timestamp.type] if ts_days is None else ts_days)
        tv, sv = self.version(Targets.type), self.version(Snapshot.type)
        if targets is not None:
            tv += 1
            tmd = Metadata(Targets(version=tv, expires=now + timedelta(days=exp[Targets.type])))
            tmd.signed.targets.update(targets)
            write(tmd, f"{tv}.targets.json")
        if Snapshot.type in roles:
            tb = self._file(Targets.type, tv).read_bytes()  # the exact published bytes
            sv += 1
            smd = Metadata(Snapshot(version=sv, expires=max(now + timedelta(days=exp[Snapshot.type]), ts_exp)))
            smd.signed.meta["targets.json"] = MetaFile(tv, len(tb), {"sha256": hashlib.sha256(tb).hexdigest()})
            write(smd, f"{sv}.snapshot.json")
        sb = self._file(Snapshot.type, sv).read_bytes()
        tsmd = Metadata(Timestamp(version=self.version(Timestamp.type) + 1, expires=ts_exp))
        tsmd.signed.snapshot_meta = MetaFile(sv, len(sb), {"sha256": hashlib.sha256(sb).hexdigest()})
        write(tsmd, "timestamp.json")


def _check_days(role: str, days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
        raise RepoError(f"expiry for {role} must be 1..3660 days, got {days!r}")
    return days


def _check_expiry(exp: dict) -> dict:
    if set(exp) - set(ROLES):
        raise RepoError(f"unknown roles in expiry: {sorted(set(exp) - set(ROLES))}")
    return {r: _check_days(r, exp[r]) for r in ROLES}


def _check_custom(custom: Any) -> dict:
    if not isinstance(custom, dict):
        raise RepoError(f"custom must be a dict, got {type(custom).__name__}")
    try:
        text = json.dumps(custom, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise RepoError(f"custom is not JSON-able: {e}") from None
    if len(text) > MAX_CUSTOM_BYTES:
        raise RepoError(f"custom is {len(text)} bytes of JSON; the limit is {MAX_CUSTOM_BYTES}")
    return json.loads(text)
