"""The slot state document <root>/state/ota.json (docs/ota-internals.md): its keys, the
keys of a pending trial, the empty state, and `validate_state`, which names the first
problem of a document. Pure; ota.slots reads and writes the file. Stdlib only.
"""

from __future__ import annotations

import re
from typing import Any

SLOT_RE = re.compile(r"^[0-9]+-[A-Za-z0-9][A-Za-z0-9._+-]*$")
STATE_KEYS = ("format", "current", "last_good", "previous_good", "high_water", "pending", "last_outcome")
PENDING_KEYS = ("slot", "from", "counter", "version", "deployment", "attempts", "max_attempts", "trial_s", "watchdog_s")


def empty_state() -> dict[str, Any]:
    """The state of a root nothing was installed in."""
    return {
        "format": 1,
        "current": None,
        "last_good": None,
        "previous_good": None,
        "high_water": 0,
        "pending": None,
        "last_outcome": None,
    }


def is_slot_name(v: Any, nullable: bool = True) -> bool:
    """A release slot name (`<counter>-<version>`, never a .tmp one); None too when nullable."""
    return (v is None and nullable) or (isinstance(v, str) and bool(SLOT_RE.match(v)) and not v.endswith(".tmp"))


def is_count(v: Any) -> bool:
    """An int >= 0 (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def validate_state(obj: Any) -> None:
    """Raise ValueError naming the first problem of an ota.json document."""
    if not isinstance(obj, dict) or obj.get("format") != 1:
        raise ValueError("not a format 1 object")
    if set(obj) != set(STATE_KEYS):
        raise ValueError(f"keys must be {sorted(STATE_KEYS)}")
    for k in ("current", "last_good", "previous_good"):
        if not is_slot_name(obj[k]):
            raise ValueError(f"{k}: not a slot name: {obj[k]!r}")
    if not is_count(obj["high_water"]):
        raise ValueError("high_water: not an int >= 0")
    p = obj["pending"]
    if p is not None:
        if not isinstance(p, dict) or set(p) != set(PENDING_KEYS):
            raise ValueError(f"pending: keys must be {sorted(PENDING_KEYS)}")
        if not is_slot_name(p["slot"], False) or not is_slot_name(p["from"]):
            raise ValueError("pending: bad slot/from")
        if not (is_count(p["counter"]) and is_count(p["attempts"]) and is_count(p["max_attempts"])):
            raise ValueError("pending: counter/attempts/max_attempts not ints >= 0")
        if not isinstance(p["version"], str) or not isinstance(p["deployment"], str):
            raise ValueError("pending: version/deployment not strings")
        for k in ("trial_s", "watchdog_s"):
            v = p[k]
            if not (v is None and k == "watchdog_s") and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            ):
                raise ValueError(f"pending: {k} not a positive number")
    o = obj["last_outcome"]
    if o is not None and (not isinstance(o, dict) or o.get("result") not in ("committed", "rolled_back", "failure")):
        raise ValueError("last_outcome: bad result")
