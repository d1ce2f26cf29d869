"""COSE_Sign1 / Ed25519, the telemetry envelope and ack, topics, the replay window,
and the published test vectors (tests/vectors/batch_vectors.json = docs/batch-format.md).

`python tests/test_cose.py --write-vectors` regenerates the vector file from the
fixed inputs below (only after a deliberate format change; say so in the doc).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cbor2
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import decode_body, encode_body
from agent.wire.cose import ReplayWindow, VerifyError

VECTORS = Path(__file__).parent / "vectors" / "batch_vectors.json"
CAB_SEED = b"cabinet-agent batch vector: cabinet key"
INGEST_SEED = b"cabinet-agent batch vector: ingest key"


def key_from(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())


KEY = key_from(CAB_SEED)
KID = cose.key_id(KEY.public_key())
OTHER = key_from(b"some other key")
TOPIC = "city/v1/cab/CAB-0042/telemetry"
ACK_TOPIC = "city/v1/cab/CAB-0042/ack"


def keys(kid: bytes):
    return KEY.public_key() if kid == KID else None


def sealed(body: bytes = b"body", seq: int = 5, boot: int = 1) -> bytes:
    return cose.seal_batch(body, key=KEY, kid=KID, cabinet="CAB-0042", boot=boot, seq=seq, topic=TOPIC)


def reason(data, aad=TOPIC.encode(), ks=keys, **kw) -> str:  # noqa: B008 - bytes of a constant, made once
    with pytest.raises(VerifyError) as e:
        cose.verify1(data, aad=aad, keys=ks, **kw)
    return e.value.reason


def raw_sign1(protected: dict | bytes, payload=b"p", unprotected=None, sig=None, aad=b"a", tag=18) -> bytes:
    """A hand-built COSE_Sign1 (to make what sign1 refuses to make)."""
    prot = protected if isinstance(protected, bytes) else cbor2.dumps(protected)
    if sig is None:
        sig = KEY.sign(cose.sig_structure(prot, aad, payload if payload is not None else b""))
    arr = [prot, unprotected if unprotected is not None else {}, payload, sig]
    return cbor2.dumps(cbor2.CBORTag(tag, arr) if tag is not None else arr)


# ---------------------------------------------------------------------- sign1 / verify1


def test_key_id_is_sha256_prefix_of_raw_key():
    raw = cose.raw_public(KEY.public_key())
    assert len(raw) == 32 and hashlib.sha256(raw).digest()[:8] == KID
    assert cose.key_id(OTHER.public_key()) != KID


def test_sign_verify_round_trip_and_layout():
    msg = cose.sign1(b"hello", key=KEY, kid=KID, headers={"cab": "X", "n": 3}, aad=b"topic")
    signed = cose.verify1(msg, aad=b"topic", keys=keys)
    assert signed == cose.Signed(KID, {"cab": "X", "n": 3}, b"hello")
    tag = cbor2.loads(msg)
    assert tag.tag == 18 and len(tag.value) == 4
    prot, unprot, payload, sig = tag.value
    assert dict(cbor2.loads(prot)) == {1: -19, 4: KID, "cab": "X", "n": 3} and not unprot and payload == b"hello"
    # the signature is plain Ed25519 over the documented Sig_structure
    KEY.public_key().verify(sig, cbor2.dumps(["Signature1", prot, b"topic", b"hello"]))


@pytest.mark.parametrize("aad", [b"topic2", b"", b"topi"])
def test_other_aad_fails(aad):
    msg = cose.sign1(b"hello", key=KEY, kid=KID, headers={}, aad=b"topic")
    assert reason(msg, aad=aad) == "bad_signature"


def test_unknown_kid_and_wrong_key():
    msg = cose.sign1(b"x", key=KEY, kid=KID, headers={}, aad=b"a")
    assert reason(msg, aad=b"a", ks=lambda kid: None) == "unknown_kid"
    assert reason(msg, aad=b"a", ks=lambda kid: OTHER.public_key()) == "bad_signature"


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "not_cbor"),
        (b"\xff", "not_cbor"),
        (b"\x1b\x00", "not_cbor"),  # truncated
        (cbor2.dumps(1) + b"\x00", "not_cbor"),  # trailing bytes
        (b"\xd2\x9f\xff", "not_cbor"),  # indefinite-length array
        (cbor2.dumps([b"", {}, b"", b""]), "not_cose_sign1"),  # untagged
        (cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b""])), "not_cose_sign1"),
        (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""])), "not_cose_sign1"),
        (cbor2.dumps(cbor2.CBORTag(18, "text")), "not_cose_sign1"),
        (cbor2.dumps(cbor2.CBORTag(18, [{}, {}, b"", b""])), "not_cose_sign1"),
        (cbor2.dumps(cbor2.CBORTag(18, [b"", [], b"", b""])), "not_cose_sign1"),
        (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, "text", b""])), "not_cose_sign1"),
    ],
)
def test_structural_rejections(data, why):
    assert reason(data) == why


def test_header_rejections():
    assert reason(raw_sign1({1: -19, 4: KID}, payload=None), aad=b"a") == "not_cose_sign1"  # detached
    assert reason(raw_sign1({1: -19, 4: KID}, unprotected={4: KID}), aad=b"a") == "bad_header"
    assert reason(raw_sign1({4: KID}), aad=b"a") == "bad_header"  # no alg
    assert reason(raw_sign1({1: -8, 4: KID}), aad=b"a") == "unsupported_alg"  # old EdDSA
    assert reason(raw_sign1({1: "EdDSA", 4: KID}), aad=b"a") == "unsupported_alg"
    assert reason(raw_sign1({1: -19}), aad=b"a") == "bad_header"  # no kid
    assert reason(raw_sign1({1: -19, 4: "kid"}), aad=b"a") == "bad_header"
    assert reason(raw_sign1({1: -19, 4: b""}), aad=b"a") == "bad_header"
    assert reason(raw_sign1({1: -19, 4: KID, 2: [1]}), aad=b"a") == "bad_header"  # crit etc.
    assert reason(raw_sign1({1: -19, 4: KID, "x": [1, 2]}), aad=b"a") == "bad_header"  # not a scalar
    assert reason(raw_sign1(b"\x80"), aad=b"a") == "bad_header"  # not a map
    assert reason(raw_sign1(b"\xa1\x01"), aad=b"a") == "bad_header"  # truncated map
    dup = b"\xa3\x01\x32\x04\x48" + KID + b"\x01\x32"  # alg twice
    assert reason(raw_sign1(dup), aad=b"a") == "bad_header"
    assert reason(raw_sign1({1: -19, 4: KID}, sig=b"\x00" * 63), aad=b"a") == "bad_signature"
    assert cose.verify1(raw_sign1({1: -19, 4: KID}), aad=b"a", keys=keys).payload == b"p"


def test_too_large_is_checked_first():
    msg = sealed(b"x" * 1000)
    assert reason(msg, max_size=len(msg) - 1) == "too_large"
    assert cose.verify1(msg, aad=TOPIC.encode(), keys=keys, max_size=len(msg)).payload == b"x" * 1000
    assert reason(b"\x00" * (cose.MAX_MESSAGE + 1)) == "too_large"


def test_sign1_refuses_what_verify_would_reject():
    with pytest.raises(ValueError):
        cose.sign1(b"x", key=KEY, kid=KID, headers={1: 2}, aad=b"")  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        cose.sign1(b"x", key=KEY, kid=KID, headers={"x": [1]}, aad=b"")
    with pytest.raises(ValueError):
        cose.sign1(b"x", key=KEY, kid=b"", headers={}, aad=b"")
    with pytest.raises(TypeError):
        cose.sign1("x", key=KEY, kid=KID, headers={}, aad=b"")  # type: ignore[arg-type]


def test_every_single_bit_flip_is_rejected():
    msg = sealed(encode_body([Reading("a.b", 1767225600.0, 230.07, Quality.GOOD)]), seq=77)
    ok = cose.open_batch(msg, topic=TOPIC, keys=keys)
    assert ok.seq == 77
    for i in range(len(msg)):
        for bit in range(8):
            bad = bytearray(msg)
            bad[i] ^= 1 << bit
            with pytest.raises(VerifyError):
                cose.open_batch(bytes(bad), topic=TOPIC, keys=keys)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_verify_only_raises_verify_error_on_arbitrary_bytes(data):
    with pytest.raises(VerifyError):
        cose.verify1(data, aad=b"t", keys=keys)


SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
    st.binary(max_size=9),
    st.floats(allow_nan=True),
)
CBOR_VALUES = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.integers(-30, 30), st.text(max_size=3)), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.tuples(CBOR_VALUES, CBOR_VALUES, CBOR_VALUES, CBOR_VALUES), st.booleans(), st.data())
def test_verify_only_raises_verify_error_on_structured_junk(parts, wrap_protected, data):
    parts = list(parts)
    if wrap_protected:  # a CBOR map inside the protected bstr, so header checks are exercised too
        hdr = data.draw(st.dictionaries(st.sampled_from([1, 4, 2, "cab", "seq"]), CBOR_VALUES, max_size=4))
        parts[0] = cbor2.dumps(hdr)
    msg = cbor2.dumps(cbor2.CBORTag(18, parts))
    with pytest.raises(VerifyError):
        cose.verify1(msg, aad=b"t", keys=lambda kid: KEY.public_key())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_edits_of_a_valid_envelope_are_rejected(data):
    original = sealed(b"payload bytes", seq=9)
    msg = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        i = data.draw(st.integers(0, len(msg) - 1))
        if op == "set":

            def differs(b: int, old: int = msg[i]) -> bool:
                return b != old

            b = data.draw(st.integers(0, 255).filter(differs))
            msg[i] = b
        elif op == "insert":
            msg.insert(i, data.draw(st.integers(0, 255)))
        else:
            del msg[i]
    assume(bytes(msg) != original)  # an insert and a delete can cancel out
    with pytest.raises(VerifyError):
        cose.open_batch(bytes(msg), topic=TOPIC, keys=keys)


# ---------------------------------------------------------------------- topics


def test_topics():
    assert cose.telemetry_topic("city/v1", "CAB-0042") == TOPIC
    assert cose.telemetry_topic(cabinet="CAB-0042") == TOPIC
    assert cose.ack_topic("city/v1", "CAB-0042") == ACK_TOPIC
    assert cose.state_topic(cabinet="C1") == "city/v1/cab/C1/state"
    assert cose.telemetry_topic("a/b/c", "x.y_z-1") == "a/b/c/cab/x.y_z-1/telemetry"
    assert cose.topic_cabinet(TOPIC, "telemetry") == "CAB-0042"
    assert cose.topic_cabinet(ACK_TOPIC, "ack") == "CAB-0042"


@pytest.mark.parametrize("cab", ["", "a/b", "+", "#", "a+", "a#", "-x", "a b", "x" * 65, None, 5, "ä"])
def test_bad_cabinet_ids(cab):
    with pytest.raises(ValueError, match="cabinet id"):
        cose.telemetry_topic("city/v1", cab)


@pytest.mark.parametrize("prefix", ["", "/city", "city/", "city//v1", "city/+", "#", " city"])
def test_bad_prefixes(prefix):
    with pytest.raises(ValueError, match="prefix"):
        cose.telemetry_topic(prefix, "C1")


@pytest.mark.parametrize(
    "topic",
    [
        "city/v1/cab/C1/ack",
        "cab/C1/telemetry",
        "city/v1/cabs/C1/telemetry",
        "city/v1/cab/+/telemetry",
        "city/v1/cab/C1/telemetry/x",
        "city//cab/C1/telemetry",
    ],
)
def test_open_batch_bad_topic(topic):
    with pytest.raises(VerifyError) as e:
        cose.open_batch(sealed(), topic=topic, keys=keys)
    assert e.value.reason == "bad_topic"


# ---------------------------------------------------------------------- sealed batches and acks


def test_seal_open_batch():
    msg = sealed(b"\x02body", seq=2**64 - 1, boot=0)
    assert cose.open_batch(msg, topic=TOPIC, keys=keys) == cose.Batch(KID, "CAB-0042", 0, 2**64 - 1, b"\x02body")


def test_replay_on_another_cabinets_topic_fails():
    with pytest.raises(VerifyError) as e:
        cose.open_batch(sealed(), topic="city/v1/cab/CAB-0043/telemetry", keys=keys)
    assert e.value.reason == "bad_signature"
    with pytest.raises(VerifyError) as e:
        cose.open_batch(sealed(), topic="city/v2/cab/CAB-0042/telemetry", keys=keys)
    assert e.value.reason == "bad_signature"


def test_cabinet_mismatch_between_header_and_topic():
    msg = cose.sign1(b"b", key=KEY, kid=KID, headers={"cab": "CAB-0043", "boot": 1, "seq": 1}, aad=TOPIC.encode())
    with pytest.raises(VerifyError) as e:
        cose.open_batch(msg, topic=TOPIC, keys=keys)
    assert e.value.reason == "cabinet_mismatch"


@pytest.mark.parametrize(
    "headers",
    [
        {"cab": "CAB-0042", "boot": 1},
        {"cab": "CAB-0042", "boot": 1, "seq": -1},
        {"cab": "CAB-0042", "boot": 1, "seq": 2**64},
        {"cab": "CAB-0042", "boot": True, "seq": 1},
        {"cab": "CAB-0042", "boot": 1, "seq": 1.0},
        {"cab": 42, "boot": 1, "seq": 1},
        {"cab": "CAB-0042", "boot": 1, "seq": 1, "extra": 1},
    ],
)
def test_open_batch_bad_headers(headers):
    msg = cose.sign1(b"b", key=KEY, kid=KID, headers=headers, aad=TOPIC.encode())
    with pytest.raises(VerifyError) as e:
        cose.open_batch(msg, topic=TOPIC, keys=keys)
    assert e.value.reason == "bad_header"


@pytest.mark.parametrize(
    "kw", [{"seq": -1}, {"seq": 2**64}, {"boot": True}, {"boot": 1.5}, {"cabinet": "CAB-0043"}, {"topic": ACK_TOPIC}]
)
def test_seal_batch_validates(kw):
    args = {"key": KEY, "kid": KID, "cabinet": "CAB-0042", "boot": 1, "seq": 1, "topic": TOPIC, **kw}
    with pytest.raises(ValueError):
        cose.seal_batch(b"b", **args)


def test_ack_round_trip_and_rejections():
    ing = key_from(INGEST_SEED)
    ikid = cose.key_id(ing.public_key())
    ikeys = {ikid: ing.public_key()}.get
    msg = cose.seal_ack([3, 1, 2**64 - 1], key=ing, kid=ikid, cabinet="CAB-0042", topic=ACK_TOPIC)
    assert cose.open_ack(msg, topic=ACK_TOPIC, keys=ikeys) == cose.Ack("CAB-0042", [3, 1, 2**64 - 1])
    for topic, why in (("city/v1/cab/CAB-0043/ack", "bad_signature"), (TOPIC, "bad_topic")):
        with pytest.raises(VerifyError) as e:
            cose.open_ack(msg, topic=topic, keys=ikeys)
        assert e.value.reason == why
    with pytest.raises(VerifyError) as e:  # a cabinet key is not an ingest key
        cose.open_ack(msg, topic=ACK_TOPIC, keys=keys)
    assert e.value.reason == "unknown_kid"

    def forged(payload, headers=None):
        return cose.sign1(
            msgpack.packb(payload) if not isinstance(payload, bytes) else payload,
            key=ing,
            kid=ikid,
            headers=headers or {},
            aad=ACK_TOPIC.encode(),
        )

    cases = [
        ({"cab": "CAB-0043", "seq": [1]}, "cabinet_mismatch"),
        ({"cab": "CAB-0042", "seq": []}, "bad_payload"),
        ({"cab": "CAB-0042", "seq": [-1]}, "bad_payload"),
        ({"cab": "CAB-0042"}, "bad_payload"),
        ({"cab": "CAB-0042", "seq": [True]}, "bad_payload"),
        (b"\xc1", "bad_payload"),
        ([1], "bad_payload"),
        ({"cab": "CAB-0042", "seq": [1], "x": 1}, "bad_payload"),
    ]
    for payload, why in cases:
        with pytest.raises(VerifyError) as e:
            cose.open_ack(forged(payload), topic=ACK_TOPIC, keys=ikeys)
        assert e.value.reason == why, payload
    with pytest.raises(VerifyError) as e:
        cose.open_ack(forged({"cab": "CAB-0042", "seq": [1]}, {"seq": 1}), topic=ACK_TOPIC, keys=ikeys)
    assert e.value.reason == "bad_header"
    with pytest.raises(ValueError):
        cose.seal_ack([], key=ing, kid=ikid, cabinet="CAB-0042", topic=ACK_TOPIC)
    with pytest.raises(ValueError):
        cose.seal_ack([2**64], key=ing, kid=ikid, cabinet="CAB-0042", topic=ACK_TOPIC)


# ---------------------------------------------------------------------- replay window


class ModelWindow:
    """The specification as a set: accepted numbers, judged against the highest one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()

    def check(self, seq: int) -> str:
        hwm = max(self.seen, default=0)
        if seq > hwm:
            return "new"
        if hwm - seq >= self.size:
            return "too_old"
        return "duplicate" if seq in self.seen else "new"

    def accept(self, seq: int) -> str:
        v = self.check(seq)
        if v == "new":
            self.seen.add(seq)
        return v


