"""Modbus RTU frames: CRC-16/MODBUS, the request framer (a frame ends at a silence of
3.5 characters) and the reply builders. Pure: times are parameters (microseconds).

CRC-16/MODBUS: init 0xFFFF, reflected poly 0xA001, sent low byte first.
"""

MAX_ADU = 256
BROADCAST = 0


def _crc_table() -> list[int]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return out


_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of `data` (append it low byte first)."""
    crc = 0xFFFF
    tbl = _TABLE
    for b in data:
        crc = (crc >> 8) ^ tbl[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes | bytearray) -> bytes:
    """`body` followed by its CRC, low byte first."""
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


def crc_ok(frame: bytes | bytearray) -> bool:
    if len(frame) < 4:
        return False
    return crc16(memoryview(frame)[:-2]) == frame[-2] | (frame[-1] << 8)


def char_us(baudrate: int) -> int:
    """Microseconds one 11-bit RTU character takes on the wire."""
    return (11 * 1000000 + baudrate - 1) // baudrate


def t35_us(baudrate: int) -> int:
    """The inter-frame silence: 3.5 characters, fixed 1750 µs above 19200 baud."""
    if baudrate > 19200:
        return 1750
    return (char_us(baudrate) * 7 + 1) // 2


def wire_us(nbytes: int, baudrate: int) -> int:
    return nbytes * char_us(baudrate)


def request_length(buf: bytes | bytearray) -> int:
    """The length of the request at the start of `buf` from its function code (01..06: 8;
    15, 16: 9 + byte count), 0 when it is not known (yet)."""
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if 1 <= fc <= 6:
        return 8
    if fc in (15, 16) and len(buf) >= 7:
        return 9 + buf[6]
    return 0


class Framer:
    """Bytes as they arrive (with the time they were read) -> whole frames.

    A frame ends when the line has been silent for t3.5 after its last byte, or as soon as
    the buffer holds a request of the length its function code gives with a good CRC (the
    bytes after it stay for the next frame). The silence is judged by the time bytes are
    read, which a busy loop (a garbage collection) can delay: a silence after a request
    that is still shorter than its known length is taken for such a stall, up to STALL_US;
    a longer one ends the (truncated) frame. A frame that grows past MAX_ADU bytes (a flood,
    a babbling device, noise) is dropped whole: the framer discards bytes until the next
    silence, so its memory stays bounded.
    """

    STALL_US = 20000

    def __init__(self, baudrate: int) -> None:
        self.gap_us = t35_us(baudrate)
        self.buf = bytearray()
        self.last_us = 0
        self.overrun = False
        self.dropped = 0  # frames thrown away for overrun

    def _ended(self, now_us: int) -> bool:
        """The line has been silent long enough to end the buffered frame."""
        if not self.buf and not self.overrun:
            return False
        silent = now_us - self.last_us
        if silent < self.gap_us:
            return False
        expected = 0 if self.overrun else request_length(self.buf)
        return not (expected and len(self.buf) < expected and silent < self.STALL_US)

    def feed(self, data: bytes | bytearray, now_us: int) -> bytes | None:
        """Add bytes read at `now_us`; returns the previous frame if the silence before
        these bytes ended it (bytes arriving after a gap start a new frame)."""
        done = self._finish() if self._ended(now_us) else None
        if data:
            self.last_us = now_us
            if self.overrun:
                pass
            elif len(self.buf) + len(data) > MAX_ADU:
                self.overrun = True
                self.buf = bytearray()
            else:
                self.buf.extend(data)
        return done

    def poll(self, now_us: int) -> bytes | None:
        """The next whole frame in the buffer (complete by length, or ended by silence), else None."""
        if not self.overrun:
            expected = request_length(self.buf)
            if expected and len(self.buf) >= expected:
                frame = bytes(self.buf[:expected])
                if crc_ok(frame):
                    self.buf = self.buf[expected:]
                    return frame
        if self._ended(now_us):
            return self._finish()
        return None

    def _finish(self) -> bytes | None:
        if self.overrun:
            self.overrun = False
            self.dropped += 1
            return None
        frame = bytes(self.buf)
        self.buf = bytearray()
        return frame


def exception_reply(unit: int, fc: int, code: int) -> bytes:
    return with_crc(bytes((unit, fc | 0x80, code)))


def read_reply(unit: int, fc: int, values: list[int]) -> bytes:
    body = bytearray((unit, fc, 2 * len(values)))
    for v in values:
        body.append((v >> 8) & 0xFF)
        body.append(v & 0xFF)
    return with_crc(body)


def u16(frame: bytes | bytearray, at: int) -> int:
    return (frame[at] << 8) | frame[at + 1]
