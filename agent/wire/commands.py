"""Signed commands (the downlink's format): operator-signed COSE_Sign1 envelopes, their
verification against the cabinet's trust config, and the command-id replay memory.
Pure: no I/O, no clock (`now` is a parameter).

Envelope (docs/commands.md): agent.wire.cose.sign1 with the protected text headers
    cid  command id, text 1..64 (unique per command; the replay key)
    kind command kind, e.g. "light.override" (must equal the topic's last level)
    iat  issued-at, int epoch seconds
    exp  expiry, int epoch seconds (iat < exp, exp - iat <= max_lifetime_s)
    to   target: a cabinet id, or "group:<tag>" matched against [cabinet] tags
payload = msgpack map of arguments (text keys); external AAD = the command topic
`<prefix>/cab/<id>/cmd/<kind>` of the RECEIVING cabinet (a group command is
published once per cabinet topic, each copy signed with that topic).

`verify_command` returns a Command or raises CommandError whose `.reason` is one of
REJECT_REASONS; checks run in a fixed order (size, envelope, signature, headers,
operator rights, target, time, arguments, replay) so a message gets one stable reason.

The cabinet's signed replies are agent.wire.replies' (`seal_reply`, `open_reply`,
`Reply`, re-exported here).

Clock unknown (the cabinet's wall clock is not trusted: no RTC/NTP/GPS yet): `iat`
and `exp` cannot be checked, so a captured old command could be replayed once its id
is forgotten. A state-changing command is therefore rejected with `clock_unknown`;
only kinds registered as `clock_free` (read-only ones: ping, status) are accepted,
still signed, targeted and replay-checked by their command id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.wire import cose
from agent.wire.deterministic import canonical_header
from agent.wire.replies import Reply as Reply
from agent.wire.replies import open_reply as open_reply
from agent.wire.replies import seal_reply as seal_reply

MAX_COMMAND = 256 * 1024  # bytes of one envelope (a config document fits; a flood of big junk does not)
MAX_CID = 64
DEFAULT_SKEW_S = 300
DEFAULT_MAX_LIFETIME_S = 7 * 86400
DEFAULT_REPLAY_ENTRIES = 10_000
KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){0,3}")
CID_RE = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
GROUP_PREFIX = "group:"

REJECT_REASONS = (
    "too_large",  # envelope longer than MAX_COMMAND
    "not_cose",  # not CBOR / not a tagged COSE_Sign1
    "bad_header",  # protected header malformed, wrong alg, missing/ill-typed cid/kind/iat/exp/to,
    # kind differs from the topic, lifetime longer than allowed
    "unknown_kid",  # no operator key with this key id in [trust]
    "bad_signature",  # signature does not verify (over the header, this topic, the payload)
    "kind_not_allowed",  # the operator's key may not send this kind ([trust.operators.X] allow)
    "wrong_target",  # `to` is another cabinet or a group this cabinet is not in
    "clock_unknown",  # the cabinet's clock is untrusted and the kind is not clock_free
    "not_yet_valid",  # iat more than max_skew_s in the future
    "expired",  # exp more than max_skew_s in the past
    "bad_args",  # payload not a msgpack map, or arguments do not match the kind's schema
    "replayed",  # this command id was accepted before (remembered until its expiry)
    "replay_full",  # the replay memory is full of unexpired ids: refuse rather than forget
)
DISPATCH_REASONS = (
    "unknown_kind",  # verified, but no handler is registered for the kind on this cabinet
    "busy",  # too many commands running; try again
    "failed",  # the handler refused or failed (detail says why)
)
REASONS = REJECT_REASONS + DISPATCH_REASONS

_COSE_REASON = {
    "too_large": "too_large",
    "not_cbor": "not_cose",
    "not_cose_sign1": "not_cose",
    "bad_header": "bad_header",
    "unsupported_alg": "bad_header",
    "unknown_kid": "unknown_kid",
    "bad_signature": "bad_signature",
}


class CommandError(ValueError):
    """A command was rejected; `.reason` is one of REASONS, `.cid` the command id when known."""

    def __init__(self, reason: str, detail: str = "", cid: str | None = None) -> None:
        assert reason in REASONS, reason
        self.reason, self.detail, self.cid = reason, detail, cid
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Command(NamedTuple):
    cid: str
    kind: str
    iat: int
    exp: int
    to: str
    args: dict[str, Any]
    operator: str  # the [trust.operators.NAME] whose key signed it
    kid: bytes


@dataclass(frozen=True)
class Operator:
    name: str
    public_key: bytes  # raw 32-byte Ed25519
    allow: frozenset[str] | None  # None = every kind ("*")

    def allows(self, kind: str) -> bool:
        return self.allow is None or kind in self.allow


@dataclass
class Trust:
    """Who may command this cabinet: operator keys by key id, with their allowed kinds."""

    operators: list[Operator] = field(default_factory=list)
    max_skew_s: int = DEFAULT_SKEW_S
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S

    def __post_init__(self) -> None:
        self._by_kid: dict[bytes, tuple[Operator, Ed25519PublicKey]] = {}
        for op in self.operators:
            pub = Ed25519PublicKey.from_public_bytes(op.public_key)
            self._by_kid[cose.key_id(pub)] = (op, pub)

    def lookup(self, kid: bytes) -> tuple[Operator, Ed25519PublicKey] | None:
        return self._by_kid.get(kid)


# ---------------------------------------------------------------------- arguments


@dataclass(frozen=True)
class Arg:
    """One argument of a command kind: type is bool, int, number, str or list[str]."""

    type: str
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    max_len: int = 256  # str length / list length

    def check(self, name: str, v: Any) -> str | None:
        t = self.type
        if t == "bool":
            ok = isinstance(v, bool)
        elif t == "int":
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif t == "number":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        elif t == "str":
            ok = isinstance(v, str) and len(v) <= self.max_len
        elif t == "list[str]":
            ok = isinstance(v, list) and len(v) <= self.max_len and all(isinstance(x, str) and len(x) <= 256 for x in v)
        else:
            raise ValueError(f"unknown argument type {t!r}")
        if not ok:
            return f"{name}: must be {t}" + (f" (at most {self.max_len})" if t in ("str", "list[str]") else "")
        if self.choices is not None and v not in self.choices:
            return f"{name}: {v!r} is not one of {', '.join(map(str, self.choices))}"
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            return f"{name}: {v!r} is out of range {self.min}..{self.max}"
        return None


Schema = Mapping[str, Arg]


def check_args(args: Any, schema: Schema | None) -> dict[str, Any]:
    """Arguments against a kind's schema (None: anything goes, for kinds that check themselves)."""
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise CommandError("bad_args", "the payload must be a msgpack map with text keys")
    if schema is None:
        return args
    unknown = sorted(set(args) - set(schema))
    if unknown:
        raise CommandError(
            "bad_args", f"unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(schema) or 'none'}"
        )
    for name, arg in schema.items():
        if name not in args:
            if arg.required:
                raise CommandError("bad_args", f"{name}: required")
            continue
        msg = arg.check(name, args[name])
        if msg:
            raise CommandError("bad_args", msg)
    return args


