"""Power-cut-safe records in the node's flash: two slots, a sequence number and a CRC.

A record is  b"PN" | kind (1) | seq (4, big-endian) | length (1) | payload | CRC-16 (2).
`save` writes the slot that does NOT hold the newest valid record, with seq + 1; `load`
reads both slots and takes the valid one with the higher seq. A power cut while writing
tears at most the slot being written, so the node boots with the old record or the new
one, never garbage. Wear: a record is written only when its content changed, and the two
slots share the writes.

`flash` is a Flash: on the board hw_store.FileFlash, in tests a memory fake that can cut
the power mid-write.
"""

from . import rtu

MAGIC = b"PN"
HEADER = 8  # magic 2, kind 1, seq 4, length 1
SETTINGS = 1
COUNTERS = 2


def encode(kind: int, seq: int, words: list[int]) -> bytes:
    body = bytearray(MAGIC)
    body.append(kind)
    body.extend(bytes(((seq >> 24) & 0xFF, (seq >> 16) & 0xFF, (seq >> 8) & 0xFF, seq & 0xFF)))
    body.append(2 * len(words))
    for w in words:
        body.append((w >> 8) & 0xFF)
        body.append(w & 0xFF)
    return rtu.with_crc(body)


def decode(kind: int, data: bytes | None) -> tuple[int, list[int]] | None:
    """(seq, words) of a valid record of `kind`, None for anything else (torn, rotten, empty)."""
    if data is None or len(data) < HEADER + 2 or data[:2] != MAGIC or data[2] != kind:
        return None
    n = data[7]
    if n % 2 or len(data) != HEADER + n + 2 or not rtu.crc_ok(data):
        return None
    seq = (data[3] << 24) | (data[4] << 16) | (data[5] << 8) | data[6]
    return seq, [(data[HEADER + 2 * i] << 8) | data[HEADER + 2 * i + 1] for i in range(n // 2)]


class Flash:
    """Named blobs in the node's flash."""

    def read(self, name: str) -> bytes | None:
        raise NotImplementedError

    def write(self, name: str, data: bytes) -> None:
        raise NotImplementedError


class Store:
    """One kind of record in two slots `<name>.a` and `<name>.b`."""

    def __init__(self, flash: Flash, name: str, kind: int) -> None:
        self.flash = flash
        self.slots = (name + ".a", name + ".b")
        self.kind = kind
        self.seq = 0
        self.current = -1  # slot index of the newest valid record, -1: none
        self.words: list[int] | None = None
        self.writes = 0

    def candidates(self) -> list[tuple[int, list[int], int]]:
        """The valid records as (seq, words, slot), newest first."""
        found = []
        for index in (0, 1):
            try:
                data = self.flash.read(self.slots[index])
            except OSError:
                data = None
            rec = decode(self.kind, data)
            if rec is not None:
                found.append((rec[0], rec[1], index))
        if len(found) == 2 and found[1][0] > found[0][0]:
            found.reverse()
        return found

    def use(self, record: tuple[int, list[int], int]) -> list[int]:
        """Take `record` (one of `candidates()`) as the current one; its words."""
        self.seq, self.words, self.current = record[0], list(record[1]), record[2]
        return list(record[1])

    def load(self) -> list[int] | None:
        """The newest valid record's words, None if neither slot holds one."""
        found = self.candidates()
        return self.use(found[0]) if found else None

    def save(self, words: list[int]) -> bool:
        """Write `words` as the new record unless it equals the current one; True if written."""
        if self.words is not None and list(words) == self.words:
            return False
        target = 1 - self.current if self.current >= 0 else 0
        seq = (self.seq + 1) & 0xFFFFFFFF
        self.flash.write(self.slots[target], encode(self.kind, seq, words))
        self.seq, self.words, self.current = seq, list(words), target
        self.writes += 1
        return True
