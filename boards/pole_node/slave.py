"""The Modbus RTU slave: one whole request frame in, the reply (or silence) out.

Like a real device:
* a frame with a bad CRC or shorter than 4 bytes: silence (counted);
* another unit id: silence; unit 0 (broadcast): writes are carried out, never answered,
  reads are ignored;
* exception 1 (illegal function) for function codes other than 03, 04, 06, 16;
* exception 2 (illegal data address) for a range outside the map;
* exception 3 (illegal data value) for a bad quantity or byte count, a frame whose length
  does not match its function code, or a value out of range (a multi-register write is
  checked whole before anything is written: all or nothing).
"""

from . import regmap, rtu

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3


class Slave:
    def __init__(self, unit: int) -> None:
        if unit < 1 or unit > 247:
            raise ValueError(f"unit id {unit} out of range 1..247")
        self.unit = unit
        self.bad_crc = 0
        self.bad_frame = 0
        self.other_unit = 0
        self.served = 0
        self.exceptions = 0
        self.last_error = ""

    def handle(self, frame: bytes, inputs: list[int], holding: list[int]) -> tuple[bytes | None, int, bool]:
        """(reply or None, the first register of a write carried out or -1, a request
        addressed to this node or broadcast).

        `holding` is changed in place by a valid write; `inputs` is only read."""
        if len(frame) < 4 or not rtu.crc_ok(frame):
            self.bad_crc += 1
            return None, -1, False
        unit = frame[0]
        if unit != self.unit and unit != rtu.BROADCAST:
            self.other_unit += 1
            return None, -1, False
        broadcast = unit == rtu.BROADCAST
        fc = frame[1]
        code, values, written = self._serve(frame, fc, broadcast, inputs, holding)
        if broadcast:
            return None, written, True
        if code:
            self.exceptions += 1
            return rtu.exception_reply(unit, fc, code), -1, True
        self.served += 1
        if fc in (3, 4):
            return rtu.read_reply(unit, fc, values), -1, True
        if fc == 6:
            return bytes(frame), written, True  # FC 06 echoes the request
        return rtu.with_crc(frame[:6]), written, True  # FC 16: unit, fc, address, quantity

    def _fail(self, code: int, why: str) -> tuple[int, list[int], int]:
        self.last_error = why
        return code, [], -1

    def _serve(
        self, frame: bytes, fc: int, broadcast: bool, inputs: list[int], holding: list[int]
    ) -> tuple[int, list[int], int]:
        n = len(frame)
        if fc in (3, 4):
            if broadcast:
                return 0, [], -1  # a broadcast read has no one to answer it
            if n != 8:
                self.bad_frame += 1
                return self._fail(ILLEGAL_VALUE, f"read request of {n} bytes, expected 8")
            start, count = rtu.u16(frame, 2), rtu.u16(frame, 4)
            if count < 1 or count > 125:
                return self._fail(ILLEGAL_VALUE, f"read quantity {count} out of 1..125")
            table = holding if fc == 3 else inputs
            if start + count > len(table):
                return self._fail(ILLEGAL_ADDRESS, f"registers {start}..{start + count - 1} beyond the map")
            return 0, table[start : start + count], -1
        if fc == 6:
            if n != 8:
                self.bad_frame += 1
                return self._fail(ILLEGAL_VALUE, f"write request of {n} bytes, expected 8")
            return self._write(rtu.u16(frame, 2), [rtu.u16(frame, 4)], holding)
        if fc == 16:
            if n < 9:
                self.bad_frame += 1
                return self._fail(ILLEGAL_VALUE, f"write-multiple request of {n} bytes")
            start, count, nbytes = rtu.u16(frame, 2), rtu.u16(frame, 4), frame[6]
            if count < 1 or count > 123 or nbytes != 2 * count:
                return self._fail(ILLEGAL_VALUE, f"write quantity {count} with byte count {nbytes}")
            if n != 9 + nbytes:
                self.bad_frame += 1
                return self._fail(ILLEGAL_VALUE, f"write-multiple request of {n} bytes, expected {9 + nbytes}")
            return self._write(start, [rtu.u16(frame, 7 + 2 * i) for i in range(count)], holding)
        return self._fail(ILLEGAL_FUNCTION, f"function code {fc} not served")

    def _write(self, start: int, values: list[int], holding: list[int]) -> tuple[int, list[int], int]:
        if start + len(values) > len(holding):
            return self._fail(ILLEGAL_ADDRESS, f"registers {start}..{start + len(values) - 1} beyond the map")
        image = list(holding)
        image[start : start + len(values)] = values
        why = regmap.check_block(image)
        if why:
            return self._fail(ILLEGAL_VALUE, why)
        holding[:] = image
        return 0, [], start
