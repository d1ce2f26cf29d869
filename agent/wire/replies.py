"""The cabinet's signed reply to a command (docs/commands.md): COSE_Sign1 by the
cabinet's key, protected header {"cab"}, AAD = the response topic
(`agent.wire.commands.reply_topic`), payload msgpack {cab, cid, ok, reason?, detail?,
result?, t}; `t` is when the cabinet replied, whole epoch seconds (an int, like a
command's iat and exp). `seal_reply` makes one on the cabinet, `open_reply` checks one
on the operator's side. Pure: no I/O, no clock. agent.wire.commands re-exports both and
`Reply` (the command format's one entry point).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.wire import cose


class Reply(NamedTuple):
    cabinet: str
    cid: str | None
    ok: bool
    reason: str | None
    detail: str | None
    result: Any
    t: int | None  # epoch seconds


def seal_reply(
    *,
    cabinet: str,
    cid: str | None,
    ok: bool,
    topic: str,
    key: Ed25519PrivateKey,
    reason: str | None = None,
    detail: str | None = None,
    result: Any = None,
    t: float | None = None,
) -> bytes:
    """The cabinet's signed reply: COSE_Sign1 by the cabinet's key, header {"cab"}, AAD = the
    response topic, payload msgpack {cab, cid, ok, reason?, detail?, result?, t}; `t` (epoch
    seconds) is sent as an int, the whole second it fell in."""
    doc: dict[str, Any] = {"cab": cabinet, "cid": cid, "ok": bool(ok), "t": _seconds(t)}
    if reason is not None:
        doc["reason"] = reason
    if detail:
        doc["detail"] = detail[:512]
    if result is not None:
        doc["result"] = result
    payload = msgpack.packb(doc, use_bin_type=True, default=str)
    return cose.sign1(payload, key=key, kid=cose.key_id(key.public_key()), headers={"cab": cabinet}, aad=topic.encode())


def open_reply(data: bytes, *, topic: str, keys: cose.Keys) -> Reply:
    """Verify a cabinet's reply received on `topic`; raises cose.VerifyError."""
    signed = cose.verify1(data, aad=topic.encode(), keys=keys)
    try:
        doc = msgpack.unpackb(signed.payload, raw=False, max_ext_len=0)
    except Exception as e:  # noqa: BLE001 - any msgpack failure
        raise cose.VerifyError("bad_payload", f"reply is not msgpack: {type(e).__name__}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool) or doc.get("cab") != signed.headers.get("cab"):
        raise cose.VerifyError("bad_payload", "reply must be a map with ok and the signer's cab")
    if f"/cab/{doc['cab']}/" not in topic:
        raise cose.VerifyError("cabinet_mismatch", f"reply from {doc['cab']!r} on {topic!r}")
    return Reply(
        doc["cab"],
        doc.get("cid"),
        doc["ok"],
        doc.get("reason"),
        doc.get("detail"),
        doc.get("result"),
        _seconds(doc.get("t")),
    )


def _seconds(t: Any) -> int | None:
    """Whole epoch seconds (older cabinets sent a float); None when absent or not a finite number."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return None
    return math.floor(t)
