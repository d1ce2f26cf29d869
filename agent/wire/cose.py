"""COSE_Sign1 (RFC 9052 §4.2) with Ed25519 (RFC 9864 alg -19), key ids, the
anti-replay window, and signed telemetry on top (topic layout, sealing a batch
body bound to its topic, the ingest's signed ack): the ONE signing/verifying
module, used by the agent and by the cloud ingest (pure: no I/O, no clock).

Built directly on cbor2 and cryptography (pycose does not work with cbor2 >= 6).
Profile (docs/batch-format.md): tagged COSE_Sign1 (tag 18); protected header
{1: -19, 4: kid, <text labels>: scalar}; unprotected header empty; payload
attached; external AAD given by the caller (the MQTT topic). `verify1` raises
only VerifyError, whose `.reason` is one of the stable codes in REASONS.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import cbor2
import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = -19  # RFC 9864 (the polymorphic EdDSA = -8 is deprecated)
TAG_SIGN1 = 18
LABEL_ALG, LABEL_KID = 1, 4
KID_LEN = 8
MAX_KID = 64
MAX_MESSAGE = 16 * 1024 * 1024 + 65536  # a body is at most 16 MiB (agent.wire.batch.MAX_BODY) plus the envelope
U64_MAX = 2**64 - 1

REASONS = frozenset(
    {
        "too_large",
        "not_cbor",
        "not_cose_sign1",
        "bad_header",
        "unsupported_alg",
        "unknown_kid",
        "bad_signature",
        # added by open_batch / open_ack on top of verify1
        "bad_topic",
        "cabinet_mismatch",
        "bad_payload",
    }
)
_SCALARS = (int, str, bytes, bool, float, type(None))


class VerifyError(ValueError):
    """A message was rejected; `.reason` is a short stable code (see REASONS)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Signed(NamedTuple):
    kid: bytes
    headers: dict[str, Any]  # the text-labelled protected headers
    payload: bytes


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """8 bytes: the first 8 of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw_public(public_key)).digest()[:KID_LEN]


def sig_structure(protected: bytes, aad: bytes, payload: bytes) -> bytes:
    """The bytes Ed25519 signs: CBOR ["Signature1", protected, external_aad, payload]."""
    return cbor2.dumps(["Signature1", protected, aad, payload])


def sign1(payload: bytes, *, key: Ed25519PrivateKey, kid: bytes, headers: Mapping[str, Any], aad: bytes) -> bytes:
    """Sign `payload` -> tagged COSE_Sign1 bytes. `headers` go into the protected
    header under their text labels (values: int, str, bytes, bool, float or None)."""
    if not isinstance(payload, bytes) or not isinstance(aad, bytes):
        raise TypeError("payload and aad must be bytes")
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= MAX_KID:
        raise ValueError(f"kid must be 1..{MAX_KID} bytes")
    prot: dict[Any, Any] = {LABEL_ALG: ALG_ED25519, LABEL_KID: kid}
    for label, value in headers.items():
        if not isinstance(label, str):
            raise ValueError(f"header label {label!r} must be text (integer labels are reserved to COSE)")
        if not isinstance(value, _SCALARS):
            raise ValueError(f"header {label!r}: value {value!r} is not a CBOR scalar")
        prot[label] = value
    protected = cbor2.dumps(prot, canonical=True)
    signature = key.sign(sig_structure(protected, aad, payload))
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, [protected, {}, payload, signature]))


def _decode_all(data: bytes, what: str, reason: str) -> Any:
    """One CBOR item that fills `data` exactly: definite lengths, no duplicate keys."""
    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(fp, allow_indefinite=False, allow_duplicate_keys=False, max_depth=16).decode()
    except Exception as e:  # noqa: BLE001 - cbor2 raises CBORDecodeError and, from tag decoders, others
        raise VerifyError(reason, f"{what}: {type(e).__name__}: {e}") from None
    if fp.tell() != len(data):
        raise VerifyError(reason, f"{what}: {len(data) - fp.tell()} bytes after the CBOR item")
    return obj


def verify1(
    data: bytes, *, aad: bytes, keys: Callable[[bytes], Ed25519PublicKey | None], max_size: int = MAX_MESSAGE
) -> Signed:
    """Check a tagged COSE_Sign1 made by `sign1` -> Signed(kid, headers, payload).
    `keys(kid)` returns the public key for a key id or None. Raises only VerifyError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VerifyError("not_cbor", f"message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise VerifyError("too_large", f"{len(data)} bytes; at most {max_size}")
    msg = _decode_all(data, "message", "not_cbor")
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != TAG_SIGN1:
        raise VerifyError("not_cose_sign1", "expected CBOR tag 18 (COSE_Sign1)")
    parts = msg.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise VerifyError("not_cose_sign1", "expected [protected, unprotected, payload, signature]")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(signature, bytes):
        raise VerifyError("not_cose_sign1", "protected header and signature must be byte strings")
    if not isinstance(payload, bytes):
        raise VerifyError("not_cose_sign1", "payload must be an attached byte string (detached not supported)")
    if not isinstance(unprotected, Mapping):
        raise VerifyError("not_cose_sign1", "unprotected header must be a map")
    if unprotected:
        raise VerifyError("bad_header", "unprotected header must be empty (nothing unsigned is accepted)")
    header = _decode_all(protected, "protected header", "bad_header")
    if not isinstance(header, Mapping):
        raise VerifyError("bad_header", "protected header is not a map")
    if LABEL_ALG not in header:
        raise VerifyError("bad_header", "protected header has no alg (1)")
    alg = header[LABEL_ALG]
    if type(alg) is not int or alg != ALG_ED25519:
        raise VerifyError("unsupported_alg", f"alg {alg!r}; only {ALG_ED25519} (Ed25519) is accepted")
    kid = header.get(LABEL_KID)
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= MAX_KID:
        raise VerifyError("bad_header", f"kid (4) must be a byte string of 1..{MAX_KID} bytes")
    texts: dict[str, Any] = {}
    for label, value in header.items():
        if label in (LABEL_ALG, LABEL_KID) and type(label) is int:
            continue
        if not isinstance(label, str):
            raise VerifyError("bad_header", f"unexpected header label {label!r}")
        if not isinstance(value, _SCALARS):
            raise VerifyError("bad_header", f"header {label!r} is not a scalar")
        texts[label] = value
    public = keys(kid)
    if public is None:
        raise VerifyError("unknown_kid", kid.hex())
    if len(signature) != 64:
        raise VerifyError("bad_signature", f"signature is {len(signature)} bytes, Ed25519 needs 64")
    try:
        public.verify(signature, sig_structure(protected, bytes(aad), payload))
    except InvalidSignature:
        raise VerifyError("bad_signature", f"kid {kid.hex()}") from None
    return Signed(kid, texts, payload)


def payload_of(data: bytes) -> bytes:
    """The payload of a COSE_Sign1 message WITHOUT checking its signature: only for an
    envelope that was verified before it was stored (the ingest's materializer)."""
    msg = _decode_all(bytes(data), "message", "not_cbor")
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != TAG_SIGN1 or not isinstance(msg.value, (list, tuple)):
        raise VerifyError("not_cose_sign1", "expected CBOR tag 18 (COSE_Sign1)")
    if len(msg.value) != 4 or not isinstance(msg.value[2], bytes):
        raise VerifyError("not_cose_sign1", "expected [protected, unprotected, payload, signature]")
    return bytes(msg.value[2])


# ---------------------------------------------------------------------- signed telemetry: types

DEFAULT_PREFIX = "city/v1"
CABINET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # = agent.config.sections.ID_RE
MAX_ACK_SEQS = 65536

Keys = Callable[[bytes], Ed25519PublicKey | None]


class Batch(NamedTuple):
    kid: bytes
    cabinet: str
    boot: int
    seq: int
    body: bytes


class Ack(NamedTuple):
    cabinet: str
    seqs: list[int]


# ---------------------------------------------------------------------- topics


def check_cabinet(cabinet: Any) -> str:
    """A cabinet id is one topic level: letters, digits, '.', '_' or '-', up to 64."""
    if not isinstance(cabinet, str) or not CABINET_RE.fullmatch(cabinet):
        raise ValueError(
            f"cabinet id {cabinet!r}: must be letters, digits, '.', '_' or '-' (first a letter "
            f"or digit), up to 64 characters"
        )
    return cabinet


def check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"topic prefix {prefix!r} must be a non-empty string")
    for level in prefix.split("/"):
        if not level or any(c in level for c in "+#\0") or level != level.strip():
            raise ValueError(
                f"topic prefix {prefix!r}: levels must be non-empty, without '+', '#', NUL or "
                f"surrounding spaces, and there is no leading or trailing '/'"
            )
    return prefix


