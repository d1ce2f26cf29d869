"""One simulated cabinet of the fleet: what it sends and what it does with the ingest's
answers, exactly as the agent does it, without I/O (the node process does the MQTT).

* its own identity: cabinet id, Ed25519 key (registered at the ingest), kid;
* its point catalogue (tools/fleet/profiles.py -> agent/wire/catalogue.py), sealed and sent
  on connect until the ingest acknowledges it; batches are sealed as format v1 until then and
  as v2 after (agent/uplink/catalogue_sender.py does the same);
* sequence numbers reserved in blocks of SEQ_BLOCK (agent/outbox/store.py): a reboot skips
  the rest of the block, as a restarted agent does;
* every batch stays pending until an ack names its seq; pending batches are sent again,
  byte-identical, after `ack_timeout_s`, and at once when the ingest acknowledges a catalogue
  it had asked for (the v2 batches it refused meanwhile);
* the ledger (`made`) lists every batch made: (seq, number of readings) — what the run
  verifies against the ingest's rows at the end.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.outbox.store import SEQ_BLOCK
from agent.wire import cose
from agent.wire.batch import encode_body
from agent.wire.batch_v2 import encode_v2
from agent.wire.catalogue import Site, build, catalogue_id, encode, ref_of
from agent.wire.catalogue_seal import open_reply, seal_catalogue
from tools.fleet.profiles import Profile

SITE = Site(52.52, 13.405, "Europe/Berlin")
KEEP_RECENT = 64


@dataclass
class Sent:
    payload: bytes
    readings: int
    sent_at: float


@dataclass
class Counters:
    batches: int = 0
    readings: int = 0
    sends: int = 0  # publishes of batches, re-sends included
    resends: int = 0
    acks: int = 0
    bad_acks: int = 0
    catalogue_sends: int = 0
    catalogue_requests: int = 0
    reboots: int = 0
    injected: int = 0  # duplicates and replays sent on purpose

    def add(self, other: Counters) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class VirtualCabinet:
    cabinet: str
    key: Ed25519PrivateKey
    profile: Profile
    ingest_key: Ed25519PublicKey
    now: float  # wall time at the start: the first batch's readings begin here
    prefix: str = cose.DEFAULT_PREFIX
    seed: int = 0
    boot: int = 1
    pending: dict[int, Sent] = field(default_factory=dict)
    made: list[tuple[int, int]] = field(default_factory=list)  # (seq, readings) of every batch made
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.kid = cose.key_id(self.key.public_key())
        self.topic = cose.telemetry_topic(self.prefix, self.cabinet)
        self.ack_topic = cose.ack_topic(self.prefix, self.cabinet)
        self.ingest_kid = cose.key_id(self.ingest_key)
        self.rng = random.Random(f"{self.seed}:{self.cabinet}")
        cat = build(self.cabinet, "sim", 0, SITE, self.profile.catalogue_points())
        body = encode(cat)
        self.catalogue_id = catalogue_id(body)
        self.ref, self.index = ref_of(self.catalogue_id), cat.index()
        self.catalogue_msg = seal_catalogue(body, key=self.key, kid=self.kid, cabinet=self.cabinet, topic=self.topic)
        self.catalogue_acked = False
        self.state = self.profile.start(self.rng)
        self.t_last = self.now
        self.next_seq, self.seq_hi = 1, SEQ_BLOCK
        self.acked: list[int] = []  # recently acknowledged seqs (for injected duplicates)
        self.recent: dict[int, bytes] = {}  # seq -> payload of the last KEEP_RECENT batches

    def _keys(self, kid: bytes) -> Ed25519PublicKey | None:
        return self.ingest_key if kid == self.ingest_kid else None

    def _seq(self) -> int:
        if self.next_seq > self.seq_hi:
            self.seq_hi += SEQ_BLOCK
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def batch(self, t: float, mono: float) -> tuple[bytes, int] | None:
        """The readings since the last batch up to wall time `t`, sealed (payload, seq); None if
        there were none. `mono` (monotonic) times the re-sends."""
        readings = self.profile.readings(self.state, self.t_last, t, self.rng)
        self.t_last = t
        if not readings:
            return None
        if self.catalogue_acked:
            body = encode_v2(readings, ref=self.ref, index=self.index)
        else:
            body = encode_body(readings)
        seq = self._seq()
        payload = cose.seal_batch(
            body, key=self.key, kid=self.kid, cabinet=self.cabinet, boot=self.boot, seq=seq, topic=self.topic
        )
        self.pending[seq] = Sent(payload, len(readings), mono)
        self.recent[seq] = payload  # the last KEEP_RECENT, for injected duplicates and replays
        if len(self.recent) > KEEP_RECENT:
            del self.recent[next(iter(self.recent))]
        self.made.append((seq, len(readings)))
        self.counters.batches += 1
        self.counters.readings += len(readings)
        self.counters.sends += 1
        return payload, seq

    def due_again(self, now: float, ack_timeout_s: float) -> list[bytes]:
        """Pending batches sent `ack_timeout_s` or longer before monotonic `now`, to send
        again (byte-identical)."""
        out = []
        for sent in self.pending.values():
            if now - sent.sent_at >= ack_timeout_s:
                sent.sent_at = now
                out.append(sent.payload)
        self.counters.resends += len(out)
        self.counters.sends += len(out)
        return out

    def next_resend(self, ack_timeout_s: float) -> float:
        """Monotonic time of the next re-send (inf: nothing pending)."""
        return min((s.sent_at + ack_timeout_s for s in self.pending.values()), default=math.inf)

    def on_connect(self) -> list[bytes]:
        """What to send on (re)connect: the catalogue until acknowledged."""
        if self.catalogue_acked:
            return []
        self.counters.catalogue_sends += 1
        return [self.catalogue_msg]

    def on_ack_topic(self, payload: bytes, now: float) -> list[bytes]:
        """An ack or a catalogue reply at monotonic `now`; returns what to send now (the
        catalogue, re-sends)."""
        try:
            ack = cose.open_ack(payload, topic=self.ack_topic, keys=self._keys)
        except cose.VerifyError as e:
            if e.reason != "bad_payload":
                self.counters.bad_acks += 1
                return []
        else:
            self.counters.acks += 1
            for seq in ack.seqs:
                if self.pending.pop(seq, None) is not None:
                    self.acked = [*self.acked[1 - KEEP_RECENT :], seq]
            return []
        try:
            reply = open_reply(payload, topic=self.ack_topic, keys=self._keys)
        except cose.VerifyError:
            self.counters.bad_acks += 1
            return []
        if reply.need is not None:  # it refused a v2 batch for want of our catalogue
            self.counters.catalogue_requests += 1
            self.counters.catalogue_sends += 1
            return [self.catalogue_msg]
        if reply.acked == self.catalogue_id and not self.catalogue_acked:
            self.catalogue_acked = True
            again = [s.payload for s in self.pending.values()]
            for s in self.pending.values():
                s.sent_at = now
            self.counters.resends += len(again)
            self.counters.sends += len(again)
            return again
        return []

    def reboot(self) -> None:
        """A restarted agent: a new boot, the rest of the seq block skipped, the catalogue
        sent again on connect; pending batches survive (the outbox is durable)."""
        self.boot += 1
        self.next_seq = self.seq_hi + 1
        self.seq_hi = self.next_seq + SEQ_BLOCK - 1
        self.catalogue_acked = False
        self.counters.reboots += 1

    def injected(self) -> bytes | None:
        """A batch the ingest already acknowledged, sent again on purpose (a duplicate or,
        later, a replay): the ingest must store it once and acknowledge it again."""
        if not self.acked:
            return None
        self.counters.injected += 1
        seq = self.rng.choice(self.acked)
        return self.recent.get(seq)


def counters_of(cabinets: list[VirtualCabinet]) -> dict[str, Any]:
    total = Counters()
    for c in cabinets:
        total.add(c.counters)
    return vars(total)