# ---------------------------------------------------------------------- topics


def command_topic(prefix: str, cabinet: str, kind: str) -> str:
    check_kind(kind)
    return cose.cabinet_topic(prefix, cabinet, f"cmd/{kind}")


def reply_topic(prefix: str, cabinet: str, kind: str) -> str:
    """Where the cabinet replies to a `kind` command: `<command topic>/resp` (the fleet ACL's reply topic)."""
    return command_topic(prefix, cabinet, kind) + "/resp"


def topic_filter(prefix: str, cabinet: str) -> str:
    return cose.cabinet_topic(prefix, cabinet, "cmd/#")


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        raise ValueError(f"command kind {kind!r}: lowercase words separated by '.', e.g. light.override")
    return kind


def topic_kind(topic: str, prefix: str, cabinet: str) -> str | None:
    """The kind of a command topic of this cabinet, or None (a reply topic, another cabinet, junk)."""
    head = f"{prefix}/cab/{cabinet}/cmd/"
    if not isinstance(topic, str) or not topic.startswith(head):
        return None
    kind = topic[len(head) :]
    return kind if KIND_RE.fullmatch(kind) else None


# ---------------------------------------------------------------------- operator side


def sign_command(
    kind: str,
    args: Mapping[str, Any],
    *,
    key: Ed25519PrivateKey,
    cid: str,
    iat: int,
    exp: int,
    to: str,
    topic: str,
) -> bytes:
    """The operator's envelope for one cabinet topic (a group command: call once per cabinet topic)."""
    check_kind(kind)
    if not CID_RE.fullmatch(cid):
        raise ValueError(f"cid {cid!r}: 1..{MAX_CID} printable ASCII characters without spaces")
    if not topic.endswith(f"/cmd/{kind}"):
        raise ValueError(f"topic {topic!r} is not a command topic for {kind}")
    payload = msgpack.packb(dict(args), use_bin_type=True)
    env = cose.sign1(
        payload,
        key=key,
        kid=cose.key_id(key.public_key()),
        headers={"cid": cid, "kind": kind, "iat": int(iat), "exp": int(exp), "to": to},
        aad=topic.encode(),
    )
    if not canonical_header(env):  # cannot happen with these labels; a cabinet would refuse it
        raise ValueError("the envelope's protected header is not deterministically encoded")
    return env


