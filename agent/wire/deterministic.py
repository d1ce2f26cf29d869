"""Deterministic CBOR for COSE protected headers (RFC 8949 §4.2.1).

The signature of a COSE_Sign1 covers the protected header's bytes, so one header map can
be sent in several encodings that all verify. Signed commands accept only the
deterministic one (docs/commands.md, "The envelope"): a header is its one encoding.
Pure: no I/O.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2

from agent.wire import cose


def deterministic(header: Mapping[Any, Any]) -> bytes:
    """A protected header map in CBOR core deterministic encoding (RFC 8949 §4.2.1): preferred
    (shortest) heads and floats, definite lengths, the keys sorted by the bytewise order of
    their encodings. For this profile's headers (int labels 1 and 4, text labels shorter than
    24 bytes) that is also the length-first order of RFC 7049 canonical CBOR."""
    items = sorted((cbor2.dumps(k, canonical=True), cbor2.dumps(v, canonical=True)) for k, v in header.items())
    n = len(items)
    head = bytes([0xA0 + n]) if n < 24 else b"\xb8" + bytes([n]) if n < 256 else b"\xb9" + n.to_bytes(2, "big")
    return head + b"".join(k + v for k, v in items)


def _decode(data: bytes) -> Any:
    return cbor2.CBORDecoder(io.BytesIO(data), allow_indefinite=False, max_depth=16).decode()


def canonical_header(data: Any) -> bool:
    """False when `data` is a COSE_Sign1 whose protected header is a map but not in its
    deterministic encoding; True otherwise (anything malformed is left to cose.verify1, which
    names what is wrong). The signature covers the header's bytes, so one header may be sent
    in several encodings that all verify: only the deterministic one is accepted."""
    try:
        msg = _decode(bytes(data))
        protected = msg.value[0] if isinstance(msg, cbor2.CBORTag) and msg.tag == cose.TAG_SIGN1 else None
        if not isinstance(protected, bytes):
            return True
        header = _decode(protected)
        if not isinstance(header, dict):
            return True
        return deterministic(header) == protected
    except Exception:  # noqa: BLE001 - cbor2 raises several types on junk; cose.verify1 reports it properly
        return True
