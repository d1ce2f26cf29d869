"""Certificate files for the broker and the cloud services, written where the user that
reads them can read them (`cabinet ca issue-server`, `cabinet ca issue-client`).

Mosquitto started as root drops to its user (`mosquitto`) before it loads its
certificates, so that user must be able to reach and read them: a key in a 0700 directory
of root's (the CA's `pki/`, a home directory, a private temp dir) stops it with "Unable to
load CA certificates". So the broker gets its own directory with copies of what it reads:

    DIR/            0750, owned by the reading user (run as root) or by you
    DIR/server.key  0600, owned by the reading user: never world-readable
    DIR/server.crt  0644
    DIR/ca.crt      0644, the device CA certificate (mosquitto's cafile)

Run as root, the files go to the reading user (`--user`, default `mosquitto` for the
broker) and a directory that user cannot reach (a parent it may not enter) is refused
before anything is written. Run as another user, they stay yours: a broker you start
yourself does not change users.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from agent.uplink.keys import write_private, write_public

BROKER_USER = "mosquitto"


class FilesError(Exception):
    """The files cannot be written for that user (printed as a one-line error, exit 2)."""


@dataclass(frozen=True)
class Owner:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def owner_for(user: str | None, default: str | None) -> Owner | None:
    """Who the files are given to: as root, `user` or `default` (None: nobody, root keeps
    them); as anyone else nobody (only root can give files away)."""
    name = user or default
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        if user and user != me:
            raise FilesError(f"--user {user}: only root can give files to another user (you are {me})")
        return None
    if name is None or name == "root":
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        hint = "give --user USER (the user the broker runs as), or --user root" if user is None else "no such user"
        raise FilesError(f"user {name} does not exist: {hint}") from None
    return Owner(name, pw.pw_uid, pw.pw_gid, frozenset(os.getgrouplist(name, pw.pw_gid)))


def can_enter(st: os.stat_result, who: Owner) -> bool:
    mode = st.st_mode
    if st.st_uid == who.uid:
        return bool(mode & stat.S_IXUSR)
    if st.st_gid in who.groups:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def blocking_parent(out_dir: Path, who: Owner) -> Path | None:
    """The first directory above `out_dir` that `who` may not enter (None: all fine)."""
    for parent in reversed(out_dir.resolve().parents):
        if not can_enter(parent.stat(), who):
            return parent
    return None


def describe(path: Path) -> str:
    st = path.stat()
    try:
        user, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        user, group = str(st.st_uid), str(st.st_gid)
    return f"{stat.filemode(st.st_mode)} {user}:{group}"


def write_set(out_dir: Path, files: dict[str, tuple[bytes, bool]], who: Owner | None, force: bool) -> list[Path]:
    """Write {name: (data, private)} into out_dir: private files 0600, others 0644, all given
    to `who` (and the directory too when `who` could not enter it). Returns the paths."""
    out_dir = Path(out_dir)
    if who is not None:
        blocked = blocking_parent(out_dir, who)
        if blocked is not None:
            raise FilesError(
                f"{out_dir}: user {who.name} cannot reach it ({blocked} is {describe(blocked)}); choose a "
                f"directory {who.name} can enter (e.g. /etc/mosquitto/certs, or one under /tmp)"
            )
    taken = [out_dir / n for n in files if (out_dir / n).exists()]
    if taken and not force:
        raise FilesError(f"{', '.join(map(str, taken))}: already exists; --force replaces it")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o750 if who else 0o700)
    if who is not None and (created or not can_enter(out_dir.stat(), who)):
        os.chown(out_dir, who.uid, who.gid)
        os.chmod(out_dir, 0o750)
    paths = []
    for name, (data, private) in files.items():
        path = out_dir / name
        (write_private if private else write_public)(path, data, force=force)
        if who is not None:
            os.chown(path, who.uid, who.gid)
        paths.append(path)
    return paths
