"""[trust]: who may command this cabinet (docs/commands.md).

[trust]
max_skew_s = 300            # clock skew allowed on iat/exp
max_lifetime_s = 604800     # longest exp - iat accepted (bounds the replay memory)

[trust.operators.city-ops]
key = "3d40...64 hex"       # raw Ed25519 public key, or a file (hex text or PEM)
allow = ["ping", "status", "light.override", "light.cancel"]   # or "*"
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from agent.config.schema import MISSING, NAME_RE, F, Section, key_name
from agent.wire.commands import KIND_RE, Operator, Trust

HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _read_key(v: str, base: Path | None) -> bytes | str:
    """Raw 32-byte public key, or a message saying why not."""
    if HEX64.fullmatch(v):
        return bytes.fromhex(v)
    p = Path(v) if Path(v).is_absolute() or base is None else base / v
    try:
        data = p.read_bytes()
    except OSError:
        return "neither 64 hex digits (a raw Ed25519 public key) nor a readable key file"
    text = data.decode(errors="replace").strip()
    if HEX64.fullmatch(text):
        return bytes.fromhex(text)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        return f"{p}: neither 64 hex digits nor a PEM public key"
    if not isinstance(key, Ed25519PublicKey):
        return f"{p}: not an Ed25519 public key"
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def parse_trust(s: Section, base: Path | None) -> Trust:
    skew = s.get("max_skew_s", F("int", default=300, min=0, max=86400, help="seconds of clock skew on iat/exp"))
    life = s.get(
        "max_lifetime_s", F("int", default=7 * 86400, min=60, max=30 * 86400, help="longest command lifetime exp - iat")
    )
    ops = s.table("operators")
    s.finish()
    operators: list[Operator] = []
    seen: dict[bytes, str] = {}
    for name, table in ops.items():
        sec = Section(s.issues, f"trust.operators.{name}", table if isinstance(table, dict) else {})
        if not re.fullmatch(NAME_RE, name) or not isinstance(table, dict):
            s.error(
                f"operators.{key_name(name)}",
                table,
                "[trust.operators.NAME] tables (NAME: letters, digits, _ -)",
                "bad operator entry",
            )
            continue
        key_text = sec.get("key", F("str", help="the operator's Ed25519 public key: 64 hex digits or a file"))
        allow = sec.get("allow", F("any", help='a list of command kinds, or "*"'))
        sec.finish()
        raw: bytes | None = None
        if key_text is not None:
            got = _read_key(key_text, base)
            if isinstance(got, str):
                sec.error("key", key_text, "64 hex digits or a file with the Ed25519 public key", got)
            elif got in seen:
                sec.error(
                    "key",
                    key_text,
                    "a key not listed for another operator",
                    f"the same key as [trust.operators.{seen[got]}]",
                )
            else:
                raw = got
                seen[got] = name
        kinds: frozenset[str] | None = frozenset()
        if allow == "*":
            kinds = None
        elif isinstance(allow, list) and all(isinstance(k, str) and KIND_RE.fullmatch(k) for k in allow):
            kinds = frozenset(allow)
        elif allow is not None:
            sec.error(
                "allow", allow, '"*" or a list of command kinds such as ["ping", "light.override"]', "badly formed"
            )
        if raw is not None:
            operators.append(Operator(name, raw, kinds))
    if skew is None or life is None:
        return Trust(operators)
    return Trust(operators, max_skew_s=skew, max_lifetime_s=life)


__all__ = ["MISSING", "parse_trust"]