# ---------------------------------------------------------------------- cabinet side: verification


def _unpack(payload: bytes) -> Any:
    return msgpack.unpackb(
        payload,
        raw=False,
        strict_map_key=True,
        max_str_len=65536,
        max_bin_len=65536,
        max_array_len=4096,
        max_map_len=256,
        max_ext_len=0,
    )


def verify_command(
    data: Any,
    *,
    topic: str,
    cabinet: str,
    tags: tuple[str, ...] | frozenset[str],
    trust: Trust,
    now: float | None,
    replay: CommandReplay | None,
    schema: Callable[[str], Schema | None] | None = None,
    clock_free: Callable[[str], bool] = lambda kind: False,
    max_size: int = MAX_COMMAND,
) -> Command:
    """Verify an envelope received on `topic` by cabinet `cabinet` -> Command; raises CommandError.
    `now` is the trusted wall clock, or None when the clock is unknown. `schema(kind)` gives the
    argument schema (None: unchecked). On success the command id is recorded in `replay`."""
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > max_size:
        raise CommandError("too_large", f"{len(data)} bytes; at most {max_size}")
    if not canonical_header(data):
        raise CommandError("bad_header", "the protected header is not deterministically encoded (RFC 8949 §4.2.1)")
    signed, operator = _open(data, topic, trust, max_size)
    h = _Headers.of(signed.headers, topic, cabinet, trust)
    if not operator.allows(h.kind):
        raise CommandError("kind_not_allowed", f"operator {operator.name} may not send {h.kind}", h.cid)
    _check_target(h, cabinet, tags)
    _check_time(h, now, trust, clock_free)
    try:
        args = _unpack(signed.payload)
    except Exception as e:  # noqa: BLE001 - msgpack raises several types; the payload is signed but still checked
        raise CommandError("bad_args", f"payload is not msgpack: {type(e).__name__}", h.cid) from None
    try:
        args = check_args(args, schema(h.kind) if schema is not None else None)
    except CommandError as e:
        e.cid = h.cid
        raise
    if replay is not None:
        replay.accept(h.cid, h.exp, now)
    return Command(h.cid, h.kind, h.iat, h.exp, h.to, args, operator.name, signed.kid)


def _open(data: Any, topic: str, trust: Trust, max_size: int) -> tuple[cose.Signed, Operator]:
    """The envelope's signature checked with the key of the operator it names -> (signed, operator)."""
    found: list[Operator] = []

    def keys(kid: bytes) -> Ed25519PublicKey | None:
        hit = trust.lookup(kid)
        if hit is None:
            return None
        found.append(hit[0])
        return hit[1]

    try:
        signed = cose.verify1(data, aad=topic.encode(), keys=keys, max_size=max_size)
    except cose.VerifyError as e:
        raise CommandError(_COSE_REASON[e.reason], e.detail) from None
    return signed, found[-1]


class _Headers(NamedTuple):
    cid: str
    kind: str
    iat: int
    exp: int
    to: str

    @classmethod
    def of(cls, h: Mapping[str, Any], topic: str, cabinet: str, trust: Trust) -> _Headers:
        """The protected headers checked (types, kind against the topic, no others, the lifetime).
        A bad_header rejection carries no cid: a header that fails these checks is not a command
        whose id could be trusted (the reply's cid is null; the operator matches by correlation data)."""
        cid, kind, to = h.get("cid"), h.get("kind"), h.get("to")
        if not isinstance(cid, str) or not CID_RE.fullmatch(cid):
            raise CommandError("bad_header", f"cid must be 1..{MAX_CID} printable ASCII characters")
        iat, exp = _epoch_s(h.get("iat"), "iat"), _epoch_s(h.get("exp"), "exp")
        if not isinstance(to, str) or not to:
            raise CommandError("bad_header", "to must be a cabinet id or group:<tag>")
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind) or not topic.endswith(f"/cab/{cabinet}/cmd/{kind}"):
            raise CommandError("bad_header", f"kind {kind!r} does not match the topic {topic!r}")
        extra = sorted(set(h) - {"cid", "kind", "iat", "exp", "to"})
        if extra:
            raise CommandError("bad_header", f"unexpected header(s) {', '.join(extra)}")
        if exp <= iat or exp - iat > trust.max_lifetime_s:
            raise CommandError("bad_header", f"lifetime exp - iat = {exp - iat} s; must be 1..{trust.max_lifetime_s}")
        return cls(cid, kind, iat, exp, to)


