"""Messages between a participant and the coordinator (a Unix stream socket), and the
shared time file.

Every message is 17 bytes: kind (u8), seq (u64), value (f64), little endian.

participant -> coordinator
    HELLO   seq = pid                     first message
    IDLE    value = wake deadline         nothing to do until then (inf: until an fd)
            seq = QUIET                   ... and wrote nothing since its last IDLE
    BUSY                                  woken by an fd before its deadline
    OK      seq = probe number            still idle when probed
coordinator -> participant
    WELCOME value = epoch                 wall time (s since 1970) at virtual START
    PROBE   seq = probe number            poll your fds once, answer OK or BUSY
    ADVANCE value = time                  your deadline has come: time is now `value`

The current virtual time is also in the time file (`<socket>.time`, one f64 at offset
0), written by the coordinator before any ADVANCE: a participant woken by an fd reads
the time there without a message.
"""

from __future__ import annotations

import struct

FORMAT = struct.Struct("<BQd")
SIZE = FORMAT.size

HELLO, IDLE, BUSY, OK, WELCOME, PROBE, ADVANCE = range(1, 8)
NAMES = {HELLO: "HELLO", IDLE: "IDLE", BUSY: "BUSY", OK: "OK", WELCOME: "WELCOME", PROBE: "PROBE", ADVANCE: "ADVANCE"}

QUIET = 1  # IDLE's seq: no send/write since the last IDLE (0: wrote, or does not say)
START = 10_000.0  # virtual monotonic time at the start: not 0, as a real monotonic clock is never 0
TIME_FILE_SUFFIX = ".time"
TIME = struct.Struct("<d")


def pack(kind: int, seq: int = 0, value: float = 0.0) -> bytes:
    return FORMAT.pack(kind, seq, value)


def unpack_all(buf: bytearray) -> list[tuple[int, int, float]]:
    """Every whole message at the start of `buf` (removed from it)."""
    n = len(buf) // SIZE
    out = [FORMAT.unpack_from(buf, i * SIZE) for i in range(n)]
    del buf[: n * SIZE]
    return out


def time_file(socket_path: str) -> str:
    return socket_path + TIME_FILE_SUFFIX