def cabinet_topic(prefix: str, cabinet: str | None, leaf: str) -> str:
    if cabinet is None:
        raise ValueError("a cabinet id is required")
    return f"{check_prefix(prefix)}/cab/{check_cabinet(cabinet)}/{leaf}"


def telemetry_topic(prefix: str = DEFAULT_PREFIX, cabinet: str | None = None) -> str:
    """f"{prefix}/cab/{cabinet}/telemetry" (call as telemetry_topic("city/v1", "CAB-1")
    or telemetry_topic(cabinet="CAB-1"))."""
    return cabinet_topic(prefix, cabinet, "telemetry")


def ack_topic(prefix: str = DEFAULT_PREFIX, cabinet: str | None = None) -> str:
    return cabinet_topic(prefix, cabinet, "ack")


def state_topic(prefix: str = DEFAULT_PREFIX, cabinet: str | None = None) -> str:
    return cabinet_topic(prefix, cabinet, "state")


def topic_cabinet(topic: str, leaf: str) -> str:
    """The cabinet id of "<prefix>/cab/<id>/<leaf>"; ValueError if the topic is not one."""
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) < 4 or parts[-1] != leaf or parts[-3] != "cab":
        raise ValueError(f"topic {topic!r} is not <prefix>/cab/<id>/{leaf}")
    check_prefix("/".join(parts[:-3]))
    return check_cabinet(parts[-2])


