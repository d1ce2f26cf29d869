"""The RS-485 line on the board: a UART and the transceiver's direction pin (DE/RE).

Thin: receiving feeds `uart.read()` into the pure rtu.Framer; sending drives DE high, writes,
waits for the last stop bit to leave the shift register, then releases the line.
"""

import time

from machine import UART, Pin

from . import rtu


class Rs485:
    def __init__(self, cfg: dict) -> None:
        parity = {"N": None, "E": 0, "O": 1}[cfg["parity"]]
        self.baudrate = cfg["baudrate"]
        self.de = Pin(cfg["de_pin"], Pin.OUT, value=0)  # receive until we answer
        self.uart = UART(
            cfg["uart"],
            baudrate=self.baudrate,
            bits=8,
            parity=parity,
            stop=cfg["stop_bits"],
            tx=Pin(cfg["tx_pin"]),
            rx=Pin(cfg["rx_pin"]),
            rxbuf=512,
        )
        self.framer = rtu.Framer(self.baudrate)
        self.gap_us = rtu.t35_us(self.baudrate)
        self.elapsed_us = 0  # microseconds since start, without the ticks wrap-around
        self.last_tick = time.ticks_us()

    def now_us(self) -> int:
        tick = time.ticks_us()
        self.elapsed_us += time.ticks_diff(tick, self.last_tick)
        self.last_tick = tick
        return self.elapsed_us

    def frame(self) -> bytes | None:
        """A whole request, or None when the line is idle. Once bytes are waiting it keeps
        reading until t3.5 of silence ends the frame (times measured here, in a tight loop,
        not by the caller's pace), at most for the wire time of a maximal frame: a flood or a
        babbling device cannot hold the main loop (and starve the watchdog)."""
        deadline = self.now_us() + rtu.wire_us(2 * rtu.MAX_ADU, self.baudrate)
        while True:
            now = self.now_us()
            waiting = self.uart.any()
            if waiting:
                data = self.uart.read(waiting)
                done = self.framer.feed(data or b"", now)
                if done is not None:
                    return done  # a silence ended the previous frame; the new bytes wait in the framer
            else:
                done = self.framer.poll(now)
                if done is not None:
                    return done
                if not self.framer.buf and not self.framer.overrun:
                    return None
            if now > deadline:
                return None

    def send(self, reply: bytes) -> None:
        """Answer after the turnaround gap: DE high, write, wait until sent, DE low."""
        time.sleep_us(self.gap_us)  # t3.5 after the request's last byte before we talk
        self.de.value(1)
        self.uart.write(reply)
        self.uart.flush()  # returns when the last byte has left the shift register
        time.sleep_us(rtu.char_us(self.baudrate) // 2)  # the stop bit, then release the line
        self.de.value(0)
