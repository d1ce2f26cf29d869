"""The signed OTA status message (docs/ota-internals.md): what a cabinet says about a
deployment on `<prefix>/cab/<id>/ota/status` (retained, QoS 1), and how the operator's
tools check it. Pure: no I/O.

COSE_Sign1 by the cabinet's signing key, protected header {"cab": id}, AAD = the topic,
payload CBOR map {cabinet, deployment, state, seq, percent, reason, version, running,
counter, t}. Receivers keep the highest `seq` per (cabinet, deployment): re-sends after a
reconnect or a reboot change nothing (idempotent).
"""

from __future__ import annotations

from typing import Any

import cbor2

from agent.wire import cose

STATES = (
    "offered",
    "downloading",
    "downloaded",
    "installing",
    "restarting",
    "verifying",
    "success",
    "failure",
    "rolled_back",
    "deferred",
    "rejected",
    "already_installed",
)
TERMINAL = frozenset({"success", "failure", "rolled_back", "rejected", "already_installed"})
FIELDS = ("cabinet", "deployment", "state", "seq", "percent", "reason", "version", "running", "counter", "t")
MAX_STATUS = 4096


def status_topic(prefix: str, cabinet: str) -> str:
    return cose.cabinet_topic(prefix, cabinet, "ota/status")


def seal_status(status: dict[str, Any], *, key: Any, kid: bytes | None = None, topic: str) -> bytes:
    """Sign `status` (the FIELDS; others are dropped) for `topic`."""
    doc = {k: status.get(k) for k in FIELDS}
    check(doc)
    payload = cbor2.dumps(doc, canonical=True)
    kid = kid if kid is not None else cose.key_id(key.public_key())
    return cose.sign1(payload, key=key, kid=kid, headers={"cab": doc["cabinet"]}, aad=topic.encode())


def open_status(data: bytes, *, topic: str, keys: cose.Keys) -> dict[str, Any]:
    """Verify a status received on `topic` -> the status map; raises cose.VerifyError."""
    signed = cose.verify1(data, aad=topic.encode(), keys=keys, max_size=MAX_STATUS)
    try:
        doc = cbor2.loads(signed.payload)
    except Exception as e:  # noqa: BLE001 - any CBOR failure
        raise cose.VerifyError("bad_payload", f"status is not CBOR: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise cose.VerifyError("bad_payload", "status must be a map")
    doc = {k: doc.get(k) for k in FIELDS}
    try:
        check(doc)
    except ValueError as e:
        raise cose.VerifyError("bad_payload", str(e)) from None
    if doc["cabinet"] != signed.headers.get("cab"):
        raise cose.VerifyError("cabinet_mismatch", "payload cabinet differs from the signed header")
    if f"/cab/{doc['cabinet']}/" not in topic:
        raise cose.VerifyError("cabinet_mismatch", f"status from {doc['cabinet']!r} on {topic!r}")
    return doc


def check(doc: dict[str, Any]) -> None:
    """Field types and ranges of a status map; raises ValueError naming the field."""
    cose.check_cabinet(doc.get("cabinet"))
    if doc.get("state") not in STATES:
        raise ValueError(f"state {doc.get('state')!r} is not one of {', '.join(STATES)}")
    dep = doc.get("deployment")
    if not isinstance(dep, str) or not 1 <= len(dep) <= 64:
        raise ValueError("deployment must be a text of 1..64 characters")
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**53:
        raise ValueError("seq must be an integer >= 0")
    pct = doc.get("percent")
    if pct is not None and (not isinstance(pct, int) or isinstance(pct, bool) or not 0 <= pct <= 100):
        raise ValueError("percent must be null or 0..100")
    for k in ("reason", "version", "running"):
        v = doc.get(k)
        if v is not None and (not isinstance(v, str) or len(v) > 512):
            raise ValueError(f"{k} must be null or a text of at most 512 characters")
    c = doc.get("counter")
    if c is not None and (not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < 2**53):
        raise ValueError("counter must be null or an integer >= 0")
    t = doc.get("t")
    if t is not None and not isinstance(t, (int, float)):
        raise ValueError("t must be null or a number")