SEQ_OPS = st.lists(
    st.tuples(
        st.sampled_from(["check", "accept", "persist"]), st.one_of(st.integers(0, 80), st.integers(0, 2**64 - 1))
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 40), SEQ_OPS)
def test_replay_window_matches_set_model(size, ops):
    w, m = ReplayWindow(size), ModelWindow(size)
    for op, seq in ops:
        if op == "persist":
            w = ReplayWindow.from_state(*w.state(), size)
            continue
        assert getattr(w, op)(seq) == getattr(m, op)(seq), (op, seq)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=200))
def test_replay_window_accepts_each_seq_at_most_once(seqs):
    w = ReplayWindow(64)
    news = [s for s in seqs if w.accept(s) == "new"]
    assert len(news) == len(set(news))


def test_replay_window_examples():
    w = ReplayWindow(4)
    assert w.state() == (0, 0) and w.check(0) == "new"
    assert [w.accept(s) for s in (10, 8, 10, 8, 6, 7, 9)] == [
        "new",
        "new",
        "duplicate",
        "duplicate",
        "too_old",
        "new",
        "new",
    ]
    assert w.state() == (10, 0b1111)
    assert w.accept(2**64 - 1) == "new" and w.state() == (2**64 - 1, 1)
    assert w.check(10) == "too_old"
    with pytest.raises(ValueError):
        w.check(2**64)
    with pytest.raises(ValueError):
        w.check(-1)


