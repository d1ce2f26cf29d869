"""Part of the `cabinet` command table: the web console's users, in the agent's data dir.

    cabinet console passwd --role technician|viewer [--password-stdin] NAME   add a user or set a password
    cabinet console users [--json]                                             list the users and roles
    cabinet console remove NAME                                                remove a user

The password is asked twice on the terminal (never on the command line: shell history and
`ps` would show it); `--password-stdin` reads one line from standard input for scripts. The
agent does not need to be stopped: it reads the file again at the next login, and a removed
user's or a changed password's sessions end at their next request.
`cabinet provision --console-user NAME` (tools/provision) adds a first technician with a one-time
code through `first_technician` below.
Exit codes: 0 ok, 1 the users file cannot be read or written, 2 a usage error (bad name,
short password, passwords that differ, unknown user)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.console.users import (
    MIN_PASSWORD,
    ROLES,
    User,
    UsersFileError,
    check_name,
    check_password,
    hash_password,
    one_time_code,
    read_users,
    users_path,
    write_users,
)

DataDirOf = Callable[[argparse.Namespace], Path]


def _fail(code: int, message: str) -> int:
    print(f"cabinet console: {message}", file=sys.stderr)
    return code


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        return None
    return first


def passwd(args: argparse.Namespace, data_dir: Path) -> int:
    if problem := check_name(args.name):
        return _fail(2, f"{args.name!r}: {problem}")
    path = users_path(data_dir)
    try:
        users = read_users(path)
    except UsersFileError as e:
        return _fail(1, str(e))
    password = _read_password(args.password_stdin)
    if password is None:
        return _fail(2, "the two passwords differ; nothing changed")
    if problem := check_password(password):
        return _fail(2, f"{problem}; nothing changed")
    old = users.get(args.name)
    users[args.name] = User(args.name, args.role, hash_password(password))
    try:
        write_users(path, users)
    except OSError as e:
        return _fail(1, f"cannot write {path}: {e.strerror or e}")
    change = (
        "added"
        if old is None
        else "password changed" + (f", role {old.role} -> {args.role}" if old.role != args.role else "")
    )
    print(f"console user {args.name} ({args.role}) {change} in {path}")
    return 0


def first_technician(out_dir: Path, name: str) -> dict[str, str]:
    """`cabinet provision --console-user NAME`: NAME as a technician with a one-time code, in
    `<out_dir>/console/users.json` (the users file of an agent whose data dir that is). The code
    is returned to be shown once; only its hash is stored. ValueError: a bad name, or a users
    file there that cannot be read."""
    if problem := check_name(name):
        raise ValueError(f"--console-user {name!r}: {problem}")
    path = users_path(out_dir)
    users = read_users(path)  # UsersFileError is a ValueError
    code = one_time_code()
    users[name] = User(name, "technician", hash_password(code), one_time=True)
    write_users(path, users)
    return {"user": name, "role": "technician", "one_time_code": code, "users_file": str(path)}


def list_users(args: argparse.Namespace, data_dir: Path) -> int:
    path = users_path(data_dir)
    try:
        users = read_users(path)
    except UsersFileError as e:
        return _fail(1, str(e))
    rows: list[dict[str, Any]] = [
        {"user": u.name, "role": u.role} for u in sorted(users.values(), key=lambda u: u.name)
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not rows:
        print(f"no console users in {path}; add one with `cabinet console passwd --role technician NAME`")
    else:
        for r in rows:
            print(f"{r['user']:<24} {r['role']}")
    return 0


def remove(args: argparse.Namespace, data_dir: Path) -> int:
    path = users_path(data_dir)
    try:
        users = read_users(path)
    except UsersFileError as e:
        return _fail(1, str(e))
    if users.pop(args.name, None) is None:
        return _fail(2, f"no console user {args.name!r} in {path}")
    try:
        write_users(path, users)
    except OSError as e:
        return _fail(1, f"cannot write {path}: {e.strerror or e}")
    print(f"console user {args.name} removed; its sessions end at their next request")
    return 0


def add_parsers(sub: Any, common: Callable[..., None], data_dir_of: DataDirOf) -> None:
    c = sub.add_parser("console", help="the web console's users: add, change a password, list, remove")
    csub = c.add_subparsers(dest="console_command", required=True, metavar="SUBCOMMAND")
    p = csub.add_parser(
        "passwd",
        help="add a console user or set a user's password and role",
        description=f"Asks the password twice (at least {MIN_PASSWORD} characters); stored as an scrypt hash.",
    )
    common(p, config=False)
    p.add_argument("name", metavar="NAME", help="the user name: a lower-case letter, then a-z 0-9 . _ - (max 32)")
    p.add_argument("--role", choices=ROLES, required=True, help="technician: look and act; viewer: look only")
    p.add_argument("--password-stdin", action="store_true", help="read the password from one line of standard input")
    p.set_defaults(func=lambda a: passwd(a, data_dir_of(a)))
    u = csub.add_parser("users", help="list the console users and their roles")
    common(u, config=False)
    u.add_argument("--json", action="store_true", help="print the list as JSON (for machines)")
    u.set_defaults(func=lambda a: list_users(a, data_dir_of(a)))
    r = csub.add_parser("remove", help="remove a console user (their sessions end)")
    common(r, config=False)
    r.add_argument("name", metavar="NAME", help="the user to remove")
    r.set_defaults(func=lambda a: remove(a, data_dir_of(a)))
