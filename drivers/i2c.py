"""Sensirion SHT3x / SHT4x temperature and humidity sensors on I2C through Blinka.

Owns: `SHT3x` and `SHT4x` (a measurement = one command, a wait, one 6-byte read),
`crc8` (Sensirion CRC-8: poly 0x31, init 0xFF) and `decode_*` (pure: reply bytes ->
`Measurement`, checking both CRCs). The bus is any object with the busio.I2C protocol
(`try_lock`, `unlock`, `scan`, `writeto`, `readfrom_into`, `writeto_then_readfrom`);
the transfers go through `adafruit_bus_device.i2c_device.I2CDevice`, imported when a
sensor is created. Every failure (absent device, bus error / NACK, CRC mismatch,
reply of the wrong length) raises `SensorError` naming the sensor, address and step.

Time: the sensor needs a few milliseconds between command and read. `start()` sends
the command and returns that delay; `read()` fetches the result, so an async caller
can `await asyncio.sleep(delay)` in between. `measure(sleep=time.sleep)` does both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class SensorError(Exception):
    """An I2C sensor could not be read; the message says which, where and why."""


@dataclass(frozen=True)
class Measurement:
    temperature_c: float
    humidity_pct: float  # relative humidity, clamped to 0..100
    raw_temperature: int
    raw_humidity: int


def crc8(data: bytes) -> int:
    """Sensirion CRC-8 (poly 0x31, init 0xFF, no reflection, no final XOR).
    crc8(b"\\xbe\\xef") == 0x92 (datasheet example)."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def words(reply: bytes, what: str = "reply") -> list[int]:
    """Split a Sensirion reply (2 data bytes + CRC, repeated) into 16-bit words."""
    if len(reply) % 3:
        raise SensorError(f"{what}: {len(reply)} bytes is not a multiple of 3 (word + CRC)")
    out = []
    for i in range(0, len(reply), 3):
        word, crc = reply[i : i + 2], reply[i + 2]
        if crc8(word) != crc:
            raise SensorError(
                f"{what}: CRC mismatch in word {i // 3} ({word.hex()}): got 0x{crc:02X}, "
                f"expected 0x{crc8(word):02X} (reply {bytes(reply).hex()})"
            )
        out.append(int.from_bytes(word, "big"))
    return out


def decode_sht3x(reply: bytes) -> Measurement:
    t_raw, rh_raw = _two_words(reply, "SHT3x measurement")
    return Measurement(-45 + 175 * t_raw / 65535, 100 * rh_raw / 65535, t_raw, rh_raw)


def decode_sht4x(reply: bytes) -> Measurement:
    t_raw, rh_raw = _two_words(reply, "SHT4x measurement")
    rh = min(100.0, max(0.0, -6 + 125 * rh_raw / 65535))
    return Measurement(-45 + 175 * t_raw / 65535, rh, t_raw, rh_raw)


def _two_words(reply: bytes, what: str) -> tuple[int, int]:
    if len(reply) != 6:
        raise SensorError(f"{what}: reply has {len(reply)} bytes, expected 6")
    t_raw, rh_raw = words(reply, what)
    return t_raw, rh_raw


