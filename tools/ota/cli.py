"""`cabinet ota ...`: the operators' side of over-the-air updates (docs/ota.md).

cabinet ota keys init --keys DIR [--root-keys 3]        root (offline), targets, snapshot, timestamp keys
cabinet ota repo init --repo DIR --keys DIR [--threshold 2] [--expiry ROLE=DAYS ...]
cabinet ota build --counter N [--version V] ...          a release bundle (tools/ota/build.py)
cabinet ota publish BUNDLE --repo DIR --keys DIR         sign it into the repository as a target
cabinet ota timestamp --repo DIR --keys DIR [--days N]   re-sign the timestamp (cron, online key)
cabinet ota root rotate --repo DIR --keys DIR --replace OLD=NEW ...
cabinet ota targets --repo DIR                           what the repository offers
cabinet ota serve DIR [--host H] [--port P]              a range-capable HTTP server for a repository
cabinet ota rollout --target NAME --version V ...        waves, gates, halt (tools/ota/rollout/session.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ota import bundle
from ota.errors import RepoError
from tools.ota.build import add_build_args, build_main
from tools.ota.rollout.session import add_rollout_args, rollout_main
from tools.ota.serve import add_serve_args, serve_main


def add_parsers(sub: Any) -> None:
    o = sub.add_parser("ota", help="over-the-air updates: keys, bundles, the TUF repository, rollouts")
    osub = o.add_subparsers(dest="ota_command", required=True, metavar="SUBCOMMAND")

    k = osub.add_parser("keys", help="make the repository's signing keys")
    k.add_argument("action", choices=("init",))
    k.add_argument("--keys", required=True, help="key directory (0700; move the root keys offline afterwards)")
    k.add_argument("--root-keys", type=int, default=3)
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=keys_main)

    r = osub.add_parser("repo", help="create the TUF repository")
    r.add_argument("action", choices=("init",))
    r.add_argument("--repo", required=True)
    r.add_argument("--keys", required=True)
    r.add_argument("--threshold", type=int, default=2, help="root signatures required (default 2 of 3)")
    r.add_argument("--expiry", action="append", default=[], help="ROLE=DAYS, e.g. timestamp=7 (repeat)")
    r.set_defaults(func=repo_main)

    b = osub.add_parser("build", help="build a release bundle of this project")
    add_build_args(b)
    b.set_defaults(func=build_main)

    p = osub.add_parser("publish", help="sign a bundle into the repository")
    p.add_argument("bundle")
    p.add_argument("--repo", required=True)
    p.add_argument("--keys", required=True, help="directory with targets.pem, snapshot.pem, timestamp.pem")
    p.add_argument("--name", help="target name (default: the bundle's file name)")
    p.set_defaults(func=publish_main)

    t = osub.add_parser("timestamp", help="re-sign the timestamp (run from cron with the online key)")
    t.add_argument("--repo", required=True)
    t.add_argument("--keys", required=True)
    t.add_argument("--days", type=int)
    t.set_defaults(func=timestamp_main)

    ro = osub.add_parser("root", help="root key rotation")
    ro.add_argument("action", choices=("rotate",))
    ro.add_argument("--repo", required=True)
    ro.add_argument("--keys", required=True)
    ro.add_argument("--replace", action="append", default=[], help="OLD=NEW key file names, e.g. root-1.pem=root-4.pem")
    ro.add_argument("--threshold", type=int)
    ro.set_defaults(func=rotate_main)

    ls = osub.add_parser("targets", help="list the repository's targets")
    ls.add_argument("--repo", required=True)
    ls.set_defaults(func=targets_main)

    s = osub.add_parser("serve", help="serve a repository directory over HTTP (with range requests)")
    add_serve_args(s)
    s.set_defaults(func=serve_main)

    rl = osub.add_parser("rollout", help="offer a release to the fleet in waves; halt on failures")
    add_rollout_args(rl)
    rl.set_defaults(func=rollout_main)


def _fail(e: Exception) -> int:
    print(f"cabinet ota: {e}", file=sys.stderr)
    return 1


def keys_main(a: argparse.Namespace) -> int:
    from ota.repo import init_keys  # deferred: heavy (tuf, cryptography)

    try:
        doc = init_keys(Path(a.keys), root_keys=a.root_keys, force=a.force)
    except RepoError as e:
        return _fail(e)
    for name, k in sorted(doc["keys"].items()):
        print(f"{name:16} {k['role']:10} keyid {k['keyid'][:16]}")
    print(
        f"keys in {a.keys}: keep root-*.pem offline, one per holder; targets.pem with the release manager; "
        "snapshot.pem and timestamp.pem on the update server"
    )
    return 0


def repo_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    expiry: dict[str, int] = {}
    for item in a.expiry:
        role, _, days = item.partition("=")
        if not days.isdigit():
            return _fail(ValueError(f"--expiry {item!r}: ROLE=DAYS"))
        expiry[role] = int(days)
    try:
        kw: dict[str, Any] = {"root_threshold": a.threshold}
        if expiry:
            kw["expiry"] = expiry
        repo = Repository.create(Path(a.repo), Path(a.keys), **kw)
    except RepoError as e:
        return _fail(e)
    print(
        f"repository {a.repo}: metadata/1.root.json is the trusted root to install on cabinets "
        f"({len(repo.root_bytes(1))} bytes)"
    )
    return 0


def publish_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    path = Path(a.bundle)
    try:
        man = bundle.read_manifest(path)
        name = a.name or path.name
        info = Repository(Path(a.repo)).add_target(path, name, man.custom(), Path(a.keys))
    except (bundle.BundleError, RepoError, OSError) as e:
        return _fail(e)
    print(json.dumps({"target": name, **man.custom(), "length": info.get("length"), "sha256": info.get("sha256")}))
    return 0


def timestamp_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    try:
        v = Repository(Path(a.repo)).refresh_timestamp(Path(a.keys), a.days)
    except RepoError as e:
        return _fail(e)
    print(f"timestamp version {v}")
    return 0


def rotate_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    replace: dict[str, str] = {}
    for item in a.replace:
        old, _, new = item.partition("=")
        if not old or not new:
            return _fail(ValueError(f"--replace {item!r}: OLD=NEW"))
        replace[old] = new
    try:
        v = Repository(Path(a.repo)).rotate_root(Path(a.keys), replace=replace or None, threshold=a.threshold)
    except RepoError as e:
        return _fail(e)
    print(f"root version {v} published (signed by the old and the new threshold)")
    return 0


def targets_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    try:
        print(json.dumps(Repository(Path(a.repo)).targets(), indent=1, sort_keys=True))
    except RepoError as e:
        return _fail(e)
    return 0