@pytest.mark.parametrize(
    "state", [(-1, 0, 8), (2**64, 0, 8), (10, 1 << 8, 8), (2, 0b1000, 8), (0, 0, 0), (1, True, 8), (1.0, 0, 8)]
)
def test_replay_window_from_state_validates(state):
    with pytest.raises(ValueError):
        ReplayWindow.from_state(*state)


# ---------------------------------------------------------------------- published vectors


def vector_readings(v: dict) -> list[Reading]:
    return [Reading(r["point"], r["t"], r["value"], Quality(r["quality"]), r["reason"]) for r in v["readings"]]


def build_vectors() -> dict:
    """The published vectors, computed from their fixed inputs (used to write the file)."""
    readings = [
        Reading("climate.temperature", 1767225600.0, 21.3, Quality.GOOD),
        Reading("climate.temperature", 1767225610.0, 21.4, Quality.GOOD),
        Reading("door.open", 1767225600.005, False, Quality.GOOD),
        Reading("door.open", 1767225605.005, True, Quality.GOOD),
        Reading("gps.lat", 1767225600.2, 52.521912, Quality.GOOD),
        Reading("meter.energy_wh", 1767225600.012, 12345678, Quality.GOOD),
        Reading("meter.energy_wh", 1767225610.011, 12345690, Quality.GOOD),
        Reading("meter.voltage", 1767225600.012, 230.07, Quality.GOOD),
        Reading("meter.voltage", 1767225605.013, None, Quality.BAD, "timeout"),
        Reading("meter.voltage", 1767225610.011, 229.98, Quality.GOOD),
        Reading("ups.state", 1767225600.3, "online", Quality.GOOD),
        Reading("ups.state", 1767225610.3, "online", Quality.STALE, "no reply, last value"),
        Reading("x.ratio", 1767225600.4, 0.1 + 0.2, Quality.SUBSTITUTED, "manual"),
    ]
    ing = key_from(INGEST_SEED)
    ikid = cose.key_id(ing.public_key())
    body = encode_body(readings, compression="zstd")
    return {
        "description": "cabinet-agent batch format test vectors (docs/batch-format.md)",
        "cabinet_key": {
            "seed_text": CAB_SEED.decode(),
            "private_hex": hashlib.sha256(CAB_SEED).hexdigest(),
            "public_hex": cose.raw_public(KEY.public_key()).hex(),
            "kid_hex": KID.hex(),
        },
        "ingest_key": {
            "seed_text": INGEST_SEED.decode(),
            "private_hex": hashlib.sha256(INGEST_SEED).hexdigest(),
            "public_hex": cose.raw_public(ing.public_key()).hex(),
            "kid_hex": ikid.hex(),
        },
        "readings": [
            {"point": r.point, "t": r.t, "value": r.value, "quality": r.quality.value, "reason": r.reason}
            for r in readings
        ],
        "body_none_hex": encode_body(readings, compression="none").hex(),
        "body_zlib_hex": encode_body(readings, compression="zlib").hex(),
        "body_zstd_hex": body.hex(),
        "telemetry": {
            "topic": TOPIC,
            "cabinet": "CAB-0042",
            "boot": 7,
            "seq": 1000,
            "body": "body_zstd_hex",
            "envelope_hex": cose.seal_batch(
                body, key=KEY, kid=KID, cabinet="CAB-0042", boot=7, seq=1000, topic=TOPIC
            ).hex(),
        },
        "ack": {
            "topic": ACK_TOPIC,
            "cabinet": "CAB-0042",
            "seqs": [999, 1000],
            "envelope_hex": cose.seal_ack([999, 1000], key=ing, kid=ikid, cabinet="CAB-0042", topic=ACK_TOPIC).hex(),
        },
    }


