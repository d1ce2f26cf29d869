"""The signed-command format as docs/commands.md now specifies it (issue 14):

- a `bad_header` rejection carries no cid (the reply's cid is null);
- the protected header must be in CBOR core deterministic encoding (RFC 8949 §4.2.1): the
  same header in another encoding verifies cryptographically but is refused `bad_header`;
- the reply's `t` is whole epoch seconds, an int, on the wire and when opened;
- a request without an MQTT response topic is not answered, and counted `bad_reply_topic`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import cbor2
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.clock import WallClock
from agent.remote.downlink import Downlink
from agent.wire import commands as C
from agent.wire import cose
from agent.wire.deterministic import deterministic
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.provision import pki

CAB = "CAB-0042"
PREFIX = "city/v1"
NOW = 1_800_000_000
op_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
cab_key = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
TOPIC = C.command_topic(PREFIX, CAB, "ping")


def trust() -> C.Trust:
    return C.Trust([C.Operator("ops", cose.raw_public(op_key.public_key()), None)])


def verify(data: bytes, now: float | None = NOW) -> C.Command:
    return C.verify_command(
        data,
        topic=TOPIC,
        cabinet=CAB,
        tags=(),
        trust=trust(),
        now=now,
        replay=C.CommandReplay(),
        schema={"ping": {}}.get,
    )


def rejection(data: bytes) -> C.CommandError:
    with pytest.raises(C.CommandError) as e:
        verify(data)
    return e.value


def envelope(**over: object) -> bytes:
    h = {"cid": "c-1", "iat": NOW - 10, "exp": NOW + 300, "to": CAB, **over}
    return C.sign_command("ping", {}, key=op_key, topic=TOPIC, **h)  # type: ignore[arg-type]


def signed_with_protected(protected: bytes) -> bytes:
    """A COSE_Sign1 over `protected` exactly as given, correctly signed by the operator."""
    payload = msgpack.packb({})
    sig = op_key.sign(cose.sig_structure(protected, TOPIC.encode(), payload))
    return cbor2.dumps(cbor2.CBORTag(cose.TAG_SIGN1, [protected, {}, payload, sig]))


def header_map() -> dict:
    return {
        1: -19,
        4: cose.key_id(op_key.public_key()),
        "cid": "c-1",
        "kind": "ping",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "to": CAB,
    }


# ---------------------------------------------------------------------- bad_header: no cid


@pytest.mark.parametrize(
    "over",
    [
        {"exp": NOW - 20},  # exp before iat
        {"exp": NOW + 30 * 86400},  # lifetime beyond max_lifetime_s
        {"to": ""},
    ],
)
def test_a_bad_header_rejection_echoes_no_cid(over):
    e = rejection(envelope(**over))
    assert e.reason == "bad_header" and e.cid is None, (e.reason, e.cid)


def test_later_rejections_still_name_the_cid():
    e = rejection(envelope(iat=NOW - 7200, exp=NOW - 3600))  # a verified header: its cid is echoed
    assert (e.reason, e.cid) == ("expired", "c-1")


# ---------------------------------------------------------------------- canonical headers


def test_the_operator_tools_sign_deterministic_headers():
    data = envelope()
    prot = cbor2.loads(data).value[0]
    assert deterministic(cbor2.loads(prot)) == prot
    assert verify(data).cid == "c-1"


def test_the_deterministic_encoding_sorts_keys_bytewise():
    # RFC 8949 §4.2.1: 10 (0x0a) < 100 (0x18 0x64) < -1 (0x20) < "a" (0x61 0x61) < "aa" (0x62 ...)
    got = deterministic({"aa": 1, "a": 1, -1: 1, 100: 1, 10: 1})
    assert got.hex() == "a5" + "0a01" + "186401" + "2001" + "616101" + "62616101"
    assert deterministic({"x": 1.5}) == bytes.fromhex("a16178f93e00")  # shortest float


@pytest.mark.parametrize(
    "encode",
    [
        # the same map, keys in insertion order ("to" after "kind"): not sorted
        lambda h: bytes([0xA7]) + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in h.items()),
        # sorted, but iat as a 64-bit int although it fits in 32 bits
        lambda h: deterministic(h).replace(cbor2.dumps(h["iat"]), b"\x1b" + h["iat"].to_bytes(8, "big")),
        # an indefinite-length map
        lambda h: b"\xbf" + deterministic(h)[1:] + b"\xff",
    ],
    ids=["unsorted", "long-int", "indefinite"],
)
def test_a_non_deterministic_header_is_refused_although_it_is_signed(encode):
    h = header_map()
    prot = encode(h)
    assert prot != deterministic(h) and cbor2.loads(prot) == h  # the same header, another encoding
    cose.verify1(  # the signature is good (indefinite maps are refused by verify1 itself, also bad_header)
        signed_with_protected(deterministic(h)), aad=TOPIC.encode(), keys=lambda kid: op_key.public_key()
    )
    e = rejection(signed_with_protected(prot))
    assert (e.reason, e.cid) == ("bad_header", None)
    assert verify(signed_with_protected(deterministic(h))).cid == "c-1"


def test_junk_is_still_reported_by_the_envelope_checks():
    assert rejection(b"hello").reason == "not_cose"
    assert rejection(cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01", {}, b"", bytes(64)]))).reason == "bad_header"


# ---------------------------------------------------------------------- reply t


def test_the_reply_time_is_whole_epoch_seconds():
    t = C.reply_topic(PREFIX, CAB, "ping")
    data = C.seal_reply(cabinet=CAB, cid="c-1", ok=True, topic=t, key=cab_key, t=NOW + 0.75)
    doc = msgpack.unpackb(cose.payload_of(data))
    assert doc["t"] == NOW and type(doc["t"]) is int
    rep = C.open_reply(data, topic=t, keys=lambda kid: cab_key.public_key())
    assert rep.t == NOW and type(rep.t) is int


def test_an_older_cabinets_float_time_is_read_as_seconds():
    t = C.reply_topic(PREFIX, CAB, "ping")
    payload = msgpack.packb({"cab": CAB, "cid": "c-1", "ok": True, "t": NOW + 0.5})
    data = cose.sign1(payload, key=cab_key, kid=cose.key_id(cab_key.public_key()), headers={"cab": CAB}, aad=t.encode())
    assert C.open_reply(data, topic=t, keys=lambda kid: cab_key.public_key()).t == NOW


# ---------------------------------------------------------------------- no response topic


async def test_a_request_without_a_response_topic_is_not_answered(tmp_path: Path):
    dl = Downlink(
        cabinet=CAB,
        prefix=PREFIX,
        tags=(),
        trust=trust(),
        signing_key=cab_key,
        clock=WallClock(),
        clock_trusted=lambda: True,
        data_dir=tmp_path,
    )

    async def ping(cmd: C.Command) -> dict:
        return {"pong": True}

    dl.register("ping", ping, {}, clock_free=True)
    now = int(time.time())
    env = C.sign_command("ping", {}, key=op_key, cid="c-9", iat=now, exp=now + 60, to=CAB, topic=TOPIC)
    # no client: had the request been answered, the reply would have been attempted (and dropped)
    await dl.handle(TOPIC, env, None, None)
    await dl.handle(TOPIC, env, Properties(PacketTypes.PUBLISH), None)  # properties, but no response topic
    await asyncio.sleep(0.05)
    st = dl.snapshot()
    assert st["by_reason"] == {"bad_reply_topic": 2}, st
    assert (st["accepted"], st["replies"], st["replies_dropped"], st["running"]) == (0, 0, 0, 0), st
    assert "c-9" not in dl.replay  # never verified, never spent: a proper re-send runs it


# ---------------------------------------------------------------------- the counter, visible


@pytest.mark.integration  # the agent on the simulated cabinet and a real broker
async def test_bad_reply_topic_is_counted_where_the_operator_sees_it(broker, tmp_path, capsys):
    from tests.test_downlink import Cabinet

    cab = await Cabinet(tmp_path, broker.plain_port).start()
    try:
        op = pki.load_signing_key(cab.op_path)
        now = int(time.time())
        topic = C.command_topic(PREFIX, "CAB-SIM-0001", "ping")
        resp = C.reply_topic(PREFIX, "CAB-SIM-0001", "ping")
        env = C.sign_command("ping", {}, key=op, cid="no-resp-1", iat=now, exp=now + 60, to="CAB-SIM-0001", topic=topic)
        async with aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5) as c:
            await c.subscribe(resp, qos=1)
            await c.publish(topic, env, qos=1)  # no response topic
            assert cab.app is not None
            await wait_until(lambda: cab.app.downlink.stats["by_reason"].get("bad_reply_topic") == 1, timeout=5)
            rc, [rep] = await cab.send(capsys, "--id", "CAB-SIM-0001", "ping")  # a sentinel: answered
            assert rc == 0 and rep["ok"] and rep["cid"] != "no-resp-1"
            # had the first ping been answered, its reply would have come first (one publisher, in order)
            async with asyncio.timeout(5):
                first = await anext(aiter(c.messages))
            pub = pki.load_signing_key(cab.cab_path).public_key()
            assert C.open_reply(bytes(first.payload), topic=resp, keys=lambda kid: pub).cid == rep["cid"]
        rc, [rep] = await cab.send(capsys, "--id", "CAB-SIM-0001", "status")
        assert rc == 0 and rep["result"]["downlink"]["by_reason"] == {"bad_reply_topic": 1}, rep
    finally:
        await cab.stop()
