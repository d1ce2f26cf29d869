"""What went wrong with a reply: pure classification of raw Modbus bytes.

pymodbus silently drops replies with a bad CRC, from the wrong unit id or cut
short, and the request then times out. The engine records the raw bytes that came
back during the transaction (pymodbus `trace_packet`) and asks this module why no
valid reply arrived, so a point's quality carries the real reason. Also: CRC-16,
RTU wire timing, exception code names.
"""

from __future__ import annotations

import struct

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
