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

    k = osub.add_parser("keys", help="the repository's signing keys")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    ki = ksub.add_parser("init", help="make the root (offline), targets, snapshot and timestamp keys")
    ki.add_argument("--keys", required=True, help="key directory (0700; move the root keys offline afterwards)")
    ki.add_argument("--root-keys", type=int, default=3, help="how many root keys, one per holder (default 3)")
    ki.add_argument("--force", action="store_true", help="replace key files that already exist")
    ki.set_defaults(func=keys_main)

    r = osub.add_parser("repo", help="the TUF repository")
    rsub = r.add_subparsers(dest="repo_command", required=True, metavar="SUBCOMMAND")
    ri = rsub.add_parser("init", help="create the repository: its first root (the trusted root of every cabinet)")
    ri.add_argument("--repo", required=True, help="repository directory to create (metadata/, targets/)")
    ri.add_argument("--keys", required=True, help="key directory made by `cabinet ota keys init`")
    ri.add_argument("--threshold", type=int, default=2, help="root signatures required (default 2 of 3)")
    ri.add_argument(
        "--expiry", action="append", default=[], help="ROLE=DAYS, e.g. timestamp=7 (repeat; defaults in docs/ota.md)"
    )
    ri.set_defaults(func=repo_main)

    b = osub.add_parser(
        "build",
        help="build a release bundle of this project",
        epilog="Steps go to stderr as they start. Exit codes: 0 built, 1 a step failed, 2 bad arguments "
        "(unknown board, version, counter). docs/ota.md, section 3.",
    )
    add_build_args(b)
    b.set_defaults(func=build_main)

    p = osub.add_parser("publish", help="sign a bundle into the repository as a target")
    p.add_argument("bundle", help="the bundle file made by `cabinet ota build`")
    p.add_argument("--repo", required=True, help="repository directory")
    p.add_argument("--keys", required=True, help="directory with targets.pem, snapshot.pem, timestamp.pem")
    p.add_argument("--name", help="target name (default: the bundle's file name)")
    p.add_argument("--json", action="store_true", help="print the published target as JSON")
    p.set_defaults(func=publish_main)

    t = osub.add_parser("timestamp", help="re-sign the timestamp (run from cron with the online key)")
    t.add_argument("--repo", required=True, help="repository directory")
    t.add_argument("--keys", required=True, help="directory with timestamp.pem (the online key)")
    t.add_argument("--days", type=int, help="expiry in days (default: the repository's timestamp expiry)")
    t.set_defaults(func=timestamp_main)

    ro = osub.add_parser("root", help="the repository's root of trust")
    rosub = ro.add_subparsers(dest="root_command", required=True, metavar="SUBCOMMAND")
    rr = rosub.add_parser("rotate", help="publish a new root: replace root keys, change the threshold")
    rr.add_argument("--repo", required=True, help="repository directory")
    rr.add_argument("--keys", required=True, help="key directory holding the old and the new root keys")
    rr.add_argument(
        "--replace", action="append", default=[], help="OLD=NEW key file names, e.g. root-1.pem=root-4.pem (repeat)"
    )
    rr.add_argument("--threshold", type=int, help="new root threshold (default: unchanged)")
    rr.set_defaults(func=rotate_main)

    ls = osub.add_parser("targets", help="list the repository's targets")
    ls.add_argument("--repo", required=True, help="repository directory")
    ls.add_argument("--json", action="store_true", help="print the targets as JSON")
    ls.set_defaults(func=targets_main)

    s = osub.add_parser("serve", help="serve a repository directory over HTTP (with range requests)")
    add_serve_args(s)
    s.set_defaults(func=serve_main)

    rl = osub.add_parser(
        "rollout",
        help="offer a release to the fleet in waves; halt on failures",
        epilog="exit codes: 0 done, 3 halted (too many failures), 1 runtime failure (broker unreachable or "
        "refusing a publish, keys), 2 bad arguments. docs/ota.md, section 4.",
    )
    add_rollout_args(rl)
    rl.set_defaults(func=rollout_main)


def _fail(e: Exception, command: str, code: int = 1) -> int:
    print(f"cabinet ota {command}: {e}", file=sys.stderr)
    return code


def keys_main(a: argparse.Namespace) -> int:
    from ota.repo import init_keys  # deferred: heavy (tuf, cryptography)

    try:
        doc = init_keys(Path(a.keys), root_keys=a.root_keys, force=a.force)
    except RepoError as e:
        return _fail(e, "keys init")
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
            return _fail(ValueError(f"--expiry {item!r}: give ROLE=DAYS, e.g. timestamp=7"), "repo init", 2)
        expiry[role] = int(days)
    try:
        kw: dict[str, Any] = {"root_threshold": a.threshold}
        if expiry:
            kw["expiry"] = expiry
        repo = Repository.create(Path(a.repo), Path(a.keys), **kw)
    except RepoError as e:
        return _fail(e, "repo init")
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
        return _fail(e, "publish")
    doc = {"target": name, **man.custom(), "length": info.get("length"), "sha256": info.get("sha256")}
    if a.json:
        print(json.dumps(doc))
    else:
        print(
            f"published {name}: {man.name} {man.version} counter {man.counter}, boards {', '.join(man.boards)}, "
            f"python {man.python}, {doc['length']} bytes, sha256 {str(doc['sha256'])[:16]}..."
        )
    return 0


def timestamp_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    try:
        v = Repository(Path(a.repo)).refresh_timestamp(Path(a.keys), a.days)
    except RepoError as e:
        return _fail(e, "timestamp")
    print(f"timestamp version {v}")
    return 0


def rotate_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    replace: dict[str, str] = {}
    for item in a.replace:
        old, _, new = item.partition("=")
        if not old or not new:
            return _fail(ValueError(f"--replace {item!r}: give OLD=NEW, e.g. root-1.pem=root-4.pem"), "root rotate", 2)
        replace[old] = new
    try:
        v = Repository(Path(a.repo)).rotate_root(Path(a.keys), replace=replace or None, threshold=a.threshold)
    except RepoError as e:
        return _fail(e, "root rotate")
    print(f"root version {v} published (signed by the old and the new threshold)")
    return 0


def targets_main(a: argparse.Namespace) -> int:
    from ota.repo import Repository  # deferred: heavy (tuf, cryptography)

    try:
        targets = Repository(Path(a.repo)).targets()
    except RepoError as e:
        return _fail(e, "targets")
    if a.json:
        print(json.dumps(targets, indent=1, sort_keys=True))
        return 0
    head = ("target", "version", "counter", "boards", "python", "bytes")
    rows = [
        (
            name,
            str(t["custom"].get("version", "-")),
            str(t["custom"].get("counter", "-")),
            ",".join(t["custom"].get("boards") or []) or "-",
            str(t["custom"].get("python", "-")),
            str(t["length"]),
        )
        for name, t in sorted(targets.items())
    ]
    if not rows:
        print(f"{a.repo}: no targets published yet")
        return 0
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
