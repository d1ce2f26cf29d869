"""The cabinet's side of the point catalogue (docs/batch-format.md §8): which catalogue its
batches name, when to send a catalogue, and which body format to seal.

* The current catalogue is kept as a file `<dir>/<id hex>.cbor` (written before any batch
  names it, atomically), and so are the last KEEP earlier ones: a batch sealed under an old
  catalogue stays in the outbox until acknowledged, and the ingest may ask for its catalogue.
* It is sent on connect until the ingest acknowledges it, and again while unacknowledged
  after 5, 10, 20 ... s, at most every `resend_s` (the uplink's ack timeout): an ingest that
  was not listening yet gets it soon, one that is down costs little. When the ingest asks
  for one (a v2 batch named a catalogue it does not hold) that one is sent at once.
* Batches are sealed as version 2 once the current catalogue is acknowledged in this
  process's life, as version 1 before that (the ingest takes both).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.model import Reading
from agent.wire.batch import encode_body
from agent.wire.batch_v2 import encode_v2
from agent.wire.catalogue import Catalogue, catalogue_id, encode, ref_of
from agent.wire.catalogue_seal import CatalogueReply, seal_catalogue

log = logging.getLogger("agent.uplink")
KEEP = 32  # catalogue files kept besides the current one
FIRST_RESEND_S = 5.0  # an unacknowledged catalogue goes again after 5, 10, 20 ... s, at most resend_s


class CatalogueSender:
    def __init__(self, *, cabinet: str, key: Any, kid: bytes, topic: str) -> None:
        self.cabinet, self.key, self.kid, self.topic = cabinet, key, kid, topic
        self.current: Catalogue | None = None
        self.id: bytes | None = None
        self.ref: bytes | None = None
        self.naming: tuple[bytes, dict[str, int]] | None = None  # (ref, index): read by seal in one go
        self.dir: Path | None = None
        self.acked: set[bytes] = set()  # refs the ingest acknowledged (this process's life)
        self.due: dict[bytes, float | None] = {}  # ref -> monotonic time last sent (None: now)
        self.tries: dict[bytes, int] = {}  # ref -> sends since it became due
        self.requested = False  # the ingest asked for a catalogue: batches it refused wait for the ack
        self.stats = {"catalogues_sent": 0, "catalogue_bytes_sent": 0, "catalogues_acked": 0, "catalogue_requests": 0}

    def set(self, catalogue: Catalogue, directory: Path) -> None:
        """Use `catalogue` from now on; its file is written before this returns."""
        body = encode(catalogue)
        cid = catalogue_id(body)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{cid.hex()}.cbor"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
            self._prune(directory, path)
        self.current, self.id, self.ref, self.dir = catalogue, cid, ref_of(cid), directory
        self.naming = (self.ref, catalogue.index())  # one assignment: sealing (another thread) sees both or neither
        self.due[self.ref] = None
        self.tries.pop(self.ref, None)

    def _prune(self, directory: Path, keep: Path) -> None:
        old = sorted((p for p in directory.glob("*.cbor") if p != keep), key=lambda p: p.stat().st_mtime)
        for p in old[: max(0, len(old) - KEEP)]:
            p.unlink(missing_ok=True)

    def body(self, readings: Sequence[Reading]) -> bytes:
        """A batch body: version 2 naming the current catalogue once it is acknowledged, else version 1."""
        naming = self.naming
        if naming is not None and naming[0] in self.acked:
            return encode_v2(readings, ref=naming[0], index=naming[1])
        return encode_body(readings)

    def on_connect(self) -> None:
        if self.ref is not None and self.ref not in self.acked:
            self.due[self.ref] = None
            self.tries.pop(self.ref, None)

    def envelope(self, ref: bytes) -> bytes | None:
        """The sealed catalogue `ref` names (from its file), or None when it is not kept."""
        if self.dir is None:
            return None
        found = sorted(self.dir.glob(f"{ref.hex()}*.cbor"))
        if not found:
            return None
        try:
            body = found[0].read_bytes()
        except OSError as e:
            log.error("catalogue %s cannot be read: %s", found[0], e)
            return None
        return seal_catalogue(body, key=self.key, kid=self.kid, cabinet=self.cabinet, topic=self.topic)

    def to_send(self, now: float, resend_s: float) -> list[tuple[bytes, bytes]]:
        """(ref, envelope) of the catalogues to publish now; marks them sent at `now`."""
        out = []
        for ref, last in list(self.due.items()):
            wait = min(resend_s, FIRST_RESEND_S * 2 ** (self.tries.get(ref, 1) - 1))
            if last is not None and now - last < wait:
                continue
            env = self.envelope(ref)
            if env is None:
                log.error("the ingest needs catalogue %s, which this cabinet no longer keeps", ref.hex())
                del self.due[ref]
                continue
            self.due[ref] = now
            self.tries[ref] = self.tries.get(ref, 0) + 1
            out.append((ref, env))
        self.stats["catalogues_sent"] += len(out)
        return out

    def reply(self, r: CatalogueReply) -> bool:
        """Apply the ingest's reply; True when a catalogue was acknowledged after the ingest had
        asked for one (the batches it refused for want of it can go again at once)."""
        if r.acked is not None:
            ref = ref_of(r.acked)
            self.acked.add(ref)
            self.due.pop(ref, None)
            self.tries.pop(ref, None)
            self.stats["catalogues_acked"] += 1
            again, self.requested = self.requested, False
            return again
        if r.need is not None:
            self.stats["catalogue_requests"] += 1
            self.requested = True
            self.acked.discard(r.need)
            self.due.setdefault(r.need, None)  # once: every refused batch in flight asks again
        return False
