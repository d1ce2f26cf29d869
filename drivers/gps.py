"""The GPS serial reader: NMEA lines from a serial port (pyserial) into parsed sentences.

Owns: `GpsReader`, the thin asyncio shell around drivers.nmea. It opens the port with
pyserial (`timeout=0`), waits for data with `loop.add_reader(fd)` (no threads), splits
lines on CR/LF, parses them and hands sentences to `on_sentence`. Bad lines are counted
and reported to `on_error` rate-limited (the first at once, then one summary with the
count per `error_interval_s`). When the port vanishes (tty hang-up, EIO, file removed,
like a USB adapter unplugged) it closes, reports once, and retries opening with
exponential backoff until the port is back. `stop()` (final: a stopped reader does not
run again) or cancelling `run()` closes the port. pyserial sets VMIN=0, so an empty
read alone is not taken as a loss; only POLLHUP/POLLERR (or 100 empty reads in a row).

Resync rule: if a line holds a `$` after some other bytes (binary noise, or a sentence
cut short by a lost LF), the bytes before the last `$` count as one bad line and the
rest is parsed. A run of more than `max_buffer` bytes without CR/LF is dropped as one
bad line.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import select
import time
from collections.abc import Callable
from typing import Any

import serial

from drivers import nmea

_EOL = re.compile(rb"[\r\n]+")


class GpsReader:
    """Reads NMEA from `port` (a device path) until `stop()` or cancellation.

    Counters: `lines_ok`, `lines_bad`, `reopen_count` (successful opens after a loss),
    `callback_errors` (exceptions raised by `on_sentence`, reported, then ignored).
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        on_sentence: Callable[[nmea.Sentence], object] | None = None,
        on_error: Callable[[str], object] | None = None,
        mono: Callable[[], float] = time.monotonic,
        *,
        min_year: int = 2020,
        max_line: int = nmea.MAX_LINE,
        error_interval_s: float = 10.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_buffer: int = 512,
    ) -> None:
        if not isinstance(port, str) or not port:
            raise ValueError(f"GPS port must be a device path, got {port!r}")
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"GPS baudrate must be a positive integer, got {baudrate!r}")
        for name, value in (
            ("error_interval_s", error_interval_s),
            ("backoff_initial_s", backoff_initial_s),
            ("backoff_max_s", backoff_max_s),
        ):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"GPS {name} must be a positive number of seconds, got {value!r}")
        if backoff_max_s < backoff_initial_s:
            raise ValueError("GPS backoff_max_s must be >= backoff_initial_s")
        self.port = port
        self.baudrate = baudrate
        self._on_sentence = on_sentence or (lambda s: None)
        self._on_error = on_error or (lambda msg: None)
        self._mono = mono
        self._min_year = min_year
        self._max_line = max_line
        self._error_interval = float(error_interval_s)
        self._backoff = (float(backoff_initial_s), float(backoff_max_s))
        self._max_buffer = max_buffer
        self.lines_ok = 0
        self.lines_bad = 0
        self.reopen_count = 0
        self.callback_errors = 0
        self._buffer = b""
        self._empty_reads = 0
        self._serial: serial.Serial | None = None
        self._stop = asyncio.Event()
        self._lost: asyncio.Future[str] | None = None
        # rate limiting of bad-line reports: count since the last report, last reason
        self._unreported = 0
        self._last_reason = ""
        self._last_report: float | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def stop(self) -> None:
        """Ask `run()` to close the port and return."""
        self._stop.set()

    async def run(self) -> None:
        """Open, read, reopen after loss; returns after `stop()`."""
        delay = self._backoff[0]
        ever_opened = False
        open_failure_reported = False
        try:
            while not self._stop.is_set():
                try:
                    self._serial = serial.Serial(self.port, self.baudrate, timeout=0)
                except (OSError, ValueError) as exc:  # SerialException is an OSError
                    if not open_failure_reported:
                        self._on_error(f"GPS port {self.port} cannot be opened ({exc}); retrying")
                        open_failure_reported = True
                    await self._sleep(delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
                if ever_opened:
                    self.reopen_count += 1
                ever_opened, open_failure_reported, delay = True, False, self._backoff[0]
                reason = await self._read_until_lost()
                self._close()
                if reason is not None:
                    self._on_error(f"GPS port {self.port} lost ({reason}); reopening")
                    open_failure_reported = True  # the loss report covers the retries
        finally:
            self._close()
            self._flush_errors(force=True)

    async def _sleep(self, seconds: float) -> None:
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        waiter = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()

    async def _read_until_lost(self) -> str | None:
        """Read until the port is lost (returns the reason) or stop() (returns None)."""
        assert self._serial is not None
        loop = asyncio.get_running_loop()
        fd = self._serial.fileno()
        self._buffer = b""
        self._empty_reads = 0
        self._lost = loop.create_future()
        loop.add_reader(fd, self._on_readable, fd)
        stop_task = asyncio.ensure_future(self._stop.wait())
        waiters: set[asyncio.Future[Any]] = {self._lost, stop_task}  # a Future[str] and a Task[bool]
        try:
            while True:
                done, _ = await asyncio.wait(waiters, timeout=self._error_interval, return_when=asyncio.FIRST_COMPLETED)
                self._flush_errors()
                if self._lost in done:
                    return self._lost.result()
                if stop_task in done:
                    return None
        finally:
            loop.remove_reader(fd)
            stop_task.cancel()
            await asyncio.gather(stop_task, return_exceptions=True)

    def _on_readable(self, fd: int) -> None:
        if self._lost is None or self._lost.done():
            return
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self._lost.set_result(f"{name}: {exc.strerror}")
            asyncio.get_running_loop().remove_reader(fd)
            return
        if not data:
            # pyserial sets VMIN=0, so a read with nothing queued also returns b"":
            # only a hang-up (POLLHUP/POLLERR) or endless empty readiness means "gone".
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            events = sum(ev for _, ev in poller.poll(0))
            self._empty_reads += 1
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL) or self._empty_reads > 100:
                self._lost.set_result("hang-up (end of file)" if events & select.POLLHUP else "no data")
                asyncio.get_running_loop().remove_reader(fd)
            return
        self._empty_reads = 0
        self.feed_bytes(data)

    def feed_bytes(self, data: bytes) -> None:
        """Split `data` (continuing the previous partial line) into lines and handle them."""
        pieces = _EOL.split(self._buffer + data)
        self._buffer = pieces.pop()  # the unterminated rest ("" after a line end)
        for line in pieces:
            if line:
                self._handle_line(line)
        if len(self._buffer) > self._max_buffer:
            self._bad(f"no line end within {self._max_buffer} bytes, dropped")
            self._buffer = b""

    def _handle_line(self, line: bytes) -> None:
        start = line.rfind(b"$")
        if start > 0:
            self._bad(f"{start} bytes of noise before '$'")
            line = line[start:]
        try:
            sentence = nmea.parse(line, min_year=self._min_year, max_length=self._max_line)
        except nmea.NmeaError as exc:
            self._bad(str(exc))
            return
        self.lines_ok += 1
        try:
            self._on_sentence(sentence)
        except Exception as exc:  # noqa: BLE001 - a consumer bug must not stop the GPS reader (it is reported)
            self.callback_errors += 1
            self._on_error(f"GPS on_sentence callback failed: {type(exc).__name__}: {exc}")

    def _bad(self, reason: str) -> None:
        self.lines_bad += 1
        self._unreported += 1
        self._last_reason = reason
        self._flush_errors()

    def _flush_errors(self, force: bool = False) -> None:
        if not self._unreported:
            return
        now = self._mono()
        if not force and self._last_report is not None and now - self._last_report < self._error_interval:
            return
        if self._unreported == 1:
            message = f"GPS {self.port}: bad NMEA line: {self._last_reason}"
        else:
            message = f"GPS {self.port}: {self._unreported} bad NMEA lines; last: {self._last_reason}"
        self._unreported = 0
        self._last_report = now
        self._on_error(message)

    def _close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except OSError:
                pass
