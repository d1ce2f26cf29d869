"""The cabinet's catalogue bookkeeping (agent/uplink/catalogue_sender.py) with real files:
version 1 until the catalogue is acknowledged, version 2 after; sent on connect and again
until acknowledged; a request for an old catalogue answered from its file; a change of
catalogue keeps the old one for batches still in the outbox."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.uplink import catalogue_sender
from agent.uplink.catalogue_sender import CatalogueSender
from agent.wire import cose
from agent.wire.batch_v2 import is_v2, peek
from agent.wire.catalogue import PointInfo, Site, build, catalogue_id, encode, ref_of
from agent.wire.catalogue_seal import CatalogueReply, open_catalogue

CAB = "CAB-S"
TOPIC = cose.telemetry_topic("city/v1", CAB)
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"sender test").digest())
KID = cose.key_id(KEY.public_key())


def cat(version, names=("m.i", "m.v")):
    return build(CAB, "sim", version, Site(1.0, 2.0, "UTC"), [PointInfo(n) for n in names])


def sender():
    return CatalogueSender(cabinet=CAB, key=KEY, kid=KID, topic=TOPIC)


RS = [Reading("m.v", 1.8e9, 230.1, Quality.GOOD), Reading("m.i", 1.8e9, 4.2, Quality.GOOD)]


def test_v1_until_acknowledged_then_v2_and_resent_until_then(tmp_path):
    s = sender()
    c = cat(1)
    cid = catalogue_id(encode(c))
    s.set(c, tmp_path)
    assert (tmp_path / f"{cid.hex()}.cbor").read_bytes() == encode(c)
    assert not is_v2(s.body(RS))
    [(ref, env)] = s.to_send(now=100.0, resend_s=5.0)
    assert ref == ref_of(cid)
    assert open_catalogue(env, topic=TOPIC, keys={KID: KEY.public_key()}.get).catalogue == c
    assert s.to_send(now=103.0, resend_s=5.0) == []  # not yet: waits resend_s
    assert len(s.to_send(now=105.0, resend_s=5.0)) == 1  # not acknowledged: again
    assert s.reply(CatalogueReply(CAB, cid, None)) is False  # nobody asked: no batch to send again
    body = s.body(RS)
    assert is_v2(body) and peek(body).ref == ref_of(cid)
    assert s.to_send(now=200.0, resend_s=5.0) == []
    s.on_connect()
    assert s.to_send(now=300.0, resend_s=5.0) == []  # acknowledged in this process: not again on connect


def test_unacknowledged_it_goes_again_after_5_10_20_s_at_most_every_resend_s(tmp_path):
    s = sender()
    s.set(cat(1), tmp_path)
    sent = [t for t in range(200) if s.to_send(now=float(t), resend_s=60.0)]
    assert sent == [0, 5, 15, 35, 75, 135, 195]
    s.on_connect()  # a new connection: at once, and the backoff starts over
    assert s.to_send(now=196.0, resend_s=60.0) and s.to_send(now=201.0, resend_s=60.0)


def test_a_request_for_an_old_catalogue_is_answered_from_its_file(tmp_path):
    s = sender()
    old, new = cat(1), cat(2, ("a.x", "m.i", "m.v"))
    s.set(old, tmp_path)
    s.reply(CatalogueReply(CAB, catalogue_id(encode(old)), None))
    s.set(new, tmp_path)  # a config change: the old file stays for batches in the outbox
    s.to_send(now=0.0, resend_s=5.0)
    s.reply(CatalogueReply(CAB, catalogue_id(encode(new)), None))
    old_ref = ref_of(catalogue_id(encode(old)))
    assert s.reply(CatalogueReply(CAB, None, old_ref)) is False
    [(ref, env)] = s.to_send(now=10.0, resend_s=5.0)
    assert ref == old_ref
    assert open_catalogue(env, topic=TOPIC, keys={KID: KEY.public_key()}.get).catalogue == old
    assert s.reply(CatalogueReply(CAB, catalogue_id(encode(old)), None)) is True  # asked for: batches go again
    assert s.stats["catalogue_requests"] == 1 and s.stats["catalogues_acked"] == 3


def test_a_request_for_the_current_catalogue_falls_back_to_v1_until_acknowledged(tmp_path):
    s = sender()
    c = cat(1)
    cid = catalogue_id(encode(c))
    s.set(c, tmp_path)
    s.reply(CatalogueReply(CAB, cid, None))
    s.reply(CatalogueReply(CAB, None, ref_of(cid)))  # the ingest lost it (a new database)
    assert not is_v2(s.body(RS))
    assert len(s.to_send(now=0.0, resend_s=5.0)) == 1
    s.reply(CatalogueReply(CAB, None, ref_of(cid)))  # every refused batch in flight asks again: sent once
    assert s.to_send(now=1.0, resend_s=5.0) == []
    s.reply(CatalogueReply(CAB, cid, None))
    assert is_v2(s.body(RS))


def test_a_catalogue_no_longer_kept_is_dropped_with_an_error(tmp_path, caplog):
    s = sender()
    s.set(cat(1), tmp_path)
    s.reply(CatalogueReply(CAB, None, b"\x00" * 8))
    s.to_send(now=0.0, resend_s=5.0)
    assert "no longer keeps" in caplog.text
    assert b"\x00" * 8 not in s.due


def test_old_catalogue_files_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogue_sender, "KEEP", 2)
    s = sender()
    for v in range(5):
        s.set(cat(v), tmp_path)
    assert len(list(tmp_path.glob("*.cbor"))) == 3  # the current one and 2 earlier
    assert (tmp_path / f"{catalogue_id(encode(cat(4))).hex()}.cbor").exists()
