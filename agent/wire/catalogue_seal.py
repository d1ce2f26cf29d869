"""The point catalogue on the wire (docs/batch-format.md §8): sealed like a batch and sent on
the same telemetry topic, and the ingest's signed replies on the ack topic. Pure: no I/O.

* Catalogue message: COSE_Sign1 (agent.wire.cose.sign1), protected text headers exactly
  {"cab": cabinet id, "cat": the catalogue id (SHA-256 of the payload, 32 bytes)}, payload =
  the catalogue's deterministic CBOR (agent.wire.catalogue), external AAD = the telemetry
  topic. A telemetry batch has the headers cab/boot/seq, so neither is ever taken for the other.
* Catalogue reply (ingest -> cabinet, on `<prefix>/cab/<id>/ack`, signed with the ingest key,
  no text headers): msgpack {"cab": id, "cat": catalogue id} = "stored, acknowledged", or
  {"cab": id, "need": catalogue ref (8 bytes)} = "a v2 batch names a catalogue I do not
  hold: send it" (the batch was neither stored nor acknowledged; the cabinet re-sends it).
  A batch ack ({"cab", "seq"}) never holds bytes, so the two are told apart by their keys.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from agent.wire import cose
from agent.wire.catalogue import ID_LEN, REF_LEN, Catalogue, CatalogueError, catalogue_id, decode

REASONS = frozenset({*cose.REASONS, "hash_mismatch", "bad_catalogue"})


class CatalogueRefused(ValueError):
    """A catalogue message was refused; `.reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class OpenedCatalogue(NamedTuple):
    kid: bytes
    cabinet: str
    id: bytes
    body: bytes  # the deterministic CBOR, as signed
    catalogue: Catalogue


class CatalogueReply(NamedTuple):
    cabinet: str
    acked: bytes | None  # catalogue id
    need: bytes | None  # catalogue ref


def seal_catalogue(body: bytes, *, key: Any, kid: bytes, cabinet: str, topic: str) -> bytes:
    """An encoded catalogue -> COSE_Sign1 on `topic` (the cabinet's telemetry topic)."""
    if cose.topic_cabinet(topic, "telemetry") != cose.check_cabinet(cabinet):
        raise ValueError(f"topic {topic!r} is not cabinet {cabinet!r}'s telemetry topic")
    return cose.sign1(body, key=key, kid=kid, headers={"cab": cabinet, "cat": catalogue_id(body)}, aad=topic.encode())


def open_catalogue(data: bytes, *, topic: str, keys: cose.Keys) -> OpenedCatalogue:
    """Verify a catalogue message received on `topic`. Raises only CatalogueRefused: the
    verifier's reasons, "hash_mismatch" (the "cat" header is not the payload's SHA-256),
    "bad_catalogue" (the payload is not a catalogue in its deterministic encoding) and
    "cabinet_mismatch" (the catalogue's cabinet is not the topic's)."""
    try:
        cabinet = cose.topic_cabinet(topic, "telemetry")
    except ValueError as e:
        raise CatalogueRefused("bad_topic", str(e)) from None
    try:
        signed = cose.verify1(data, aad=topic.encode(), keys=keys)
    except cose.VerifyError as e:
        raise CatalogueRefused(e.reason, e.detail) from None
    h = signed.headers
    cat, cab = h.get("cat"), h.get("cab")
    if set(h) != {"cab", "cat"} or not isinstance(cab, str) or not isinstance(cat, bytes) or len(cat) != ID_LEN:
        raise CatalogueRefused("bad_header", f"a catalogue has exactly the headers cab, cat (32 bytes): {sorted(h)}")
    if cab != cabinet:
        raise CatalogueRefused("cabinet_mismatch", f"header cab {cab!r}, topic cabinet {cabinet!r}")
    if catalogue_id(signed.payload) != cat:
        raise CatalogueRefused("hash_mismatch", f"header cat {cat.hex()} is not the SHA-256 of the payload")
    try:
        catalogue = decode(signed.payload)
    except CatalogueError as e:
        raise CatalogueRefused("bad_catalogue", str(e)) from None
    if catalogue.cabinet != cabinet:
        raise CatalogueRefused("cabinet_mismatch", f"catalogue of {catalogue.cabinet!r} on {cabinet!r}'s topic")
    return OpenedCatalogue(signed.kid, cabinet, cat, signed.payload, catalogue)


def seal_reply(
    *, cabinet: str, key: Any, kid: bytes, topic: str, acked: bytes | None = None, need: bytes | None = None
) -> bytes:
    """The ingest's catalogue ack (`acked` = id) or request (`need` = ref) on the ack topic."""
    if cose.topic_cabinet(topic, "ack") != cose.check_cabinet(cabinet):
        raise ValueError(f"topic {topic!r} is not cabinet {cabinet!r}'s ack topic")
    if (acked is None) == (need is None):
        raise ValueError("a catalogue reply either acknowledges (acked) or asks (need)")
    if (acked is not None and len(acked) != ID_LEN) or (need is not None and len(need) != REF_LEN):
        raise ValueError(f"acked is a {ID_LEN}-byte id, need an {REF_LEN}-byte ref")
    payload = msgpack.packb({"cab": cabinet, "cat": acked} if acked is not None else {"cab": cabinet, "need": need})
    return cose.sign1(payload, key=key, kid=kid, headers={}, aad=topic.encode())


def open_reply(data: bytes, *, topic: str, keys: cose.Keys) -> CatalogueReply:
    """Verify a catalogue reply received on the ack topic. Raises only cose.VerifyError."""
    try:
        cabinet = cose.topic_cabinet(topic, "ack")
    except ValueError as e:
        raise cose.VerifyError("bad_topic", str(e)) from None
    signed = cose.verify1(data, aad=topic.encode(), keys=keys)
    if signed.headers:
        raise cose.VerifyError("bad_header", "a catalogue reply has no text headers")
    try:
        doc = msgpack.unpackb(
            signed.payload, raw=False, max_bin_len=ID_LEN, max_ext_len=0, max_map_len=2, max_array_len=0
        )
    except Exception as e:  # noqa: BLE001 - msgpack raises several types; the payload is signed but still checked
        raise cose.VerifyError("bad_payload", f"catalogue reply is not msgpack: {type(e).__name__}") from None
    if not isinstance(doc, dict) or set(doc) not in ({"cab", "cat"}, {"cab", "need"}):
        raise cose.VerifyError("bad_payload", "a catalogue reply is a map of cab and cat, or cab and need")
    if doc["cab"] != cabinet:
        raise cose.VerifyError("cabinet_mismatch", f"reply for {doc['cab']!r} on cabinet {cabinet!r}'s topic")
    acked, need = doc.get("cat"), doc.get("need")
    if acked is not None and (not isinstance(acked, bytes) or len(acked) != ID_LEN):
        raise cose.VerifyError("bad_payload", f"cat must be a {ID_LEN}-byte catalogue id")
    if need is not None and (not isinstance(need, bytes) or len(need) != REF_LEN):
        raise cose.VerifyError("bad_payload", f"need must be an {REF_LEN}-byte catalogue ref")
    return CatalogueReply(cabinet, acked, need)