@pytest.fixture(scope="module")
def vec() -> dict:
    return json.loads(VECTORS.read_text())


def test_vector_keys(vec):
    for name in ("cabinet_key", "ingest_key"):
        k = vec[name]
        assert hashlib.sha256(k["seed_text"].encode()).hexdigest() == k["private_hex"]
        priv = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["private_hex"]))
        assert cose.raw_public(priv.public_key()).hex() == k["public_hex"]
        assert cose.key_id(priv.public_key()).hex() == k["kid_hex"]


def test_vector_bodies(vec):
    readings = vector_readings(vec)
    for comp in ("none", "zlib", "zstd"):
        body = bytes.fromhex(vec[f"body_{comp}_hex"])
        assert encode_body(readings, compression=comp) == body, comp
        assert decode_body(body) == readings  # t values of the vector are whole milliseconds; order is canonical


def test_vector_envelopes(vec):
    priv = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["cabinet_key"]["private_hex"]))
    kid = bytes.fromhex(vec["cabinet_key"]["kid_hex"])
    tv = vec["telemetry"]
    body = bytes.fromhex(vec[tv["body"]])
    env = bytes.fromhex(tv["envelope_hex"])
    assert (
        cose.seal_batch(
            body, key=priv, kid=kid, cabinet=tv["cabinet"], boot=tv["boot"], seq=tv["seq"], topic=tv["topic"]
        )
        == env
    )
    ks = {kid: priv.public_key()}.get
    assert cose.open_batch(env, topic=tv["topic"], keys=ks) == cose.Batch(
        kid, tv["cabinet"], tv["boot"], tv["seq"], body
    )
    assert decode_body(cose.open_batch(env, topic=tv["topic"], keys=ks).body) == vector_readings(vec)
    with pytest.raises(VerifyError) as e:
        cose.open_batch(env, topic="city/v1/cab/CAB-0043/telemetry", keys=ks)
    assert e.value.reason == "bad_signature"

    ing = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["ingest_key"]["private_hex"]))
    ikid = bytes.fromhex(vec["ingest_key"]["kid_hex"])
    av = vec["ack"]
    ack = bytes.fromhex(av["envelope_hex"])
    assert cose.seal_ack(av["seqs"], key=ing, kid=ikid, cabinet=av["cabinet"], topic=av["topic"]) == ack
    assert cose.open_ack(ack, topic=av["topic"], keys={ikid: ing.public_key()}.get) == cose.Ack(
        av["cabinet"], av["seqs"]
    )


