"""Signed commands, pure: every rejection reason, replay memory across a restart, the
[trust] config section, and the test vectors of docs/commands.md
(tests/vectors/command_vectors.json; regenerate with `python -m tests.test_commands`)."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent import statefile
from agent.wire import commands as C
from agent.wire import cose
from tests.conftest import issues_of

VECTORS = Path(__file__).parent / "vectors" / "command_vectors.json"
OP_SEED = bytes(range(32))
OTHER_SEED = bytes(range(32, 64))
CAB_SEED = bytes(range(64, 96))
CAB = "CAB-0042"
PREFIX = "city/v1"
NOW = 1_800_000_000
SCHEMA = {
    "light.override": {"level": C.Arg("number", min=0, max=100), "for_s": C.Arg("number", min=1)},
    "ping": {},
    "reboot": {},
}

op_key = Ed25519PrivateKey.from_private_bytes(OP_SEED)
other_key = Ed25519PrivateKey.from_private_bytes(OTHER_SEED)
cab_key = Ed25519PrivateKey.from_private_bytes(CAB_SEED)


def raw(k):
    return cose.raw_public(k.public_key())


def trust() -> C.Trust:
    return C.Trust(
        [C.Operator("ops", raw(op_key), None), C.Operator("viewer", raw(other_key), frozenset({"ping", "status"}))]
    )


def topic(kind="light.override", cab=CAB):
    return C.command_topic(PREFIX, cab, kind)


def envelope(kind="light.override", args=None, *, key=op_key, cid="c-1", iat=NOW - 10, exp=NOW + 3600, to=CAB, t=None):
    return C.sign_command(
        kind,
        {"level": 100, "for_s": 7200} if args is None else args,
        key=key,
        cid=cid,
        iat=iat,
        exp=exp,
        to=to,
        topic=t or topic(kind),
    )


def verify(data, *, t=None, now=NOW, replay=None, tags=("north",), kind="light.override"):
    return C.verify_command(
        data,
        topic=t or topic(kind),
        cabinet=CAB,
        tags=tags,
        trust=trust(),
        now=now,
        replay=replay if replay is not None else C.CommandReplay(),
        schema=SCHEMA.get,
        clock_free=lambda k: k == "ping",
    )


def reason_of(data, **kw):
    with pytest.raises(C.CommandError) as e:
        verify(data, **kw)
    return e.value.reason


def test_a_good_command_verifies():
    cmd = verify(envelope())
    assert cmd == C.Command(
        "c-1",
        "light.override",
        NOW - 10,
        NOW + 3600,
        CAB,
        {"level": 100, "for_s": 7200},
        "ops",
        cose.key_id(op_key.public_key()),
    )


def _tampered_signature():
    tag = cbor2.loads(envelope())
    prot, unprot, payload, _sig = tag.value
    return cbor2.dumps(cbor2.CBORTag(18, [prot, unprot, payload, bytes(64)]))


def rejected_examples() -> dict[str, dict]:
    """reason -> {envelope, topic, now, tags, replay (ids already remembered)}: one per reason."""
    t = topic()
    ex = {
        "too_large": dict(envelope=b"\x00" * (C.MAX_COMMAND + 1)),
        "not_cose": dict(envelope=b"hello, lights off please"),
        "bad_header": dict(envelope=envelope(exp=NOW - 20)),  # exp before iat
        "unknown_kid": dict(envelope=envelope(key=Ed25519PrivateKey.from_private_bytes(bytes(32)))),
        "bad_signature": dict(envelope=_tampered_signature()),
        "kind_not_allowed": dict(envelope=envelope(key=other_key)),
        "wrong_target": dict(envelope=envelope(to="CAB-0043")),
        "clock_unknown": dict(envelope=envelope(), now=None),
        "not_yet_valid": dict(envelope=envelope(iat=NOW + 600, exp=NOW + 4000)),
        "expired": dict(envelope=envelope(iat=NOW - 7200, exp=NOW - 301)),
        "bad_args": dict(envelope=envelope(args={"level": 150})),
        "replayed": dict(envelope=envelope(), replay=["c-1"]),
        "replay_full": dict(envelope=envelope(cid="c-new"), replay=[f"x{i}" for i in range(3)], max_entries=3),
    }
    for d in ex.values():
        d.setdefault("topic", t)
        d.setdefault("now", NOW)
    return ex


def _replay_of(d):
    r = C.CommandReplay(max_entries=d.get("max_entries", C.DEFAULT_REPLAY_ENTRIES))
    for cid in d.get("replay", []):
        r.accept(cid, NOW + 3600, NOW)
    return r


@pytest.mark.parametrize("reason", C.REJECT_REASONS)
def test_every_rejection_reason(reason):
    d = rejected_examples()[reason]
    assert reason_of(d["envelope"], t=d["topic"], now=d["now"], replay=_replay_of(d)) == reason


def test_more_rejections():
    moved = cose.sign1(
        msgpack.packb({}),
        key=op_key,
        kid=cose.key_id(op_key.public_key()),
        aad=topic("reboot").encode(),
        headers={"cid": "m", "kind": "light.override", "iat": NOW, "exp": NOW + 60, "to": CAB},
    )
    assert reason_of(moved, kind="reboot") == "bad_header"  # kind header differs from the topic
    assert reason_of(envelope(), t=topic(cab="CAB-0043")) == "bad_signature"  # AAD is the receiver's topic
    assert reason_of(envelope(exp=NOW + 8 * 86400)) == "bad_header"  # lifetime beyond max_lifetime_s
    assert reason_of(envelope(to="group:south")) == "wrong_target"
    assert verify(envelope(to="group:north")).to == "group:north"
    assert reason_of(envelope(args={"colour": "red"})) == "bad_args"
    assert (
        reason_of(
            cose.sign1(
                b"\xc1",
                key=op_key,
                kid=cose.key_id(op_key.public_key()),
                headers={"cid": "z", "kind": "light.override", "iat": NOW, "exp": NOW + 60, "to": CAB},
                aad=topic().encode(),
            )
        )
        == "bad_args"
    )
    # within the skew: accepted
    assert verify(envelope(iat=NOW + 299, exp=NOW + 4000)).cid == "c-1"
    assert verify(envelope(iat=NOW - 7200, exp=NOW - 299)).cid == "c-1"
    # clock unknown: a clock_free kind (ping) still passes, replay-checked
    r = C.CommandReplay()
    assert verify(envelope("ping", {}), kind="ping", now=None, replay=r).kind == "ping"
    assert reason_of(envelope("ping", {}), kind="ping", now=None, replay=r) == "replayed"


def test_replay_memory_survives_a_restart_and_forgets_expired(tmp_path):
    r = C.CommandReplay()
    verify(envelope(cid="a", exp=NOW + 100), replay=r)
    verify(envelope(cid="b", exp=NOW + 10_000), replay=r)
    statefile.save(tmp_path / "commands.json", r.to_dict())
    again = C.CommandReplay.from_dict(statefile.load(tmp_path / "commands.json"), NOW)
    assert reason_of(envelope(cid="a", exp=NOW + 100), replay=again) == "replayed"
    later = C.CommandReplay.from_dict(r.to_dict(), NOW + 100 + C.DEFAULT_SKEW_S + 1)
    assert "a" not in later and "b" in later
    with pytest.raises(ValueError):
        C.CommandReplay.from_dict({"format": 9}, NOW)
    # full of expired ids: pruned on demand, not refused
    full = C.CommandReplay(max_entries=2)
    full.accept("x", NOW - 1000, NOW - 2000)
    full.accept("y", NOW - 1000, NOW - 2000)
    full.accept("z", NOW + 10, NOW)
    assert set(full.ids) == {"z"}


def test_reply_round_trip_and_forgery():
    t = C.reply_topic(PREFIX, CAB, "ping")
    data = C.seal_reply(cabinet=CAB, cid="c-1", ok=False, topic=t, key=cab_key, reason="expired", detail="late", t=1.0)
    keys = {cose.key_id(cab_key.public_key()): cab_key.public_key()}.get
    rep = C.open_reply(data, topic=t, keys=keys)
    assert (rep.cabinet, rep.cid, rep.ok, rep.reason, rep.detail) == (CAB, "c-1", False, "expired", "late")
    with pytest.raises(cose.VerifyError):
        C.open_reply(data, topic=C.reply_topic(PREFIX, CAB, "status"), keys=keys)
    no_keys: dict[bytes, Ed25519PublicKey] = {}
    with pytest.raises(cose.VerifyError):
        C.open_reply(data, topic=t, keys=no_keys.get)


# ---------------------------------------------------------------------- [trust] config

BASE = """
[cabinet]
id = "CAB-0042"
tags = ["north"]
[site]
latitude = 52.5
longitude = 13.4
timezone = "Europe/Berlin"
"""


def test_trust_section_loads():
    from agent import config as cfg

    c = cfg.loads(
        BASE
        + f"""
