"""The cabinet's update client: TUF-verified metadata (python-tuf ngclient) and verified,
resumable, disk-bounded bundle downloads.

Owns `UpdateClient`: `refresh()` (a new ngclient Updater per call, the shipped bootstrap
root as anchor, metadata cached in cache_dir), `target(name)`, `download(info)` into
`download_dir/<sha256>.<name>` via a `.part` file, and `cleanup(keep)`. Every failure is an
`OtaError` whose reason the agent reports; `.transient` ones are retried later.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.ngclient import Updater, UpdaterConfig

from ota import fsutil
from ota.errors import OtaError
from ota.fetcher import HttpFetcher

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,199}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def tuf_reason(e: BaseException) -> OtaError:
    """Map a python-tuf exception (or OSError) to an OtaError with the reason reported."""
    if isinstance(e, OtaError):
        return e
    table = (
        (exceptions.ExpiredMetadataError, "metadata_expired"),
        (exceptions.UnsignedMetadataError, "bad_signature"),
        (exceptions.BadVersionNumberError, "rollback_attack"),
        (exceptions.LengthOrHashMismatchError, "metadata_mismatch"),
        (exceptions.DownloadLengthMismatchError, "metadata_mismatch"),
    )
    for cls, reason in table:
        if isinstance(e, cls):
            return OtaError(reason, str(e))
    if isinstance(e, exceptions.DownloadHTTPError):
        return OtaError(f"http_{e.status_code}", str(e))
    if isinstance(e, exceptions.DownloadError):
        return OtaError("unreachable", str(e.__cause__ or e))
    if isinstance(e, exceptions.RepositoryError):
        return OtaError("repository_error", f"{type(e).__name__}: {e}")
    if isinstance(e, OSError):
        return OtaError("disk_error", str(e))
    return OtaError("repository_error", f"{type(e).__name__}: {e}")


class UpdateClient:
    """Talks to one TUF repository: `<repository_url>/metadata/`, `<repository_url>/targets/`."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        download_dir: Path,
        repository_url: str,
        bootstrap_root: bytes,
        fetcher: HttpFetcher | None = None,
        max_bundle_bytes: int = 512 * 2**20,
        reserve_bytes: int = 64 * 2**20,
    ) -> None:
        u = urlsplit(repository_url) if isinstance(repository_url, str) else None
        if u is None or u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment:
            raise OtaError("bad_repository", f"repository URL must be http(s)://host[/path], got {repository_url!r}")
        if not isinstance(bootstrap_root, bytes):
            raise OtaError("bad_root", "bootstrap_root must be the bytes of a root.json")
        try:
            md = Metadata.from_bytes(bootstrap_root)
            if md.signed.type != Root.type:
                raise ValueError(f"it is {md.signed.type} metadata")
            md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
        except Exception as e:  # noqa: BLE001 - python-tuf raises many types for a bad root; each is bad_root
            raise OtaError("bad_root", f"bootstrap root is not a self-signed root.json: {e}") from None
        for n, v in (("max_bundle_bytes", max_bundle_bytes), ("reserve_bytes", reserve_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{n} must be a non-negative int, got {v!r}")
        base = repository_url.rstrip("/")
        self.metadata_url = base + "/metadata/"
        self.targets_url = base + "/targets/"
        self.cache_dir = Path(cache_dir)
        self.download_dir = Path(download_dir)
        self.bootstrap_root = bootstrap_root
        self.fetcher = fetcher or HttpFetcher()
        self.max_bundle_bytes = max_bundle_bytes
        self.reserve_bytes = reserve_bytes
        self._updater: Updater | None = None

    # ---- metadata

    def refresh(self) -> None:
        """Fetch and verify the newest metadata (root walk, timestamp, snapshot, targets).
        A new Updater each call: ngclient refreshes once per Updater (gotcha 4)."""
        self._refresh()

    def _refresh(self) -> Updater:
        self._updater = None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            up = Updater(
                metadata_dir=str(self.cache_dir),
                metadata_base_url=self.metadata_url,
                target_dir=str(self.download_dir),
                target_base_url=self.targets_url,
                fetcher=self.fetcher,
                config=UpdaterConfig(),
                bootstrap=self.bootstrap_root,
            )
            up.refresh()
        except Exception as e:
            raise tuf_reason(e) from e
        self._updater = up
        return up

    def target(self, name: str) -> TargetFile:
        """The signed TargetFile of `name` (refreshes first when needed)."""
        if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
            raise OtaError("bad_target_name", f"{name!r} is not a valid target name")
        updater = self._updater if self._updater is not None else self._refresh()
        try:
            info = updater.get_targetinfo(name)
        except Exception as e:
            raise tuf_reason(e) from e
        if info is None:
            raise OtaError("unknown_target", f"{name} is not in the signed targets")
        return info

    # ---- downloads

    def file_name(self, info: TargetFile) -> str:
        """`<sha256>.<name>`: the repository URL's last part and the local file name."""
        sha = info.hashes.get("sha256")
        if not isinstance(sha, str) or not _HEX64.match(sha):
            raise OtaError("unsupported_hash", f"{info.path} has no sha256 hash")
        if not _NAME_RE.match(info.path) or ".." in info.path:
            raise OtaError("bad_target_name", f"{info.path!r} is not a valid target name")
        return f"{sha}.{info.path}"

    def download(self, info: TargetFile, progress: Callable[[int, int], None] | None = None) -> Path:
        """Download and verify `info`'s file; returns `download_dir/<sha256>.<name>`.
        Raises OtaError: too_large, no_space, hash_mismatch (the .part is deleted),
        endless_data, unreachable (the .part is kept: call again to resume), http_<code>."""
        fname = self.file_name(info)
        if info.length > self.max_bundle_bytes:
            raise OtaError("too_large", f"{info.path} is {info.length} bytes; the limit is {self.max_bundle_bytes}")
        try:
            self.download_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OtaError("disk_error", str(e)) from None
        final = self.download_dir / fname
        part = self.download_dir / (fname + ".part")
        if final.is_file():
            if self._verified(info, final):
                return final
            final.unlink()
        have = part.stat().st_size if part.is_file() else 0
        need = max(0, info.length - have) + self.reserve_bytes
        free = shutil.disk_usage(self.download_dir).free
        if free < need:
            raise OtaError(
                "no_space",
                f"{self.download_dir} has {free} bytes free; {need} needed "
                f"({info.length - have} to download + {self.reserve_bytes} reserve)",
            )
        url = self.targets_url + quote(fname)
        try:
            self.fetcher.download_resumable(url, part, info.length, progress=progress)
        except OSError as e:
            raise OtaError("disk_error", f"writing {part}: {e}") from None
        if not self._verified(info, part):
            part.unlink(missing_ok=True)
            raise OtaError(
                "hash_mismatch",
                f"{info.path}: the downloaded bytes do not match the signed length and hashes (partial file deleted)",
            )
        os.replace(part, final)
        fsutil.fsync_path(self.download_dir)
        return final

    @staticmethod
    def _verified(info: TargetFile, path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                info.verify_length_and_hashes(f)
        except exceptions.LengthOrHashMismatchError:
            return False
        return True

    def cleanup(self, keep: set[str]) -> list[str]:
        """Remove downloads (and .part files) except those in `keep`: target names or
        file names (`<sha256>.<name>`). Returns the removed file names."""
        keep = set(keep)
        removed: list[str] = []
        if not self.download_dir.is_dir():
            return removed
        for p in sorted(self.download_dir.iterdir()):
            stem = p.name[:-5] if p.name.endswith(".part") else p.name
            sha, _, name = stem.partition(".")
            if not (_HEX64.match(sha) and name) or not p.is_file():
                continue  # not ours
            if stem in keep or name in keep:
                continue
            p.unlink()
            removed.append(p.name)
        return removed
