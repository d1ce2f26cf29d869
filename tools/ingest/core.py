"""The ingest's decisions for one message: verify, check the key belongs to the
cabinet, dedupe, decode — recorded into a Commit that the service writes in one
transaction with others before it acknowledges them. No MQTT here.

Outcomes: "stored" (new, acknowledge after commit), "duplicate" (stored before:
acknowledge again so the cabinet can delete it), "rejected" (counted by reason,
never acknowledged), "catalogue" (a point catalogue, stored with the group and
acknowledged after the commit), "need_catalogue" (a format v2 batch naming a catalogue
this ingest does not hold: not stored, not acknowledged, the replay window untouched;
the service asks the cabinet for the catalogue, and the cabinet sends the batch again).
A v2 batch is peeked at before it is stored (decompressed and unpacked, not decoded):
an index outside its catalogue is rejected "index_outside_catalogue", a body whose
indices cannot be read "bad_body" (docs/batch-format.md §8.4).

The body is not decoded here: a verified signature proves which cabinet made the
batch, and the batch is stored as received. Turning it into reading rows happens
after the ack (Store.materialize), which decodes and checks everything; a body that
fails there (only a cabinet software bug can sign one) is kept with state "bad" and
its error, and counted as rejected "bad_body" — acknowledged all the same, so the
cabinet does not re-send a batch that can never be read, forever holding one of its
unacknowledged slots. Replay windows (one per cabinet) are the fast path; a batch
older than its window is looked up in the batches table, so a late batch that was
never stored is still stored once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.wire import cose
from agent.wire.batch import BatchError
from agent.wire.batch_v2 import IndexOutside, catalogue_ref, check_indices, is_v2, peek
from agent.wire.catalogue import decode
from agent.wire.catalogue_seal import CatalogueRefused, open_catalogue
from tools.ingest.store import Commit, Store, StoredBatch, StoredCatalogue

MAX_MESSAGE = 4 * 2**20


@dataclass(frozen=True)
class Outcome:
    kind: str  # stored | duplicate | rejected | catalogue (stored, acknowledge) | need_catalogue (ask for it)
    cabinet: str | None = None
    seq: int | None = None
    reason: str | None = None
    readings: int = 0
    catalogue: bytes | None = None  # catalogue: its id; need_catalogue: the ref the batch names


class IngestCore:
    def __init__(self, store: Store, *, window_size: int = 4096, key_refresh_s: float = 5.0) -> None:
        self.store = store
        self.window_size = window_size
        self.key_refresh_s = key_refresh_s
        self._keys: dict[bytes, tuple[str, Ed25519PublicKey]] = {}
        self._keys_loaded = float("-inf")
        self._now = 0.0
        self.windows: dict[str, cose.ReplayWindow] = {}
        self.catalogues: dict[tuple[str, bytes], int] = {}  # (cabinet, ref) -> points, of catalogues held
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
        self.catalogues = {}

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
            if e.reason == "bad_header":  # not a batch's headers: a catalogue's?
                return self._catalogue(topic, payload, now, commit)
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
        if is_v2(batch.body):
            refused = self._check_v2(batch, commit)
            if refused is not None:
                return refused
        if verdict == "new":
            window.accept(batch.seq)
            commit.windows[batch.cabinet] = window.state()
        commit.batches.append(StoredBatch(batch.cabinet, batch.seq, batch.boot, batch.kid, now, 0, payload))
        return Outcome("stored", batch.cabinet, batch.seq)

    def _check_v2(self, batch: cose.Batch, commit: Commit) -> Outcome | None:
        """None when the v2 body's catalogue is held and its indices are inside it; else the
        refusal (nothing stored, no ack): need_catalogue, or rejected bad_body /
        index_outside_catalogue."""
        try:
            ref = catalogue_ref(batch.body)
            size = self._catalogue_size(batch.cabinet, ref)
            if size is None:
                commit.count("catalogue_missing")
                return Outcome("need_catalogue", batch.cabinet, batch.seq, catalogue=ref)
            check_indices(peek(batch.body), size)
        except IndexOutside:
            return self._reject(commit, "index_outside_catalogue", batch.cabinet)
        except BatchError:
            return self._reject(commit, "bad_body", batch.cabinet)
        return None

    def _catalogue_size(self, cabinet: str, ref: bytes) -> int | None:
        size = self.catalogues.get((cabinet, ref))
        if size is None:
            found = self.store.catalogue(cabinet, ref)
            if found is None:
                return None
            size = self.catalogues[cabinet, ref] = len(decode(found[1]).points)
        return size

    def _catalogue(self, topic: str, payload: bytes, now: float, commit: Commit) -> Outcome:
        """A catalogue message: verified, its hash and content checked, stored with the group."""
        try:
            cat = open_catalogue(payload, topic=topic, keys=self._lookup)
        except CatalogueRefused as e:
            return self._reject(commit, e.reason)
        owner = self._keys.get(cat.kid)
        if owner is None or owner[0] != cat.cabinet:
            return self._reject(commit, "key_not_for_cabinet", cat.cabinet)
        points = len(cat.catalogue.points)
        commit.catalogues.append(
            StoredCatalogue(cat.id, cat.cabinet, points, cat.catalogue.config_version, now, cat.body, payload)
        )
        self.catalogues[cat.cabinet, cat.id[:8]] = points
        return Outcome("catalogue", cat.cabinet, catalogue=cat.id)

    def _reject(self, commit: Commit, reason: str, cabinet: str | None = None, detail: Any = None) -> Outcome:
        commit.count(f"rejected.{reason}")
        return Outcome("rejected", cabinet, None, reason)
