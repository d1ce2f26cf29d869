"""The point catalogue (agent/wire/catalogue.py, catalogue_seal.py): its one encoding and id,
strict decoding, sealing bound to the topic, the ingest's replies, the catalogue built from
the example config, and the hex vectors of docs/batch-format.md §8 (decoded here).

    python tests/test_catalogue.py   prints the vectors (after a deliberate format change)
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import cbor2
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch_v2 import decode_v2, encode_v2, peek
from agent.wire.catalogue import (
    Catalogue,
    CatalogueError,
    PointInfo,
    Site,
    build,
    catalogue_id,
    decode,
    encode,
    ref_of,
)
from agent.wire.catalogue_seal import (
    CatalogueRefused,
    open_catalogue,
    open_reply,
    seal_catalogue,
    seal_reply,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "batch-format.md"
TOPIC = "city/v1/cab/CAB-0042/telemetry"
ACK = "city/v1/cab/CAB-0042/ack"


def seed_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(text.encode()).digest())


CAB_KEY = seed_key("cabinet-agent batch vector: cabinet key")
INGEST_KEY = seed_key("cabinet-agent batch vector: ingest key")
KID = cose.key_id(CAB_KEY.public_key())
IKID = cose.key_id(INGEST_KEY.public_key())


def keys(kid):
    return {KID: CAB_KEY.public_key(), IKID: INGEST_KEY.public_key()}.get(kid)


def vector_catalogue() -> Catalogue:
    return build(
        "CAB-0042",
        "sim",
        3,
        Site(52.520008, 13.404954, "Europe/Berlin"),
        [
            PointInfo("meter.voltage", "V", "float", 1, "meter", "rs485", "lighting.seg1.voltage", "voltage L-N"),
            PointInfo("door.open", "", "bool", None, "dio", "", "climate.door.input", "cabinet door"),
            PointInfo("meter.energy_wh", "Wh", "int", None, "meter", "rs485", "lighting.seg1.energy", "import energy"),
        ],
    )


VECTOR_READINGS = [
    Reading("door.open", 1767225600.005, False, Quality.GOOD),
    Reading("door.open", 1767225605.005, True, Quality.GOOD),
    Reading("meter.energy_wh", 1767225600.012, 12345678, Quality.GOOD),
    Reading("meter.energy_wh", 1767225610.011, 12345690, Quality.GOOD),
    Reading("meter.voltage", 1767225600.012, 230.07, Quality.GOOD),
    Reading("meter.voltage", 1767225605.013, None, Quality.BAD, "timeout"),
    Reading("meter.voltage", 1767225610.011, 229.98, Quality.GOOD),
    Reading("x.extra", 1767225600.4, "on", Quality.GOOD),
]


def vectors() -> dict[str, str]:
    cat = vector_catalogue()
    body = encode(cat)
    cid = catalogue_id(body)
    v2 = encode_v2(VECTOR_READINGS, ref=ref_of(cid), index=cat.index(), compression="none")
    batch = cose.seal_batch(v2, key=CAB_KEY, kid=KID, cabinet="CAB-0042", boot=7, seq=1001, topic=TOPIC)
    return {
        "catalogue": body.hex(),
        "catalogue_id": cid.hex(),
        "catalogue_message": seal_catalogue(body, key=CAB_KEY, kid=KID, cabinet="CAB-0042", topic=TOPIC).hex(),
        "catalogue_ack": seal_reply(cabinet="CAB-0042", key=INGEST_KEY, kid=IKID, topic=ACK, acked=cid).hex(),
        "catalogue_need": seal_reply(cabinet="CAB-0042", key=INGEST_KEY, kid=IKID, topic=ACK, need=cid[:8]).hex(),
        "v2_body": v2.hex(),
        "v2_message": batch.hex(),
    }


def documented() -> dict[str, str]:
    """The hex after each `<!-- vector: NAME -->` marker of docs/batch-format.md."""
    text = DOC.read_text()
    found = re.findall(r"<!-- vector: (\w+) -->\s*```[a-z]*\n([0-9a-f\n]+)```", text)
    return {name: hexes.replace("\n", "") for name, hexes in found}


# ---------------------------------------------------------------------- encoding


def test_encoding_is_deterministic_sorted_and_round_trips():
    cat = vector_catalogue()
    assert cat.names() == ["door.open", "meter.energy_wh", "meter.voltage"]
    body = encode(cat)
    assert decode(body) == cat
    # the same content given in another order is the same bytes, so the same id
    again = build("CAB-0042", "sim", 3, cat.site, list(reversed(cat.points)))
    assert encode(again) == body and catalogue_id(encode(again)) == catalogue_id(body)
    # any change of content is another id
    other = build("CAB-0042", "sim", 4, cat.site, cat.points)
    assert catalogue_id(encode(other)) != catalogue_id(body)
    assert len(catalogue_id(body)) == 32 and ref_of(catalogue_id(body)) == catalogue_id(body)[:8]


def test_decode_refuses_another_encoding_of_the_same_content():
    body = encode(vector_catalogue())
    doc = cbor2.loads(body)
    shuffled = dict(reversed(list(doc.items())))
    other = cbor2.dumps(shuffled)  # not canonical: keys in another order
    assert cbor2.loads(other) == doc and other != body
    with pytest.raises(CatalogueError, match="deterministic encoding"):
        decode(other)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("board"), "exactly the keys"),
        (lambda d: d.update(v=2), "unsupported catalogue version"),
        (lambda d: d["points"].reverse(), "unique and sorted"),
        (lambda d: d["points"][0].__setitem__(2, "complex"), "kind 'complex'"),
        (lambda d: d["points"][0].__setitem__(3, -1), "decimals"),
        (lambda d: d["points"][0].pop(), "array of 8"),
        (lambda d: d["site"].__setitem__("lat", 91.0), "latitude"),
        (lambda d: d.update(points=[]), "1..65536 points"),
        (lambda d: d.update(cab=""), "cab must be a non-empty string"),
    ],
)
def test_decode_names_what_is_wrong(mutate, match):
    doc = cbor2.loads(encode(vector_catalogue()))
    mutate(doc)
    with pytest.raises(CatalogueError, match=match):
        decode(cbor2.dumps(doc, canonical=True))


@pytest.mark.parametrize("junk", [b"", b"\xff", b"\xa0", encode(vector_catalogue()) + b"\x00", 42])
def test_decode_refuses_junk_with_catalogue_error(junk):
    with pytest.raises(CatalogueError):
        decode(junk)


def test_every_byte_flip_is_refused_or_another_valid_catalogue():
    body = encode(vector_catalogue())
    for i in range(len(body)):
        for bit in (0x01, 0x80):
            flipped = bytearray(body)
            flipped[i] ^= bit
            try:
                cat = decode(bytes(flipped))
            except CatalogueError:
                continue
            assert encode(cat) == bytes(flipped)  # accepted only as its own canonical bytes


# ---------------------------------------------------------------------- sealing


def test_sealed_catalogue_opens_on_its_topic_only():
    body = encode(vector_catalogue())
    msg = seal_catalogue(body, key=CAB_KEY, kid=KID, cabinet="CAB-0042", topic=TOPIC)
    got = open_catalogue(msg, topic=TOPIC, keys=keys)
    assert (got.cabinet, got.id, got.body, got.kid) == ("CAB-0042", catalogue_id(body), body, KID)
    with pytest.raises(CatalogueRefused) as e:
        open_catalogue(msg, topic="city/v1/cab/CAB-0043/telemetry", keys=keys)
    assert e.value.reason == "bad_signature"
    with pytest.raises(CatalogueRefused) as e:
        open_catalogue(msg, topic=TOPIC, keys=lambda kid: None)
    assert e.value.reason == "unknown_kid"
    # a batch is not a catalogue: open_batch refuses it (bad_header) and vice versa
    with pytest.raises(cose.VerifyError) as ve:
        cose.open_batch(msg, topic=TOPIC, keys=keys)
    assert ve.value.reason == "bad_header"


def test_a_hash_that_does_not_match_the_bytes_is_refused():
    body = encode(vector_catalogue())
    wrong = hashlib.sha256(body + b"x").digest()
    msg = cose.sign1(body, key=CAB_KEY, kid=KID, headers={"cab": "CAB-0042", "cat": wrong}, aad=TOPIC.encode())
    with pytest.raises(CatalogueRefused) as e:
        open_catalogue(msg, topic=TOPIC, keys=keys)
    assert e.value.reason == "hash_mismatch"


def test_a_signed_payload_that_is_no_catalogue_or_another_cabinets_is_refused():
    junk = b"\xa1\x61x\x01"
    msg = cose.sign1(
        junk, key=CAB_KEY, kid=KID, headers={"cab": "CAB-0042", "cat": catalogue_id(junk)}, aad=TOPIC.encode()
    )
    with pytest.raises(CatalogueRefused) as e:
        open_catalogue(msg, topic=TOPIC, keys=keys)
    assert e.value.reason == "bad_catalogue"
    cat = vector_catalogue()
    theirs = encode(build("CAB-0043", cat.board, 3, cat.site, cat.points))
    msg = cose.sign1(
        theirs, key=CAB_KEY, kid=KID, headers={"cab": "CAB-0042", "cat": catalogue_id(theirs)}, aad=TOPIC.encode()
    )
    with pytest.raises(CatalogueRefused) as e:
        open_catalogue(msg, topic=TOPIC, keys=keys)
    assert e.value.reason == "cabinet_mismatch"


def test_replies_open_and_are_not_batch_acks():
    cid = catalogue_id(encode(vector_catalogue()))
    ack = seal_reply(cabinet="CAB-0042", key=INGEST_KEY, kid=IKID, topic=ACK, acked=cid)
    need = seal_reply(cabinet="CAB-0042", key=INGEST_KEY, kid=IKID, topic=ACK, need=cid[:8])
    assert open_reply(ack, topic=ACK, keys=keys) == ("CAB-0042", cid, None)
    assert open_reply(need, topic=ACK, keys=keys) == ("CAB-0042", None, cid[:8])
    with pytest.raises(cose.VerifyError) as e:  # the cabinet tells them apart this way
        cose.open_ack(ack, topic=ACK, keys=keys)
    assert e.value.reason == "bad_payload"
    batch_ack = cose.seal_ack([1], key=INGEST_KEY, kid=IKID, cabinet="CAB-0042", topic=ACK)
    with pytest.raises(cose.VerifyError) as e:
        open_reply(batch_ack, topic=ACK, keys=keys)
    assert e.value.reason == "bad_payload"
    with pytest.raises(cose.VerifyError) as e:
        open_reply(ack, topic="city/v1/cab/CAB-0043/ack", keys=keys)
    assert e.value.reason == "bad_signature"


# ---------------------------------------------------------------------- the example cabinet


def test_the_example_cabinets_catalogue():
    from agent import config as cfg
    from agent.runtime.app import agent_points
    from agent.runtime.entry import board_infos
    from agent.uplink.catalogue_source import from_config

    config = cfg.load(cfg.EXAMPLE, board_infos())
    cat = from_config(config, agent_points(config, uplink=True))
    by = {p.name: p for p in cat.points}
    assert decode(encode(cat)) == cat
    assert (cat.cabinet, cat.site.timezone) == (config.cabinet_id, config.site.timezone)
    v = by["meter_main.voltage_l1"]
    assert (v.unit, v.kind, v.decimals, v.device, v.bus) == ("V", "float", 1, "meter_main", "rs485")
    assert by["relays.relay_1"].kind == "bool" and by["relays.relay_1"].role.startswith("lighting.seg1")
    assert by["climate.temperature"].role == "climate.temperature"
    assert by["lighting.seg1.energy_kwh"].role == "lighting.seg1"


# ---------------------------------------------------------------------- documented vectors


def test_documented_vectors_decode_and_are_current():
    doc = documented()
    assert set(doc) == set(vectors()), "docs/batch-format.md §8 must hold every vector"
    cat = decode(bytes.fromhex(doc["catalogue"]))
    assert cat == vector_catalogue()
    assert catalogue_id(bytes.fromhex(doc["catalogue"])).hex() == doc["catalogue_id"]
    got = open_catalogue(bytes.fromhex(doc["catalogue_message"]), topic=TOPIC, keys=keys)
    assert got.catalogue == cat
    assert open_reply(bytes.fromhex(doc["catalogue_ack"]), topic=ACK, keys=keys).acked == bytes.fromhex(
        doc["catalogue_id"]
    )
    assert open_reply(bytes.fromhex(doc["catalogue_need"]), topic=ACK, keys=keys).need == ref_of(got.id)
    b = cose.open_batch(bytes.fromhex(doc["v2_message"]), topic=TOPIC, keys=keys)
    assert b.body.hex() == doc["v2_body"] and (b.boot, b.seq) == (7, 1001)
    assert peek(b.body).ref == ref_of(got.id)
    assert decode_v2(b.body, cat.names()) == VECTOR_READINGS
    assert msgpack.unpackb(b.body[9:])[1] == [0, 1, 1, 1]  # door.open, meter.energy_wh, meter.voltage, extra 3
    assert doc == vectors()  # Ed25519 is deterministic and the body is uncompressed: stable bytes


if __name__ == "__main__":
    for name, value in vectors().items():
        print(f"<!-- vector: {name} -->\n```text\n" + "\n".join(value[i : i + 96] for i in range(0, len(value), 96)))
        print("```", file=sys.stdout)
