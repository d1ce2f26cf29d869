"""The signed OTA status message: round trip, tampering, wrong topic, bad fields."""

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.wire import cose
from agent.wire.ota_status import open_status, seal_status, status_topic

KEY = Ed25519PrivateKey.generate()
KEYS = {cose.key_id(KEY.public_key()): KEY.public_key()}.get
TOPIC = status_topic("city/v1", "CAB-1")
DOC = {
    "cabinet": "CAB-1",
    "deployment": "d-1",
    "state": "downloading",
    "seq": 3,
    "percent": 40,
    "reason": None,
    "version": "0.9.0",
    "running": "0.8.0",
    "counter": 9,
    "t": 1.5e9,
}


def test_round_trip():
    assert TOPIC == "city/v1/cab/CAB-1/ota/status"
    assert open_status(seal_status(DOC, key=KEY, topic=TOPIC), topic=TOPIC, keys=KEYS) == DOC


def test_other_topic_or_key_rejected():
    data = seal_status(DOC, key=KEY, topic=TOPIC)
    with pytest.raises(cose.VerifyError) as e:
        open_status(data, topic=status_topic("city/v1", "CAB-2"), keys=KEYS)
    assert e.value.reason == "bad_signature"
    other = Ed25519PrivateKey.generate()
    with pytest.raises(cose.VerifyError) as e:
        open_status(seal_status(DOC, key=other, topic=TOPIC), topic=TOPIC, keys=KEYS)
    assert e.value.reason == "unknown_kid"


def test_a_cabinet_cannot_speak_for_another():
    doc = dict(DOC, cabinet="CAB-2")
    data = seal_status(doc, key=KEY, topic=TOPIC)
    with pytest.raises(cose.VerifyError) as e:
        open_status(data, topic=TOPIC, keys=KEYS)
    assert e.value.reason == "cabinet_mismatch"


@pytest.mark.parametrize(
    "field,value",
    [("state", "done"), ("seq", -1), ("percent", 101), ("deployment", ""), ("counter", "9"), ("reason", "x" * 600)],
)
def test_bad_fields_refused_on_both_sides(field, value):
    with pytest.raises(ValueError, match=field if field != "deployment" else "deployment"):
        seal_status(dict(DOC, **{field: value}), key=KEY, topic=TOPIC)
    payload = cbor2.dumps(dict(DOC, **{field: value}))
    data = cose.sign1(payload, key=KEY, kid=cose.key_id(KEY.public_key()), headers={"cab": "CAB-1"}, aad=TOPIC.encode())
    with pytest.raises(cose.VerifyError) as e:
        open_status(data, topic=TOPIC, keys=KEYS)
    assert e.value.reason == "bad_payload"