def _u64(x: Any, what: str) -> int:
    if type(x) is not int or not 0 <= x <= U64_MAX:
        raise ValueError(f"{what} must be an unsigned 64-bit int, got {x!r}")
    return x


def _topic_for(topic: str, leaf: str) -> tuple[str, bytes]:
    if isinstance(topic, str):
        return _parse_topic(topic, leaf)
    raise VerifyError("bad_topic", f"topic must be a string, got {type(topic).__name__}")


@functools.lru_cache(maxsize=8192)  # an ingest sees the same few thousand topics over and over
def _parse_topic(topic: str, leaf: str) -> tuple[str, bytes]:
    try:
        return topic_cabinet(topic, leaf), topic.encode()
    except ValueError as e:
        raise VerifyError("bad_topic", str(e)) from None


# ---------------------------------------------------------------------- telemetry


def seal_batch(
    body: bytes, *, key: Ed25519PrivateKey, kid: bytes, cabinet: str, boot: int, seq: int, topic: str
) -> bytes:
    """A batch body -> COSE_Sign1 with headers {"cab", "boot", "seq"}, external AAD = topic."""
    if topic_cabinet(topic, "telemetry") != check_cabinet(cabinet):
        raise ValueError(f"topic {topic!r} is not cabinet {cabinet!r}'s telemetry topic")
    headers = {"cab": cabinet, "boot": _u64(boot, "boot"), "seq": _u64(seq, "seq")}
    return sign1(body, key=key, kid=kid, headers=headers, aad=topic.encode())


def open_batch(data: bytes, *, topic: str, keys: Keys) -> Batch:
    """Verify a sealed batch received on `topic` -> Batch. Raises only VerifyError.
    `keys` must only return keys registered to the topic's cabinet (bind it per
    cabinet with topic_cabinet); the header's cabinet must match the topic's."""
    cabinet, aad = _topic_for(topic, "telemetry")
    signed = verify1(data, aad=aad, keys=keys)
    h = signed.headers
    cab = h.get("cab")
    if set(h) != {"cab", "boot", "seq"} or not isinstance(cab, str):
        raise VerifyError("bad_header", f"telemetry needs exactly the headers cab, boot, seq; got {sorted(h)}")
    boot, seq = _u64_header(h["boot"], "boot"), _u64_header(h["seq"], "seq")
    if cab != cabinet:
        raise VerifyError("cabinet_mismatch", f"header cab {cab!r}, topic cabinet {cabinet!r}")
    return Batch(signed.kid, cab, boot, seq, signed.payload)


def _u64_header(v: Any, name: str) -> int:
    if type(v) is not int or not 0 <= v <= U64_MAX:
        raise VerifyError("bad_header", f"{name} must be an unsigned 64-bit int")
    return v


# ---------------------------------------------------------------------- acknowledgements