def test_vector_envelope_verifies_the_way_the_doc_says(vec):
    """Another language's steps: CBOR-decode, rebuild Sig_structure, Ed25519-verify."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    env = bytes.fromhex(vec["telemetry"]["envelope_hex"])
    tag = cbor2.loads(env)
    protected, _unprotected, payload, signature = tag.value
    header = cbor2.loads(protected)
    assert tag.tag == 18 and header[1] == -19 and header[4].hex() == vec["cabinet_key"]["kid_hex"]
    assert (header["cab"], header["boot"], header["seq"]) == ("CAB-0042", 7, 1000)
    to_sign = (
        b"\x84\x6aSignature1"
        + cbor2.dumps(protected)
        + cbor2.dumps(vec["telemetry"]["topic"].encode())
        + cbor2.dumps(payload)
    )
    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vec["cabinet_key"]["public_hex"]))
    pub.verify(signature, to_sign)
    assert payload.hex() == vec["body_zstd_hex"]


def test_vector_file_is_current():
    assert json.loads(VECTORS.read_text()) == json.loads(json.dumps(build_vectors()))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        VECTORS.parent.mkdir(parents=True, exist_ok=True)
        VECTORS.write_text(json.dumps(build_vectors(), indent=2) + "\n")
        print(f"wrote {VECTORS}")
    else:
        sys.exit("usage: python tests/test_cose.py --write-vectors")
