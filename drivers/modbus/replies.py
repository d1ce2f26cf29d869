"""What went wrong with a reply: pure classification of raw Modbus bytes.

pymodbus silently drops replies with a bad CRC, from the wrong unit id or cut
short, and the request then times out. The engine records the raw bytes that came
back during the transaction (pymodbus `trace_packet`) and asks this module why no
valid reply arrived, so a point's quality carries the real reason.

A frame that is addressed to the pending request (its unit id, on TCP its
transaction id) but is not the reply that request asks for is a bad frame:
`pdu_problem` and `mbap_problem` say what is wrong with it (wrong function code,
byte count, length, protocol id) before pymodbus decodes it
(drivers.modbus.framing). Also: CRC-16, RTU wire timing, exception code names.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


def exception_text(code: int) -> str:
    return f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown code')})"


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def char_time(baudrate: int, bits_per_char: int = 11) -> float:
    return bits_per_char / baudrate


def t35(baudrate: int) -> float:
    """Minimum inter-frame silence: 3.5 character times, fixed 1.75 ms above 19200 Bd."""
    return 0.00175 if baudrate > 19200 else 3.5 * char_time(baudrate)


def wire_time(nbytes: int, baudrate: int) -> float:
    return nbytes * char_time(baudrate)


def read_reply_len(fc: int, count: int) -> int:
    """Length of an RTU read reply: unit + fc + byte count + data + CRC."""
    nbytes = (count + 7) // 8 if fc in (1, 2) else 2 * count
    return 5 + nbytes


def write_lengths(fc: int, count: int) -> tuple[int, int]:
    """(request, reply) RTU lengths for write function codes."""
    if fc in (5, 6):
        return 8, 8
    nbytes = (count + 7) // 8 if fc == 15 else 2 * count
    return 9 + nbytes, 8


def classify_rtu(rx: bytes, unit: int, fc: int, expected_len: int) -> str:
    """Why the bytes `rx` that came back for a request to `unit` with `fc` were not a reply."""
    if not rx:
        return "no response"
    if len(rx) >= 5 and rx[1] == fc | 0x80:
        frame = rx[:5]
        if crc_ok(frame) and rx[0] != unit:
            return f"reply from wrong unit id {rx[0]}"
        if not crc_ok(frame):
            return "CRC error"
    if len(rx) < expected_len:
        if len(rx) >= 4 and crc_ok(rx) and rx[0] != unit:
            return f"reply from wrong unit id {rx[0]}"
        return f"short reply ({len(rx)} of {expected_len} bytes)"
    frame = rx[:expected_len]
    if crc_ok(frame):
        if frame[0] != unit:
            return f"reply from wrong unit id {frame[0]}"
        if frame[1] != fc:
            return f"reply with wrong function code {frame[1]}"
        return "garbled reply"
    if frame[0] == unit and frame[1] == fc:
        return "CRC error"
    return "garbled reply"


def classify_tcp(rx: bytes, unit: int, fc: int) -> str:
    """Why the bytes `rx` on a Modbus TCP connection were not a reply (MBAP framing)."""
    if not rx:
        return "no response"
    if len(rx) < 8:
        return f"short reply ({len(rx)} bytes)"
    _tid, proto, length, rx_unit = struct.unpack(">HHHB", rx[:7])
    if proto != 0:
        return "garbled reply (protocol id not 0)"
    if length < 2 or length > 254:
        return f"garbled reply (MBAP length {length})"
    if len(rx) < 6 + length:
        return f"short reply ({len(rx)} of {6 + length} bytes)"
    if rx_unit != unit:
        return f"reply from wrong unit id {rx_unit}"
    if rx[7] not in (fc, fc | 0x80):
        return f"reply with wrong function code {rx[7]}"
    return "garbled reply"


@dataclass(frozen=True)
class Expected:
    """The reply a request asks for: its function code, the length of its PDU
    (function code + data) and, for reads, the byte count it must carry."""

    fc: int
    pdu_len: int
    byte_count: int | None = None


def expected_reply(fc: int, count: int) -> Expected:
    """What a good reply to a request with `fc` for `count` bits/registers looks like."""
    if fc in (1, 2):
        nbytes = (count + 7) // 8
        return Expected(fc, 2 + nbytes, nbytes)
    if fc in (3, 4):
        return Expected(fc, 2 + 2 * count, 2 * count)
    if fc in (5, 6, 15, 16):
        return Expected(fc, 5)  # echo: fc, address, value or quantity
    raise ValueError(f"function code {fc} is not one the engine sends")


BAD_FRAME = "bad_frame"


@dataclass(frozen=True)
class FrameProblem:
    """Why a frame addressed to the pending request is not its reply. `kind` is one of
    "wrong function code", "byte count", "length", "protocol id", "undecodable"."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{BAD_FRAME}: {self.kind} ({self.detail})"


def pdu_problem(pdu: bytes, exp: Expected, declared: int, *, mbap: bool = False) -> FrameProblem | None:
    """What is wrong with the reply PDU `pdu` (the bytes received so far, function code
    first) framed as `declared` bytes long (the MBAP length - 1 on TCP, `mbap=True`; the
    CRC-checked frame's PDU on RTU), or None when nothing is wrong with it so far."""

    def length(want: int) -> FrameProblem:
        if mbap:
            return FrameProblem("length", f"MBAP length {declared + 1}, expected {want + 1}")
        return FrameProblem("length", f"{declared}-byte PDU, expected {want}")

    if not pdu:
        return length(exp.pdu_len) if declared < 1 else None
    fc = pdu[0]
    if fc == exp.fc | 0x80:
        want = 2  # exception reply: fc | 0x80, exception code
    elif fc != exp.fc:
        return FrameProblem("wrong function code", f"{fc}, asked {exp.fc}")
    else:
        want = exp.pdu_len
        if exp.byte_count is not None:
            if declared < 2:
                return length(want)
            if len(pdu) < 2:
                return None  # the byte count is still on its way
            if pdu[1] != exp.byte_count:
                return FrameProblem("byte count", f"{pdu[1]}, expected {exp.byte_count}")
    return length(want) if declared != want else None


def mbap_problem(buf: bytes, tid: int, unit: int, exp: Expected | None) -> FrameProblem | None:
    """What is wrong with the Modbus TCP frame at the start of `buf` (received so far),
    given the pending request's transaction id, unit id (0: any) and expected reply.
    A frame for another transaction or unit is not judged here (pymodbus skips it by
    its MBAP length); a header no frame can have (protocol id not 0, length outside
    2..254) is a problem whoever it is for: the stream cannot be framed after it."""
    if len(buf) < 7:
        return None
    rtid, pid, length, runit = struct.unpack_from(">HHHB", buf)
    if pid != 0:
        return FrameProblem("protocol id", f"{pid}, expected 0")
    if not 2 <= length <= 254:
        return FrameProblem("length", f"MBAP length {length}, allowed 2..254")
    if exp is None or (tid and rtid and rtid != tid) or (unit and runit != unit):
        return None
    return pdu_problem(buf[7 : 6 + length], exp, length - 1, mbap=True)
