"""Modbus RTU framing, CRC and wire time: pure helpers for the simulated RS-485 line.

* CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001), sent low byte first.
* Wire time: a character is 11 bits on the wire (start + 8 data + parity + stop, or
  no parity + 2 stop; Modbus RTU's nominal character), so `wire_time(n, baud) =
  n * 11 / baud`. t3.5 = 3.5 characters, fixed 1.75 ms above 19200 baud.
* Frame lengths of requests and replies from their function code (what a slave and
  a master do in practice), `None` when more bytes are needed or the function code
  has no fixed layout (then only a silence of t3.5 ends the frame).
* `RequestFramer`: bytes as they arrive (with their arrival time) -> frames with the
  wire time of their first and last character. Bytes that reach the pty faster than
  the line could carry them are serialized at the baud rate, so two frames written
  back to back get back-to-back wire times.

No I/O, no clock: times are parameters.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CHAR_BITS = 11
MAX_ADU = 256

READ_FCS = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
# Function codes the simulated devices (pymodbus 3.16's server) answer; for any other
# the line/endpoint answers exception 1 itself (pymodbus would stay silent and keep the
# bytes in its buffer, where they swallow the next request).
SUPPORTED_FCS = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43))


def _table() -> list[int]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return out


_CRC_TABLE = _table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of `data` as a number (append it low byte first)."""
    crc = 0xFFFF
    tbl = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ tbl[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """`body` + its CRC, low byte first."""
    return bytes(body) + crc16(body).to_bytes(2, "little")


def crc_ok(frame: bytes | bytearray) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def char_time(baudrate: int) -> float:
    """Seconds one character takes on the wire."""
    return CHAR_BITS / baudrate


def wire_time(nbytes: int, baudrate: int) -> float:
    return nbytes * CHAR_BITS / baudrate


def t35(baudrate: int) -> float:
    """Inter-frame silence: 3.5 characters, fixed 1.75 ms above 19200 baud."""
    return 0.00175 if baudrate > 19200 else 3.5 * CHAR_BITS / baudrate


def request_length(buf: bytes | bytearray) -> int | None:
    """Length of the request frame at the start of `buf` (unit + PDU + CRC), or None
    when more bytes are needed or the function code has no fixed layout."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if 1 <= fc <= 6 or fc == 8:
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    if fc in (7, 11, 12, 17):
        return 4
    if fc == 22:
        return 10
    if fc == 23:
        return 13 + buf[10] if len(buf) >= 11 else None
    if fc == 24:
        return 6
    if fc == 43:
        return 7
    return None


def reply_length(buf: bytes | bytearray) -> int | None:
    """Length of the reply frame at the start of `buf`, or None (need more / unknown)."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc & 0x80:
        return 5
    if 1 <= fc <= 4 or fc in (12, 17, 23):
        return 5 + buf[2] if len(buf) >= 3 else None
    if fc in (5, 6, 8, 11, 15, 16):
        return 8
    if fc == 7:
        return 5
    if fc == 22:
        return 10
    if fc == 24:
        return 6 + int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else None
    return None


def exception_frame(unit: int, fc: int, code: int) -> bytes:
    """An RTU exception reply: unit, fc | 0x80, code, CRC."""
    return with_crc(bytes((unit & 0xFF, (fc | 0x80) & 0xFF, code & 0xFF)))


@dataclass(frozen=True, slots=True)
class Request:
    """What a request PDU (function code + data) asks for, for the FCs a store serves."""

    fc: int
    table: str  # coil / discrete / holding / input
    address: int
    count: int
    write: bool
    values: tuple[int, ...] | tuple[bool, ...] = ()


def parse_request(pdu: bytes | bytearray) -> Request | int | None:
    """Decode a request PDU for FC 1-6, 15, 16.

    Returns a Request; an int exception code when the request is malformed the way a
    device answers with exception 3 (quantity out of range, byte count mismatch, coil
    value not 0x0000/0xFF00) or its function code is not supported (1); None for the
    other supported function codes (the server decides).
    """
    if not pdu:
        return None
    fc = pdu[0]
    if fc not in SUPPORTED_FCS:
        return 1
    try:
        if fc in READ_FCS:
            address, count = struct.unpack_from(">HH", pdu, 1)
            limit = 2000 if fc <= 2 else 125
            if not 1 <= count <= limit:
                return 3
            return Request(fc, READ_FCS[fc], address, count, False)
        if fc == 5:
            address, value = struct.unpack_from(">HH", pdu, 1)
            if value not in (0x0000, 0xFF00):
                return 3
            return Request(fc, "coil", address, 1, True, (value == 0xFF00,))
        if fc == 6:
            address, value = struct.unpack_from(">HH", pdu, 1)
            return Request(fc, "holding", address, 1, True, (value,))
        if fc == 15:
            address, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
            data = pdu[6:]
            if not 1 <= count <= 1968 or nbytes != (count + 7) // 8 or len(data) != nbytes:
                return 3
            bits = tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))
            return Request(fc, "coil", address, count, True, bits)
        if fc == 16:
            address, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
            data = pdu[6:]
            if not 1 <= count <= 123 or nbytes != 2 * count or len(data) != nbytes:
                return 3
            return Request(fc, "holding", address, count, True, struct.unpack(f">{count}H", data))
    except struct.error:
        return 3
    return None


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame as the line carried it: bytes, wire time of its first character's
    start and of its last character's end, and whether its length was known (False:
    it ended by silence or was cut off)."""

    data: bytes
    start: float
    end: float
    complete: bool = True


class RequestFramer:
    """Cuts the byte stream a master sends into request frames.

    `feed(data, now)` -> frames completed by these bytes. Bytes are put on a virtual
    wire at the baud rate: a chunk arriving at `now` starts at max(now, end of the
    previous chunk). A frame ends at its length from the function code; with an
    unknown layout it ends by a silence of t3.5, which the caller polls with
    `deadline()` / `flush(now)`. A gap of more than t3.5 inside a partial frame also
    ends it (the partial frame is returned with complete=False).
    """

    def __init__(self, baudrate: int) -> None:
        self.baudrate = baudrate
        self.char = char_time(baudrate)
        self.t35 = t35(baudrate)
        self._buf = bytearray()
        self._start = 0.0  # wire start of the first byte in _buf
        self.wire_end = float("-inf")  # wire end of the last byte fed

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes, now: float) -> list[Frame]:
        out: list[Frame] = []
        begin = max(now, self.wire_end)
        if self._buf and begin - self.wire_end > self.t35:
            out.append(self._take(len(self._buf), complete=False))
        if not self._buf:
            self._start = begin
        self._buf += data
        self.wire_end = begin + len(data) * self.char
        while self._buf:
            n = request_length(self._buf)
            if n is None or len(self._buf) < n:
                if len(self._buf) >= MAX_ADU:
                    out.append(self._take(len(self._buf), complete=False))
                break
            out.append(self._take(n, complete=True))
        return out

    def deadline(self) -> float | None:
        """When the pending partial frame ends by silence, or None."""
        return self.wire_end + self.t35 if self._buf else None

    def flush(self, now: float) -> Frame | None:
        """The pending bytes as a frame if the line has been silent for t3.5."""
        if self._buf and now >= self.wire_end + self.t35:
            return self._take(len(self._buf), complete=request_length(self._buf) == len(self._buf))
        return None

    def reset(self) -> None:
        self._buf.clear()
        self.wire_end = float("-inf")

    def _take(self, n: int, complete: bool) -> Frame:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        start = self._start
        end = start + n * self.char
        self._start = end
        return Frame(data, start, end, complete)