def seal_ack(seqs: Sequence[int], *, key: Ed25519PrivateKey, kid: bytes, cabinet: str, topic: str) -> bytes:
    """The ingest's signed ack: payload msgpack {"cab": cabinet, "seq": [seq, ...]}, AAD = ack topic."""
    if topic_cabinet(topic, "ack") != check_cabinet(cabinet):
        raise ValueError(f"topic {topic!r} is not cabinet {cabinet!r}'s ack topic")
    if not 1 <= len(seqs) <= MAX_ACK_SEQS:
        raise ValueError(f"an ack carries 1..{MAX_ACK_SEQS} sequence numbers, got {len(seqs)}")
    payload = msgpack.packb({"cab": cabinet, "seq": [_u64(s, "seq") for s in seqs]})
    return sign1(payload, key=key, kid=kid, headers={}, aad=topic.encode())


def open_ack(data: bytes, *, topic: str, keys: Keys) -> Ack:
    """Verify an ack received on `topic` -> Ack. Raises only VerifyError."""
    cabinet, aad = _topic_for(topic, "ack")
    signed = verify1(data, aad=aad, keys=keys)
    if signed.headers:
        raise VerifyError("bad_header", f"an ack has no text headers; got {sorted(signed.headers)}")
    try:
        doc = msgpack.unpackb(
            signed.payload,
            raw=False,
            max_bin_len=0,
            max_ext_len=0,
            max_map_len=2,
            max_array_len=MAX_ACK_SEQS,
            max_str_len=256,
        )
    except Exception as e:  # noqa: BLE001 - msgpack raises several types; the payload is signed but still checked
        raise VerifyError("bad_payload", f"ack payload is not msgpack: {type(e).__name__}") from None
    if not isinstance(doc, dict) or set(doc) != {"cab", "seq"}:
        raise VerifyError("bad_payload", "ack payload must be a map with exactly cab and seq")
    cab, seqs = doc["cab"], doc["seq"]
    if not isinstance(cab, str) or not isinstance(seqs, list) or not seqs:
        raise VerifyError("bad_payload", "ack cab must be a string and seq a non-empty array")
    if any(type(s) is not int or not 0 <= s <= U64_MAX for s in seqs):
        raise VerifyError("bad_payload", "ack seq entries must be unsigned 64-bit ints")
    if cab != cabinet:
        raise VerifyError("cabinet_mismatch", f"ack for {cab!r} on cabinet {cabinet!r}'s topic")
    return Ack(cab, seqs)


class ReplayWindow:
    """Anti-replay for one sender (IPsec/DTLS style): the highest accepted sequence
    number `hwm` and a bitmap of the last `size` numbers (bit i = hwm - i accepted).
    A fresh window has hwm 0 and an empty bitmap, so every seq >= 0 is new."""

    __slots__ = ("bitmap", "hwm", "size")

    def __init__(self, size: int = 1024) -> None:
        if type(size) is not int or not 1 <= size <= 1 << 20:
            raise ValueError(f"window size must be an int in 1..{1 << 20}, got {size!r}")
        self.size, self.hwm, self.bitmap = size, 0, 0

    @classmethod
    def from_state(cls, hwm: int, bitmap: int, size: int = 1024) -> ReplayWindow:
        """Rebuild a window from `state()` (e.g. read back from disk); validates it."""
        w = cls(size)
        if type(hwm) is not int or not 0 <= hwm <= U64_MAX:
            raise ValueError(f"hwm must be an unsigned 64-bit int, got {hwm!r}")
        if type(bitmap) is not int or not 0 <= bitmap < 1 << min(size, hwm + 1):
            raise ValueError(f"bitmap must be an int in 0..2^{min(size, hwm + 1)}-1 (window {size}, hwm {hwm})")
        w.hwm, w.bitmap = hwm, bitmap
        return w

    def state(self) -> tuple[int, int]:
        return self.hwm, self.bitmap

    def check(self, seq: int) -> str:
        """'new', 'duplicate' or 'too_old' (behind the window: cannot be told apart)."""
        if type(seq) is not int or not 0 <= seq <= U64_MAX:
            raise ValueError(f"seq must be an unsigned 64-bit int, got {seq!r}")
        if seq > self.hwm:
            return "new"
        back = self.hwm - seq
        if back >= self.size:
            return "too_old"
        return "duplicate" if self.bitmap >> back & 1 else "new"

    def accept(self, seq: int) -> str:
        """Mark `seq` as received if it is new; returns what `check` said before."""
        verdict = self.check(seq)
        if verdict == "new":
            if seq > self.hwm:
                shift = seq - self.hwm
                self.bitmap = (self.bitmap << shift | 1) & ((1 << self.size) - 1) if shift < self.size else 1
                self.hwm = seq
            else:
                self.bitmap |= 1 << (self.hwm - seq)
        return verdict
