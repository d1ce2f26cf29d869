"""The key directory of the operator's TUF repository (ota.repo): key files and keys.json.

    <keydir>/root-1.pem .. root-<n>.pem  targets.pem  snapshot.pem  timestamp.pem
    <keydir>/keys.json   {"format": 1, "keys": {file name: {"keyid", "public", "role"}}}

Key files are Ed25519 PKCS#8 PEM, mode 0600 from the first byte (ota.fsutil.write_atomic
with a hidden temp file); keys.json is public and travels with any subset of the key
files. Owns `init_keys`, `load_keys`, `load_signer`, `new_key` (one more key, for a root
rotation) and `threshold_signers` (a role's signing threshold loaded from a key directory).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from ota.errors import RepoError
from ota.fsutil import write_atomic

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
_KEYFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}\.pem$")


def keyfile_name(name: str) -> str:
    """`name` when it is a key file name (e.g. root-4.pem: no directories), else RepoError."""
    if not isinstance(name, str) or not _KEYFILE_RE.match(name):
        raise RepoError(f"bad key file name {name!r} (want e.g. root-4.pem)")
    return name


def public_key(entry: dict[str, Any]) -> SSlibKey:
    """The public key of a keys.json entry."""
    return SSlibKey.from_dict(entry["keyid"], copy.deepcopy(entry["public"]))


def load_keys(keydir: Path) -> dict[str, dict[str, Any]]:
    """keys.json of a key directory: {file name: {"keyid", "public", "role"}}."""
    p = Path(keydir) / "keys.json"
    try:
        keys = json.loads(p.read_text())["keys"]
        for name, e in keys.items():
            keyfile_name(name)
            if e["role"] not in ROLES or not isinstance(e["keyid"], str):
                raise ValueError(f"bad entry {name}")
            public_key(e)
    except FileNotFoundError:
        raise RepoError(
            f"{p} missing (make the keys with `cabinet ota keys init`, or copy keys.json with the key files)"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RepoError(f"{p} is not a valid keys.json: {e}") from None
    return keys


def save_keys(keydir: Path, keys: dict[str, dict[str, Any]]) -> None:
    data = json.dumps({"format": 1, "keys": keys}, indent=2, sort_keys=True).encode()
    write_atomic(Path(keydir) / "keys.json", data, hidden_tmp=True)


def new_key(keydir: Path, name: str, role: str, keys: dict[str, dict[str, Any]], force: bool = False) -> None:
    """Generate key file `name` for `role` in keydir and add it to `keys` (not saved)."""
    path = Path(keydir) / keyfile_name(name)
    signer = CryptoSigner.generate_ed25519()
    try:
        write_atomic(path, signer.private_bytes, mode=0o600, exclusive=not force, hidden_tmp=True)
    except FileExistsError:
        raise RepoError(f"{path} exists; refusing to overwrite a key (--force replaces it)") from None
    os.chmod(path, 0o600)  # exactly 0600, whatever the umask
    pub = signer.public_key
    keys[name] = {"keyid": pub.keyid, "public": pub.to_dict(), "role": role}


def init_keys(keydir: Path, *, root_keys: int = 3, force: bool = False) -> dict[str, Any]:
    """Generate root-1.pem..root-<n>.pem, targets.pem, snapshot.pem, timestamp.pem
    (PKCS#8 PEM, mode 0600) and keys.json (public keys); return the keys.json content.
    Move the root keys offline afterwards (one per holder)."""
    if not isinstance(root_keys, int) or not 1 <= root_keys <= 16:
        raise RepoError(f"root_keys must be 1..16, got {root_keys!r}")
    keydir = Path(keydir)
    keydir.mkdir(parents=True, exist_ok=True)
    os.chmod(keydir, 0o700)
    plan = [(f"root-{i}.pem", Root.type) for i in range(1, root_keys + 1)]
    plan += [(f"{r}.pem", r) for r in (Targets.type, Snapshot.type, Timestamp.type)]
    if not force:
        taken = [n for n, _ in plan if (keydir / n).exists()]
        if taken:
            raise RepoError(f"{keydir} already holds {', '.join(taken)}; refusing to overwrite (--force replaces them)")
    keys: dict[str, dict[str, Any]] = {}
    for name, role in plan:
        new_key(keydir, name, role, keys, force=force)
    save_keys(keydir, keys)
    return {"format": 1, "keys": keys}


def load_signer(keydir: Path, name: str, keys: dict[str, dict[str, Any]] | None = None) -> CryptoSigner:
    """The signer of key file `name`, checked against its keys.json entry."""
    keys = load_keys(keydir) if keys is None else keys
    if name not in keys:
        raise RepoError(f"{name} is not listed in {keydir}/keys.json")
    try:
        priv = load_pem_private_key((Path(keydir) / keyfile_name(name)).read_bytes(), password=None)
        signer = CryptoSigner(priv)
    except (OSError, ValueError, TypeError) as e:
        raise RepoError(f"cannot load key {keydir}/{name}: {e}") from None
    if signer.public_key.keyid != keys[name]["keyid"]:
        raise RepoError(f"{keydir}/{name} does not match its keys.json entry")
    return signer


def threshold_signers(keydir: Path, keys: dict[str, dict[str, Any]], role: str, root: Root) -> list[CryptoSigner]:
    """A threshold of `role`'s keys (per `root`) loaded from keydir, or RepoError."""
    r = root.roles[role]
    present = [n for n, e in sorted(keys.items()) if e["keyid"] in r.keyids and (Path(keydir) / n).is_file()]
    if len(present) < r.threshold:
        raise RepoError(
            f"signing {role} (root v{root.version}) needs {r.threshold} of its keys; "
            f"{keydir} holds {len(present)} ({', '.join(present) or 'none'})"
        )
    return [load_signer(keydir, n, keys) for n in present[: r.threshold]]
