"""`cabinet console passwd|users|remove` (issue 19): users in the data dir with scrypt hashes,
no default password, bad input refused with nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.console.users import UsersFileError, hash_password, read_users, users_path, verify_password

CLI = [sys.executable, "-m", "tools.cli", "console"]


def console(*args: str, data_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [*CLI, *args, "--data-dir", str(data_dir)], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_passwd_adds_a_user_with_an_scrypt_hash_readable_by_nobody_else(tmp_path: Path) -> None:
    r = console(
        "passwd", "--role", "technician", "--password-stdin", "anna", data_dir=tmp_path, stdin="s3cret-s3cret\n"
    )
    assert r.returncode == 0 and "console user anna (technician) added" in r.stdout
    path = users_path(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert "s3cret" not in path.read_text()
    user = read_users(path)["anna"]
    assert user.role == "technician" and user.hash.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret-s3cret", user.hash) and not verify_password("s3cret-s3creT", user.hash)
    r = console("passwd", "--role", "viewer", "--password-stdin", "anna", data_dir=tmp_path, stdin="another-one-1\n")
    assert "password changed, role technician -> viewer" in r.stdout
    assert verify_password("another-one-1", read_users(path)["anna"].hash)
    r = console("users", "--json", data_dir=tmp_path)
    assert json.loads(r.stdout) == [{"user": "anna", "role": "viewer"}]
    r = console("remove", "anna", data_dir=tmp_path)
    assert r.returncode == 0 and read_users(path) == {}
    assert "no console users" in console("users", data_dir=tmp_path).stdout


@pytest.mark.parametrize(
    "name,password,message",
    [
        ("anna", "short\n", "at least 10 characters"),
        ("Anna", "long-enough-1\n", "lower-case letter"),
        ("../x", "long-enough-1\n", "lower-case letter"),
    ],
)
def test_bad_names_and_short_passwords_change_nothing(tmp_path: Path, name: str, password: str, message: str) -> None:
    console("passwd", "--role", "technician", "--password-stdin", "bob", data_dir=tmp_path, stdin="bobs-password\n")
    before = users_path(tmp_path).read_bytes()
    r = console("passwd", "--role", "technician", "--password-stdin", name, data_dir=tmp_path, stdin=password)
    assert r.returncode == 2 and message in r.stderr
    assert users_path(tmp_path).read_bytes() == before


def test_an_unusable_users_file_is_reported_not_replaced(tmp_path: Path) -> None:
    path = users_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"users": {"x": {"role": "admin", "hash": "h"}}}')
    r = console(
        "passwd", "--role", "technician", "--password-stdin", "anna", data_dir=tmp_path, stdin="long-enough-1\n"
    )
    assert r.returncode == 1 and "users.json" in r.stderr and "role" in r.stderr
    assert "admin" in path.read_text()
    with pytest.raises(UsersFileError):
        read_users(path)
    assert console("remove", "nobody", data_dir=tmp_path).returncode == 1


def test_malformed_hashes_never_match() -> None:
    good = hash_password("pass-word-123", n=2**10)
    assert verify_password("pass-word-123", good)
    for bad in ("", "scrypt$x", good.replace("scrypt", "md5"), good.replace("$1024$", "$4194304$"), good[:-4] + "!!!!"):
        assert not verify_password("pass-word-123", bad)