[trust]
max_skew_s = 60
[trust.operators.ops]
key = "{raw(op_key).hex()}"
allow = "*"
[trust.operators.viewer]
key = "{raw(other_key).hex()}"
allow = ["ping", "status"]
"""
    )
    assert c.trust.max_skew_s == 60
    assert [(o.name, o.allow) for o in c.trust.operators] == [("ops", None), ("viewer", frozenset({"ping", "status"}))]
    assert c.trust.lookup(cose.key_id(op_key.public_key()))[0].name == "ops"
    assert cfg.loads(BASE).trust.operators == []


def test_trust_section_errors_name_section_key_value():
    issues = issues_of(
        BASE
        + f"""
[trust]
max_skew_s = -1
colour = 1
[trust.operators.ops]
key = "abc"
allow = "everything"
[trust.operators.twin]
key = "{raw(op_key).hex()}"
allow = ["Bad Kind"]
[trust.operators.twin2]
key = "{raw(op_key).hex()}"
allow = []
"""
    )
    text = "\n".join(map(str, issues))
    assert "[trust] max_skew_s = -1: out of range" in text
    assert "[trust] colour" in text
    assert '[trust.operators.ops] key = "abc"' in text
    assert '[trust.operators.ops] allow = "everything"' in text
    assert "[trust.operators.twin] allow" in text
    assert "[trust.operators.twin2] key" in text and "same key as [trust.operators.twin]" in text


# ---------------------------------------------------------------------- vectors


def make_vectors() -> dict:
    good = envelope(cid="vec-1")
    reply_t = C.reply_topic(PREFIX, CAB, "light.override")
    rejected = {}
    for reason, d in rejected_examples().items():
        env = d["envelope"]
        rejected[reason] = {
            "envelope_hex": env.hex() if len(env) <= 4096 else None,
            "envelope_len": len(env),
            "topic": d["topic"],
            "now": d["now"],
            "remembered_ids": d.get("replay", []),
            "replay_max_entries": d.get("max_entries"),
        }
    return {
        "description": "docs/commands.md test vectors: Ed25519 keys from 32-byte seeds (RFC 8032 private keys); "
        "envelopes are deterministic (Ed25519 signatures are). too_large is 256 KiB + 1 zero bytes.",
        "operator_seed_hex": OP_SEED.hex(),
        "operator_public_hex": raw(op_key).hex(),
        "operator_kid_hex": cose.key_id(op_key.public_key()).hex(),
        "viewer_seed_hex": OTHER_SEED.hex(),
        "viewer_allow": ["ping", "status"],
        "cabinet_seed_hex": CAB_SEED.hex(),
        "cabinet_public_hex": raw(cab_key).hex(),
        "cabinet": CAB,
        "tags": ["north"],
        "now": NOW,
        "max_skew_s": C.DEFAULT_SKEW_S,
        "command": {
            "cid": "vec-1",
            "kind": "light.override",
            "iat": NOW - 10,
            "exp": NOW + 3600,
            "to": CAB,
            "args": {"level": 100, "for_s": 7200},
            "topic": topic(),
            "payload_hex": msgpack.packb({"level": 100, "for_s": 7200}).hex(),
            "envelope_hex": good.hex(),
        },
        "reply": {
            "topic": reply_t,
            "envelope_hex": C.seal_reply(
                cabinet=CAB, cid="vec-1", ok=True, topic=reply_t, key=cab_key, result={"override": "set"}, t=NOW
            ).hex(),
        },
        "rejected": rejected,
    }


def test_vectors_match_the_file():
    assert json.loads(VECTORS.read_text()) == json.loads(json.dumps(make_vectors()))


def test_vectors_verify_as_documented():
    v = json.loads(VECTORS.read_text())
    c = v["command"]
    cmd = verify(bytes.fromhex(c["envelope_hex"]), t=c["topic"])
    assert (cmd.cid, cmd.kind, cmd.iat, cmd.exp, cmd.to, cmd.args) == (
        c["cid"],
        c["kind"],
        c["iat"],
        c["exp"],
        c["to"],
        c["args"],
    )
    cab_pub = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["cabinet_seed_hex"])).public_key()
    rep = C.open_reply(
        bytes.fromhex(v["reply"]["envelope_hex"]), topic=v["reply"]["topic"], keys={cose.key_id(cab_pub): cab_pub}.get
    )
    assert rep.ok and rep.cid == "vec-1"
    for reason, d in v["rejected"].items():
        env = bytes.fromhex(d["envelope_hex"]) if d["envelope_hex"] else bytes(d["envelope_len"])
        r = C.CommandReplay(max_entries=d["replay_max_entries"] or C.DEFAULT_REPLAY_ENTRIES)
        for cid in d["remembered_ids"]:
            r.accept(cid, NOW + 3600, NOW)
        assert reason_of(env, t=d["topic"], now=d["now"], replay=r) == reason


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(make_vectors(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {VECTORS}")


def test_a_released_id_may_run_once_more_and_only_once() -> None:
    r = C.CommandReplay()
    r.accept("c-9", NOW + 100, NOW)
    r.release("c-9")  # verified, then refused busy: it never ran
    r.accept("c-9", NOW + 100, NOW)
    with pytest.raises(C.CommandError, match="accepted before"):
        r.accept("c-9", NOW + 100, NOW)