def _check_target(h: _Headers, cabinet: str, tags: tuple[str, ...] | frozenset[str]) -> None:
    if h.to.startswith(GROUP_PREFIX):
        if h.to[len(GROUP_PREFIX) :] not in tags:
            raise CommandError("wrong_target", f"{h.to}: this cabinet's tags are {', '.join(tags) or 'none'}", h.cid)
    elif h.to != cabinet:
        raise CommandError("wrong_target", f"for {h.to}, this is {cabinet}", h.cid)


def _check_time(h: _Headers, now: float | None, trust: Trust, clock_free: Callable[[str], bool]) -> None:
    """iat and exp against the trusted clock; with the clock unknown only clock-free kinds pass."""
    if now is None:
        if not clock_free(h.kind):
            raise CommandError(
                "clock_unknown", f"the cabinet's clock is not trusted; {h.kind} needs a checked expiry", h.cid
            )
        return
    if h.iat > now + trust.max_skew_s:
        raise CommandError(
            "not_yet_valid", f"issued {h.iat - now:.0f} s in the future (skew {trust.max_skew_s} s)", h.cid
        )
    if h.exp < now - trust.max_skew_s:
        raise CommandError("expired", f"expired {now - h.exp:.0f} s ago (skew {trust.max_skew_s} s)", h.cid)


def _epoch_s(v: Any, name: str) -> int:
    """A header's epoch seconds (iat, exp): an int in 0..2^63-1, else CommandError bad_header."""
    if type(v) is not int or not 0 <= v < 2**63:
        raise CommandError("bad_header", f"{name} must be an int (epoch seconds)")
    return v


class CommandReplay:
    """Command ids accepted so far, each remembered until its expiry (plus the skew): a
    command is accepted at most once. Bounded: when `max_entries` unexpired ids are held,
    new commands are refused (`replay_full`) rather than forgetting an id that could then be
    replayed. `to_dict`/`from_dict` persist it (agent/statefile.py, state/commands.json)."""

    FORMAT = 1

    def __init__(self, max_entries: int = DEFAULT_REPLAY_ENTRIES, skew_s: int = DEFAULT_SKEW_S) -> None:
        self.max_entries = max_entries
        self.skew_s = skew_s
        self.ids: dict[str, int] = {}  # cid -> exp

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, cid: str) -> bool:
        return cid in self.ids

    def prune(self, now: float | None) -> int:
        """Forget ids whose command expired more than the skew ago (no pruning while the clock is unknown)."""
        if now is None:
            return 0
        gone = [c for c, exp in self.ids.items() if exp < now - self.skew_s]
        for c in gone:
            del self.ids[c]
        return len(gone)

    def accept(self, cid: str, exp: int, now: float | None) -> None:
        if cid in self.ids:
            raise CommandError("replayed", f"command {cid} was accepted before", cid)
        if len(self.ids) >= self.max_entries:
            self.prune(now)
            if len(self.ids) >= self.max_entries:
                raise CommandError("replay_full", f"{len(self.ids)} unexpired command ids remembered", cid)
        self.ids[cid] = exp

    def release(self, cid: str) -> None:
        """Forget an id accepted by verify_command whose command then did not run (`busy`,
        `unknown_kind`): a re-send with the same id runs it once."""
        self.ids.pop(cid, None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.FORMAT, "ids": dict(self.ids)}

    @classmethod
    def from_dict(
        cls, data: Any, now: float | None, max_entries: int = DEFAULT_REPLAY_ENTRIES, skew_s: int = DEFAULT_SKEW_S
    ) -> CommandReplay:
        """Validated; entries that are not (short text, int) are dropped; expired ones pruned."""
        r = cls(max_entries, skew_s)
        if (
            not isinstance(data, Mapping)
            or data.get("format") != cls.FORMAT
            or not isinstance(data.get("ids"), Mapping)
        ):
            raise ValueError("not a command replay memory (format 1)")
        for cid, exp in data["ids"].items():
            if isinstance(cid, str) and CID_RE.fullmatch(cid) and type(exp) is int:
                r.ids[cid] = exp
        r.prune(now)
        return r
