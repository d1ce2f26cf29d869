"""The ingest's decisions for one message: verify, check the key belongs to the
cabinet, dedupe, decode — recorded into a Commit that the service writes in one
transaction with others before it acknowledges them. No MQTT here.

Outcomes: "stored" (new, acknowledge after commit), "duplicate" (stored before:
acknowledge again so the cabinet can delete it), "rejected" (counted by reason,
never acknowledged). The body is not decoded here: a verified signature proves which
cabinet made the batch, and the batch is stored as received. Turning it into reading
rows happens after the ack (Store.materialize), which decodes and checks everything;
a body that fails there (only a cabinet software bug can sign one) is kept with state
"bad" and its error, and counted as rejected "bad_body" — acknowledged all the same, so
the cabinet does not re-send a batch that can never be read, forever holding one of its
unacknowledged slots. Replay windows (one per cabinet) are the fast path; a batch
older than its window is looked up in the batches table, so a late batch that was
never stored is still stored once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.wire import cose
from tools.ingest.store import Commit, Store, StoredBatch

MAX_MESSAGE = 4 * 2**20


@dataclass(frozen=True)
class Outcome:
    kind: str  # stored | duplicate | rejected
    cabinet: str | None = None
    seq: int | None = None
    reason: str | None = None
    readings: int = 0


class IngestCore:
    def __init__(self, store: Store, *, window_size: int = 4096, key_refresh_s: float = 5.0) -> None:
        self.store = store
        self.window_size = window_size
        self.key_refresh_s = key_refresh_s
        self._keys: dict[bytes, tuple[str, Ed25519PublicKey]] = {}
        self._keys_loaded = float("-inf")
        self._now = 0.0
        self.windows: dict[str, cose.ReplayWindow] = {}
        self.reload()

    def reload(self, now: float = 0.0) -> None:
        """(Re)read keys and replay windows from the store (after a failed commit too)."""
        self._keys = {
            kid: (cab, Ed25519PublicKey.from_public_bytes(pub)) for kid, (cab, pub) in self.store.keys().items()
        }
        self._keys_loaded = now
        self.windows = {
            cab: cose.ReplayWindow.from_state(hwm, bitmap, self.window_size)
            for cab, (hwm, bitmap) in self.store.windows().items()
        }

    def _lookup(self, kid: bytes) -> Ed25519PublicKey | None:
        entry = self._keys.get(kid)
        return entry[1] if entry else self._key(kid, self._now)

    def _key(self, kid: bytes, now: float) -> Ed25519PublicKey | None:
        entry = self._keys.get(kid)
        if entry is None and now - self._keys_loaded >= self.key_refresh_s:  # a newly provisioned cabinet
            self._keys = {k: (c, Ed25519PublicKey.from_public_bytes(p)) for k, (c, p) in self.store.keys().items()}
            self._keys_loaded = now
            entry = self._keys.get(kid)
        return entry[1] if entry else None

    def handle(self, topic: str, payload: bytes, now: float, commit: Commit) -> Outcome:
        if len(payload) > MAX_MESSAGE:
            return self._reject(commit, "too_large")
        self._now = now
        try:
            batch = cose.open_batch(payload, topic=topic, keys=self._lookup)
        except cose.VerifyError as e:
            return self._reject(commit, e.reason)
        owner = self._keys.get(batch.kid)
        if owner is None or owner[0] != batch.cabinet:
            return self._reject(commit, "key_not_for_cabinet", batch.cabinet)
        window = self.windows.get(batch.cabinet)
        if window is None:
            window = self.windows[batch.cabinet] = cose.ReplayWindow(self.window_size)
        verdict = window.check(batch.seq)
        if verdict == "duplicate" or (verdict == "too_old" and self.store.has_batch(batch.cabinet, batch.seq)):
            commit.count("duplicates")
            return Outcome("duplicate", batch.cabinet, batch.seq)
        if verdict == "new":
            window.accept(batch.seq)
            commit.windows[batch.cabinet] = window.state()
        commit.batches.append(StoredBatch(batch.cabinet, batch.seq, batch.boot, batch.kid, now, 0, payload))
        return Outcome("stored", batch.cabinet, batch.seq)

    def _reject(self, commit: Commit, reason: str, cabinet: str | None = None, detail: Any = None) -> Outcome:
        commit.count(f"rejected.{reason}")
        return Outcome("rejected", cabinet, None, reason)
