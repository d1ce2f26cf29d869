"""Console users: name, role (technician or viewer) and an scrypt hash of the password, in
`<data dir>/console/users.json` (mode 0600, written atomically). There is no default user:
`cabinet console passwd --role technician NAME` writes one, or `cabinet provision --console-user
NAME` a first technician with a one-time code: whoever logs in with a one-time code must choose
a password before anything else (the code then stops working).

The agent reads the file again whenever it changed (by mtime), so a user added, removed or
given a new password takes effect at once; a session whose user is gone, has another role or
another password ends. A file that cannot be read or parsed is reported, never guessed at:
nobody can log in until it is fixed (`UsersFileError`)."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ota.fsutil import write_atomic

ROLES = ("technician", "viewer")
NAME_RE = r"[a-z][a-z0-9._-]{0,31}"
MIN_PASSWORD = 10
MAX_PASSWORD = 256
# scrypt: N=2^14, r=8, p=1 (16 MiB, ~50 ms on a laptop core, a few hundred ms on a Pi)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAX_FILE = 1 << 20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


class UsersFileError(ValueError):
    """The users file exists but is not usable (the message names the file and why)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str
    one_time: bool = False  # the hash is of a one-time code: the first login must set a password


CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or off a screen


def one_time_code(groups: int = 4) -> str:
    """A random code such as `k7pm-xq2d-9fha-3wtz` (about 79 bits)."""
    return "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(groups))


def users_path(data_dir: Path) -> Path:
    return Path(data_dir) / "console" / "users.json"


def check_name(name: str) -> str | None:
    if not re.fullmatch(NAME_RE, name):
        return "a user name is a lower-case letter, then up to 31 of a-z 0-9 . _ -"
    return None


def check_password(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"a password has at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} characters"
    return None


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison; a malformed hash never matches."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or int(n) > 2**20 or int(r) > 32 or int(p) > 16:
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(
            password.encode()[:1024],
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def keep_kdf_memory_returned() -> bool:
    """Have glibc hand large blocks (>= 1 MiB) back to the system when freed. scrypt takes 16 MiB
    for each check; glibc's default raises its mmap threshold after the first such block is freed,
    so from the second login on those 16 MiB stay in the worker thread's heap for good (measured:
    +16 MiB RSS). A fixed threshold keeps them mmapped and returned. False where there is no glibc."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 20))
    except (OSError, AttributeError):
        return False


# a hash to verify against when the user does not exist: the answer takes as long either way
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class Users:
    """The users file, re-read when it changed."""

    def __init__(self, data_dir: Path) -> None:
        self.path = users_path(data_dir)
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def load(self) -> dict[str, User]:
        """Name -> User; {} when there is no file. UsersFileError when it is unusable."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users = read_users(self.path)
            self._stamp = stamp
        return self._users

    def get(self, name: str) -> User | None:
        return self.load().get(name)


def read_users(path: Path) -> dict[str, User]:
    try:
        if path.stat().st_size > _MAX_FILE:
            raise UsersFileError(f"{path}: larger than {_MAX_FILE} bytes")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UsersFileError(f"{path}: {e}") from None
    users = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(users, dict):
        raise UsersFileError(f'{path}: expected {{"users": {{NAME: {{"role", "hash"}}}}}}')
    out: dict[str, User] = {}
    for name, entry in users.items():
        role = entry.get("role") if isinstance(entry, dict) else None
        hashed = entry.get("hash") if isinstance(entry, dict) else None
        one_time = entry.get("one_time", False) if isinstance(entry, dict) else False
        if check_name(str(name)) or role not in ROLES or not isinstance(hashed, str) or not isinstance(one_time, bool):
            raise UsersFileError(f"{path}: user {name!r}: needs a valid name, a role ({', '.join(ROLES)}) and a hash")
        out[name] = User(name, role, hashed, one_time)
    return out


def write_users(path: Path, users: dict[str, User]) -> None:
    doc: dict[str, Any] = {
        "version": 1,
        "users": {
            u.name: {"role": u.role, "hash": u.hash, **({"one_time": True} if u.one_time else {})}
            for u in sorted(users.values(), key=lambda u: u.name)
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    write_atomic(path, json.dumps(doc, indent=1).encode() + b"\n", mode=0o600)
