"""Small JSON state files in the data dir (overrides, alarms, lighting counters).

Writes are atomic and durable: a temporary file beside the target, fsync, rename,
fsync of the directory — a power cut leaves the old or the new file, never a torn
one. A file that cannot be read or parsed is moved aside (`<name>.bad`) with a log
line naming it and why, and the caller starts from its defaults: state files are
conveniences that must never stop a cabinet from starting.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ota.fsutil import write_atomic

log = logging.getLogger(__name__)

MAX_BYTES = 4 * 2**20


def save(path: Path, obj: Any) -> None:
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    write_atomic(Path(path), data, mode=0o640)


def load(path: Path) -> Any | None:
    """The stored object, or None when there is none or it is unusable (moved aside)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes; at most {MAX_BYTES}")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        bad = path.with_name(path.name + ".bad")
        log.error("state file %s is unusable (%s); moved to %s, starting from defaults", path, e, bad.name)
        try:
            os.replace(path, bad)
        except OSError:
            pass
        return None
