"""`cabinet doctor`, the host: is the clock trusted (NTP, else the agent's GPS), and is the
outbox healthy (its file, schema, how far behind the uplink is, how full; tools/doctor/checks.py
has the Result and the rules every check follows)."""

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.outbox.schema import APP_ID, MAGIC, SCHEMA_VERSION
from tools.doctor.checks import FAIL, PASS, WARN, Result

OUTBOX_WARN_AGE_S = 6 * 3600.0  # oldest unsent reading older than this: the uplink is behind
OUTBOX_FAIL_AGE_S = 3 * 86400.0  # ... this much behind: the cloud misses days
OUTBOX_WARN_FILL = 0.8  # stored bytes / max bytes

# ------------------------------------------------------------------------------------- clock


async def check_clock(
    status: Mapping[str, Any] | None,
    timedatectl: Sequence[str] = ("timedatectl", "show", "-p", "NTPSynchronized", "--value"),
    timeout: float = 5.0,
) -> Result:
    """NTP (timedatectl) first, else the running agent's GPS time quality, else unknown."""
    ntp, why = None, ""
    try:
        proc = await asyncio.create_subprocess_exec(
            *timedatectl, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            out, err, why = b"", b"", "timedatectl timed out"
        text = out.decode(errors="replace").strip().lower()
        if proc.returncode == 0 and text in ("yes", "no"):
            ntp = text == "yes"
        elif not why:
            why = "timedatectl: " + ((err or out).decode(errors="replace").strip().splitlines() or ["no answer"])[0]
    except OSError as e:
        why = f"timedatectl not available ({e.strerror or e})"
    if ntp:
        return Result("clock", PASS, "NTP synchronized (timedatectl)")
    gps = (status or {}).get("gps") or {}
    quality = gps.get("time_quality")
    if quality == "gps":
        return Result(
            "clock",
            PASS,
            f"GPS time valid on {gps.get('port')} (from the running agent)"
            + ("; NTP not synchronized" if ntp is False else ""),
        )
    seen = "NTP not synchronized" if ntp is False else why
    gps_text = (
        f"GPS time quality {quality!r}"
        if quality
        else ("no GPS in the agent's status" if status else "no agent running to ask for GPS time")
    )
    hint = (
        "let the cabinet reach its NTP servers (`timedatectl timesync-status`), or give the GPS antenna a view "
        "of the sky; until then lighting runs by the photocell and timestamps may be wrong"
    )
    if ntp is False:
        return Result("clock", FAIL, f"{seen}; {gps_text}", hint)
    return Result("clock", WARN, f"unknown: {seen}; {gps_text}", hint)


# ------------------------------------------------------------------------------------- storage


def check_outbox(
    path: Path,
    now: float,
    *,
    max_bytes: float | None = None,
    warn_age_s: float = OUTBOX_WARN_AGE_S,
    fail_age_s: float = OUTBOX_FAIL_AGE_S,
    warn_fill: float = OUTBOX_WARN_FILL,
) -> Result:
    """Open the outbox read-only: header, schema version, rows pending, oldest unsent age, evictions."""
    path = Path(path)
    keep = "move the file aside (never delete readings without need) and restart the agent; it starts a new outbox"
    if not path.exists():
        return Result("outbox", WARN, f"{path}: no outbox yet", "the agent creates it on its first run")
    with open(path, "rb") as f:
        head = f.read(100)
    if head and (len(head) < 100 or not head.startswith(MAGIC)):
        return Result("outbox", FAIL, f"{path}: not an SQLite database ({path.stat().st_size} bytes)", keep)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APP_ID:
                return Result(
                    "outbox", FAIL, f"{path}: an SQLite database of something else (application_id {app_id:#x})", keep
                )
            if version != SCHEMA_VERSION:
                return Result(
                    "outbox",
                    FAIL,
                    f"{path}: schema version {version}, this agent writes {SCHEMA_VERSION}",
                    "a newer agent wrote it: install that version again" if version > SCHEMA_VERSION else keep,
                )
            pending = con.execute("SELECT count(*) FROM rows WHERE batch IS NULL").fetchone()[0]
            batches = con.execute("SELECT count(*) FROM batches").fetchone()[0]
            oldest = con.execute("SELECT min(t) FROM rows").fetchone()[0]
            meta = dict(con.execute("SELECT key, value FROM meta"))
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return Result("outbox", FAIL, f"{path}: unreadable: {e}", keep)
    evicted = sum(v for k, v in meta.items() if k.startswith("evicted_rows_"))
    size = path.stat().st_size + sum(p.stat().st_size for p in (path.with_name(path.name + "-wal"),) if p.exists())
    age = None if oldest is None else max(0.0, now - oldest)
    text = (
        f"{path}: schema {version}, {pending} readings pending, {batches} sealed batches unacknowledged, "
        f"{size / 2**20:.1f} MiB"
        + (f", oldest unsent {age / 3600:.1f} h old" if age is not None else "")
        + (f", {evicted} readings evicted" if evicted else "")
    )
    uplink_hint = "the uplink is not delivering: see the broker check and `cabinet status` (uplink line)"
    if age is not None and age > fail_age_s:
        return Result("outbox", FAIL, text, uplink_hint)
    if age is not None and age > warn_age_s:
        return Result("outbox", WARN, text, uplink_hint)
    if max_bytes and size > warn_fill * max_bytes:
        return Result(
            "outbox",
            WARN,
            text + f" of {max_bytes / 2**20:.0f} MiB",
            "nearly full: oldest telemetry gets evicted next; restore the uplink or raise [outbox] max_mb",
        )
    if evicted:
        return Result(
            "outbox",
            WARN,
            text,
            "readings were lost to the size cap while the uplink was down; consider a larger [outbox] max_mb",
        )
    return Result("outbox", PASS, text)
