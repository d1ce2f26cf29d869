"""The diagnostics bundle: one tar.gz built in memory for a technician to attach to a report.

    <cabinet>-diag-<UTC time>/
        README.txt        what is inside and what was left out
        config.toml       the agent's config file, every secret-looking value replaced
        status.json       the status snapshot (what `cabinet status --json` prints)
        agent.log         the agent's recent log lines (the console's ring, oldest first)
        doctor.json       the last doctor run from the console, if there was one
        console.json      the console's own figures (sessions, streams) and its users' names and roles

Never in it: the users' password hashes, keys, certificates, the outbox. A value whose key
looks like a secret (password, secret, token, psk, passphrase, private) is written as
"<removed>". The bundle is bounded: the config is cut at MAX_CONFIG bytes."""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from typing import Any

MAX_CONFIG = 256 * 1024
SECRET_KEY = re.compile(
    r"""^(\s*["']?[A-Za-z0-9_.-]*(password|secret|token|psk|passphrase|private)[A-Za-z0-9_.-]*["']?\s*=\s*)(.*)$""",
    re.I,
)
REMOVED = '"<removed>"'


def redact(text: str) -> tuple[str, int]:
    """The config text with every secret-looking value replaced; and how many were."""
    out, n = [], 0
    for line in text.splitlines():
        if m := SECRET_KEY.match(line):
            out.append(m.group(1) + REMOVED)
            n += 1
        else:
            out.append(line)
    return "\n".join(out) + "\n", n


def build(
    *,
    cabinet: str,
    wall: float,
    config_text: str | None,
    status: dict[str, Any] | None,
    log_text: str,
    doctor: dict[str, Any] | None,
    console: dict[str, Any],
) -> tuple[str, bytes]:
    """(file name, the tar.gz bytes)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", cabinet)[:64] or "cabinet"
    root = f"{safe}-diag-{stamp}"
    files: dict[str, bytes] = {}
    notes = [f"Diagnostics of cabinet {cabinet}, made {stamp} by the web console.", ""]
    if config_text is None:
        notes.append("config.toml: the config file could not be read")
    else:
        clean, removed = redact(config_text[:MAX_CONFIG])
        files["config.toml"] = clean.encode()
        notes.append(f"config.toml: the agent's config, {removed} secret-looking value(s) removed")
    files["status.json"] = _json(status if status is not None else {"error": "no status snapshot"})
    files["agent.log"] = log_text.encode()
    notes.append(f"agent.log: the agent's last {log_text.count(chr(10))} log lines kept by the console")
    if doctor is not None:
        files["doctor.json"] = _json(doctor)
        notes.append("doctor.json: the last doctor run from the console")
    files["console.json"] = _json(console)
    notes += ["", "Not included: password hashes, keys, certificates, the outbox's readings."]
    files = {"README.txt": ("\n".join(notes) + "\n").encode(), **files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(data), int(wall), 0o644
            tar.addfile(info, io.BytesIO(data))
    return root + ".tar.gz", buf.getvalue()


def _json(doc: Any) -> bytes:
    return json.dumps(doc, indent=1, default=str).encode() + b"\n"