class _Sensirion:
    model = "?"
    addresses: tuple[int, ...] = ()
    commands: ClassVar[Mapping[str, tuple[bytes, float]]] = {}  # precision -> (command, max wait s)
    decode: Callable[[bytes], Measurement]

    def __init__(self, i2c: Any, address: int | None = None, *, precision: str = "high") -> None:
        address = self.addresses[0] if address is None else address
        if address not in self.addresses:
            shown = f"0x{address:02X}" if isinstance(address, int) else repr(address)
            raise SensorError(
                f"{self.model}: address {shown} is not one of {', '.join(f'0x{a:02X}' for a in self.addresses)}"
            )
        if precision not in self.commands:
            raise SensorError(f"{self.model}: precision {precision!r} is not one of {', '.join(self.commands)}")
        self.address = address
        self.precision = precision
        self._where = f"{self.model} at 0x{address:02X}"
        try:
            from adafruit_bus_device.i2c_device import I2CDevice
        except ImportError as exc:
            raise SensorError(f"{self._where}: adafruit_bus_device is not installed ({exc})") from exc
        try:
            self._device = I2CDevice(i2c, address)
        except ValueError as exc:  # what I2CDevice raises when the probe gets no ACK
            raise SensorError(f"{self._where}: no device answers ({exc})") from exc
        except OSError as exc:
            raise SensorError(f"{self._where}: bus error while probing: {exc}") from exc

    def _write(self, command: bytes, step: str) -> None:
        try:
            with self._device as dev:
                dev.write(command)
        except OSError as exc:
            raise SensorError(f"{self._where}: {step}: command {command.hex()} failed: {exc}") from exc

    def _read(self, n: int, step: str) -> bytes:
        buf = bytearray(n)
        try:
            with self._device as dev:
                dev.readinto(buf)
        except OSError as exc:
            raise SensorError(f"{self._where}: {step}: read failed (not ready yet? NACK): {exc}") from exc
        return bytes(buf)

    def start(self) -> float:
        """Start a measurement; returns the seconds to wait before `read()`."""
        command, wait = self.commands[self.precision]
        self._write(command, "start measurement")
        return wait

    def read(self) -> Measurement:
        """Fetch the measurement started by `start()`; checks both CRCs."""
        reply = self._read(6, "read measurement")
        try:
            return type(self).decode(reply)
        except SensorError as exc:
            raise SensorError(f"{self._where}: {exc}") from None

    def measure(self, sleep: Callable[[float], object] = time.sleep) -> Measurement:
        sleep(self.start())
        return self.read()


class SHT3x(_Sensirion):
    """SHT30/31/35: single shot, no clock stretching. Address 0x44 (ADDR low) or 0x45."""

    model = "SHT3x"
    addresses = (0x44, 0x45)
    commands: ClassVar[Mapping[str, tuple[bytes, float]]] = {
        "high": (b"\x24\x00", 0.016),
        "medium": (b"\x24\x0b", 0.007),
        "low": (b"\x24\x16", 0.005),
    }
    decode = staticmethod(decode_sht3x)

    def reset(self, sleep: Callable[[float], object] = time.sleep) -> None:
        """Soft reset (the sensor needs up to 1.5 ms afterwards)."""
        self._write(b"\x30\xa2", "soft reset")
        sleep(0.002)

    def status(self) -> int:
        """The 16-bit status register (bit 13 = heater on, bit 4 = reset detected)."""
        self._write(b"\xf3\x2d", "read status")
        return words(self._read(3, "read status"), f"{self._where}: status")[0]

    def heater(self, on: bool) -> None:
        self._write(b"\x30\x6d" if on else b"\x30\x66", "heater on" if on else "heater off")


class SHT4x(_Sensirion):
    """SHT40/41/45: one-byte commands, address 0x44 (0x45/0x46 on some variants)."""

    model = "SHT4x"
    addresses = (0x44, 0x45, 0x46)
    commands: ClassVar[Mapping[str, tuple[bytes, float]]] = {
        "high": (b"\xfd", 0.010),
        "medium": (b"\xf6", 0.005),
        "low": (b"\xe0", 0.002),
    }
    decode = staticmethod(decode_sht4x)

    def serial_number(self, sleep: Callable[[float], object] = time.sleep) -> int:
        self._write(b"\x89", "read serial number")
        sleep(0.001)
        high, low = words(self._read(6, "read serial number"), f"{self._where}: serial number")
        return (high << 16) | low

    def reset(self, sleep: Callable[[float], object] = time.sleep) -> None:
        self._write(b"\x94", "soft reset")
        sleep(0.001)
