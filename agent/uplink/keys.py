"""The cabinet's key files: its Ed25519 telemetry signing key and the public keys it
trusts (the ingest's), read and written as the runtime needs them.

Private keys are PKCS8 PEM written with mode 0600 from the first byte (temp file +
rename + fsync); public keys are given as 64 hex characters, a PEM file, or a file
holding the hex. `cabinet provision` (tools/provision/) makes production keys with
these same functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.fsutil import write_atomic


class KeyFileError(Exception):
    """A CA, certificate or key file is missing, unreadable or not what it should be."""


def write_private(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write `data` to `path` with mode 0600 from the first byte on (temp file + rename).

    Refuses to replace an existing file unless `force`."""
    _write(path, data, 0o600, force=force)


def write_public(path: Path, data: bytes, *, force: bool = False) -> None:
    _write(path, data, 0o644, force=force)


def _write(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode, exclusive=not force, hidden_tmp=True)
    os.chmod(path, mode)  # exactly `mode`, whatever the umask


def new_signing_key(path: Path | str, *, force: bool = False) -> bytes:
    """Generate an Ed25519 telemetry signing key, write it as PKCS8 PEM (0600) to `path`,
    and return the raw 32-byte public key. Refuses to replace an existing key unless `force`."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(Path(path), pem, force=force)
    return public_key_raw(key)


def load_signing_key(path: Path | str) -> ed25519.Ed25519PrivateKey:
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: missing (the cabinet's Ed25519 signing key)") from None
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path}: a {type(key).__name__}; the telemetry signing key must be Ed25519")
    return key


def public_key_raw(key: ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_public_key(text: str) -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key from 64 hex characters, or a file (PEM, or the hex)."""
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    data = Path(text).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip()))
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(f"{text}: not an Ed25519 public key")
    return key
