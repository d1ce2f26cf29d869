"""A stand-in for MicroPython's `machine` module (no board here): just enough of UART, Pin,
ADC, I2C, PWM and WDT for the firmware's hardware modules to run under the WebAssembly
MicroPython, with what they did recorded (hw_vectors.py). Class attributes hold the script
and the record: the firmware creates its own instances. (Mutable class attributes on
purpose, without ClassVar: MicroPython has no typing module; hence the RUF012 noqa.)"""

import math
import time


class StopLoop(Exception):
    """Raised by WDT.feed once the UART script is used up and `WDT.feeds_left` more feeds
    passed (or after a million feeds, whatever the script): ends the firmware's endless loop."""


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    history: list = []  # noqa: RUF012

    def __init__(self, pin_id: int, mode: int = -1, pull: int = -1, value: int | None = None) -> None:
        self.pin_id = pin_id
        self.level = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self.value(value)

    def value(self, x: int | None = None) -> int:
        if x is not None:
            self.level = x
            Pin.history.append((self.pin_id, x))
        return self.level


class UART:
    incoming: list = []  # noqa: RUF012 - chunks of bytes, one per read(); an int: that many µs of silence
    pause_from: int | None = None
    sent: list = []  # noqa: RUF012
    settings: dict = {}  # noqa: RUF012

    def __init__(self, uart_id: int, baudrate: int = 9600, bits: int = 8, parity: object = None, stop: int = 1,
                 tx: object = None, rx: object = None, rxbuf: int = 0) -> None:  # fmt: skip
        UART.settings = {"id": uart_id, "baudrate": baudrate, "parity": parity, "stop": stop}

    def any(self) -> int:
        while UART.incoming and isinstance(UART.incoming[0], int):
            if UART.pause_from is None:
                UART.pause_from = time.ticks_us()
            if time.ticks_diff(time.ticks_us(), UART.pause_from) < UART.incoming[0]:
                return 0
            UART.incoming.pop(0)
            UART.pause_from = None
        return len(UART.incoming[0]) if UART.incoming else 0

    def read(self, n: int = -1) -> bytes | None:
        return UART.incoming.pop(0) if UART.incoming else None

    def write(self, data: bytes) -> int:
        UART.sent.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class ADC:
    def __init__(self, channel: int) -> None:
        self.channel = channel
        self.k = 0

    def read_u16(self) -> int:  # 50 Hz sine sampled every 0.5 ms: 230 V, 0.26 A in phase
        self.k += 1
        peak = 230 * 1.4142 / 0.0125 if self.channel == 0 else 0.26 * 1.4142 / 0.00025
        return int(32768 + peak * math.sin(2 * math.pi * self.k / 40))


class I2C:
    lux_raw = b"\x00\x06"  # BH1750: 6 / 1.2 = 5 lx, night

    def __init__(self, i2c_id: int, scl: object = None, sda: object = None, freq: int = 0) -> None:
        pass

    def writeto_mem(self, addr: int, reg: int, data: bytes) -> None:
        pass

    def writeto(self, addr: int, data: bytes) -> None:
        pass

    def readfrom(self, addr: int, n: int) -> bytes:
        return I2C.lux_raw

    def readfrom_mem(self, addr: int, reg: int, n: int) -> bytes:
        return b"\x00\x00\x00\x00\x00\x40"  # LIS3DH: x 0, y 0, z 1 g (0x4000 >> 4 = 1024 mg)


class PWM:
    duty: list = []  # noqa: RUF012

    def __init__(self, pin: Pin, freq: int = 0, duty_u16: int = 0) -> None:
        pass

    def duty_u16(self, value: int) -> None:
        PWM.duty.append(value)


class WDT:
    feeds_left = 0
    feeds = 0

    def __init__(self, timeout: int = 5000) -> None:
        self.timeout = timeout
        WDT.feeds = 0

    def feed(self) -> None:
        WDT.feeds += 1
        if WDT.feeds > 1000000:
            raise StopLoop()
        if UART.incoming:
            return
        WDT.feeds_left -= 1
        if WDT.feeds_left <= 0:
            raise StopLoop()
