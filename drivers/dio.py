"""Digital I/O behind one small interface: named inputs and outputs on pins.

Owns: the `DigitalIO` protocol and three backends sharing its bookkeeping:
* `BlinkaDIO` — real pins through Adafruit Blinka (`board` + `digitalio`, imported
  only when a BlinkaDIO is created). Pin names are `board` attribute names ("D17").
* `FilePinsDIO` — the simulated board, shared across processes: one file per pin in
  a directory, named after the pin, holding "1\\n" or "0\\n" (the electrical level).
  Writes are atomic (temp file + os.replace). `write_pin` / `read_pin` are the same
  helpers for the simulator. A missing pin file raises DioError naming the path,
  unless the backend was built with `missing=True/False` (the level to assume).
  `setup_output` writes the initial level at once, so output files always exist.
* `MemoryDIO` — in memory, for tests and scenarios (`set_input`, `set_level`).

Values: `read`/`write` use logical values; `invert=True` means logical = not level
(active-low wiring). Reading an output reads the pin back (Blinka: the hardware;
files: the file; memory: the stored level). Unknown names, unknown or reused pins,
wrong directions and bad values raise `DioError` with the name, pin and reason.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

PULLS = (None, "up", "down")
_FILE_PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class DioError(Exception):
    """A digital I/O request cannot be done; the message names what and why."""


@runtime_checkable
class DigitalIO(Protocol):
    def setup_input(self, name: str, pin: str, *, pull: str | None = None, invert: bool = False) -> None: ...
    def setup_output(self, name: str, pin: str, *, initial: bool = False, invert: bool = False) -> None: ...
    def read(self, name: str) -> bool: ...
    def write(self, name: str, value: bool) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Line:
    name: str
    pin: str
    output: bool
    invert: bool
    pull: str | None
    handle: Any = None  # backend data (the DigitalInOut for Blinka)


class _Base:
    """Name/pin bookkeeping and invert logic; backends implement the _hooks."""

    backend = "dio"

    def __init__(self) -> None:
        self._lines: dict[str, _Line] = {}
        self._closed = False

    # -- public API --
    def setup_input(self, name: str, pin: str, *, pull: str | None = None, invert: bool = False) -> None:
        if pull not in PULLS:
            raise DioError(f"{self.backend}: input {name!r}: pull {pull!r} is not one of None, 'up', 'down'")
        line = self._new_line(name, pin, output=False, invert=invert, pull=pull)
        self._open(line, None)
        self._lines[name] = line

    def setup_output(self, name: str, pin: str, *, initial: bool = False, invert: bool = False) -> None:
        line = self._new_line(name, pin, output=True, invert=invert, pull=None)
        level = _bool(initial, f"{self.backend}: output {name!r}: initial") != line.invert
        self._open(line, level)
        self._lines[name] = line

    def read(self, name: str) -> bool:
        line = self._line(name)
        return self._read_level(line) != line.invert

    def write(self, name: str, value: bool) -> None:
        line = self._line(name)
        if not line.output:
            raise DioError(f"{self.backend}: {name!r} (pin {line.pin}) is an input; cannot write it")
        self._write_level(line, _bool(value, f"{self.backend}: write {name!r}") != line.invert)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        lines, self._lines = list(self._lines.values()), {}
        for line in lines:
            self._release(line)

    def names(self) -> list[str]:
        return list(self._lines)

    def __enter__(self) -> _Base:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --
    def _new_line(self, name: str, pin: str, *, output: bool, invert: bool, pull: str | None) -> _Line:
        if self._closed:
            raise DioError(f"{self.backend}: closed")
        if not isinstance(name, str) or not name.strip():
            raise DioError(f"{self.backend}: name must be a non-empty string, got {name!r}")
        if name in self._lines:
            raise DioError(f"{self.backend}: name {name!r} is already set up (pin {self._lines[name].pin})")
        if not isinstance(pin, str) or not pin:
            raise DioError(f"{self.backend}: {name!r}: pin must be a non-empty string, got {pin!r}")
        _bool(invert, f"{self.backend}: {name!r}: invert")
        for other in self._lines.values():
            if other.pin == pin:
                raise DioError(f"{self.backend}: pin {pin} is already used by {other.name!r}")
        self._check_pin(name, pin)
        return _Line(name, pin, output, bool(invert), pull)

    def _line(self, name: str) -> _Line:
        if self._closed:
            raise DioError(f"{self.backend}: closed")
        try:
            return self._lines[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._lines)) or "none"
            raise DioError(f"{self.backend}: unknown name {name!r} (set up: {known})") from None

    # -- backend hooks --
    def _check_pin(self, name: str, pin: str) -> None:
        pass

    def _open(self, line: _Line, level: bool | None) -> None:
        """Claim the pin; `level` is the initial level for an output, None for an input."""

    def _read_level(self, line: _Line) -> bool:
        raise NotImplementedError

    def _write_level(self, line: _Line, level: bool) -> None:
        raise NotImplementedError

    def _release(self, line: _Line) -> None:
        pass


def _bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise DioError(f"{what}: {value!r} is not a boolean")


# ---- memory --------------------------------------------------------------------------


class MemoryDIO(_Base):
    """In-memory pins. `pins`, if given, is the set of pins that exist. An input whose
    level was never set reads its pull level (pull="up" -> high), else low."""

    backend = "memory"

    def __init__(self, pins: set[str] | list[str] | tuple[str, ...] | None = None) -> None:
        super().__init__()
        self._pins = None if pins is None else set(pins)
        self._levels: dict[str, bool] = {}

    def set_level(self, pin: str, level: bool) -> None:
        """Set the electrical level of a pin (as the outside world would)."""
        if self._pins is not None and pin not in self._pins:
            raise DioError(f"memory: unknown pin {pin!r}")
        self._levels[pin] = _bool(level, f"memory: level of pin {pin!r}")

    def set_input(self, name: str, value: bool) -> None:
        """Make input `name` read `value` (logical, after invert)."""
        line = self._line(name)
        if line.output:
            raise DioError(f"memory: {name!r} is an output; use write()")
        self._levels[line.pin] = _bool(value, f"memory: set_input {name!r}") != line.invert

    def level(self, pin: str) -> bool | None:
        """The electrical level of a pin, None if never set."""
        return self._levels.get(pin)

    def _check_pin(self, name: str, pin: str) -> None:
        if self._pins is not None and pin not in self._pins:
            raise DioError(f"memory: {name!r}: unknown pin {pin!r} (known: {', '.join(sorted(self._pins))})")

    def _open(self, line: _Line, level: bool | None) -> None:
        if level is not None:
            self._levels[line.pin] = level

    def _read_level(self, line: _Line) -> bool:
        return self._levels.get(line.pin, line.pull == "up")

    def _write_level(self, line: _Line, level: bool) -> None:
        self._levels[line.pin] = level


# ---- files (simulated board) -----------------------------------------------------------


def _pin_path(directory: str | os.PathLike[str], pin: str) -> str:
    if not isinstance(pin, str) or not _FILE_PIN.fullmatch(pin):
        raise DioError(f"files: pin name {pin!r} is not letters, digits, '_' or '-' (max 64)")
    return os.path.join(os.fspath(directory), pin)


def write_pin(directory: str | os.PathLike[str], pin: str, value: bool) -> None:
    """Set the level of `pin` in `directory` atomically (creates the directory)."""
    path = _pin_path(directory, pin)
    level = _bool(value, f"files: value for pin {pin}")
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{pin}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write("1\n" if level else "0\n")
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise DioError(f"files: cannot write pin file {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def read_pin(directory: str | os.PathLike[str], pin: str, *, missing: bool | None = None) -> bool:
    """The level of `pin` in `directory`. A missing file raises DioError naming the
    path, or returns `missing` if that is not None."""
    path = _pin_path(directory, pin)
    try:
        with open(path, "rb") as f:
            raw = f.read(17)
    except FileNotFoundError:
        if missing is not None:
            return missing
        raise DioError(f"files: pin file {path} does not exist") from None
    except OSError as exc:
        raise DioError(f"files: cannot read pin file {path}: {exc.strerror or exc}") from exc
    text = raw.strip()
    if text == b"1":
        return True
    if text == b"0":
        return False
    raise DioError(f"files: pin file {path} holds {raw[:16]!r}, expected '1' or '0'")


class FilePinsDIO(_Base):
    """Pins as files in `directory` (see the module docstring)."""

    backend = "files"

    def __init__(self, directory: str | os.PathLike[str], *, missing: bool | None = None) -> None:
        super().__init__()
        self.directory = os.fspath(directory)
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise DioError(f"files: {self.directory} is not a directory")
        self._missing = None if missing is None else _bool(missing, "files: missing")

    def _check_pin(self, name: str, pin: str) -> None:
        _pin_path(self.directory, pin)

    def _open(self, line: _Line, level: bool | None) -> None:
        if level is not None:
            write_pin(self.directory, line.pin, level)

    def _read_level(self, line: _Line) -> bool:
        return read_pin(self.directory, line.pin, missing=self._missing)

    def _write_level(self, line: _Line, level: bool) -> None:
        write_pin(self.directory, line.pin, level)


# ---- Adafruit Blinka -------------------------------------------------------------------


class BlinkaDIO(_Base):
    """Pins through Adafruit Blinka; `board` and `digitalio` are imported here, not at
    module import. Errors from Blinka are wrapped in DioError naming the pin."""

    backend = "blinka"

    def __init__(self) -> None:
        super().__init__()
        try:
            import board
            import digitalio
        except Exception as exc:  # platform detection fails with several exception types
            raise DioError(f"blinka: cannot import board/digitalio: {type(exc).__name__}: {exc}") from exc
        self._board, self._digitalio = board, digitalio
        self._pin_objects: dict[str, Any] = {}

    def _check_pin(self, name: str, pin: str) -> None:
        obj = getattr(self._board, pin, None) if pin.isidentifier() and not pin.startswith("_") else None
        if obj is None or not hasattr(obj, "id") or callable(obj) or type(obj).__name__ == "module":
            pins = sorted(
                n for n in dir(self._board) if not n.startswith("_") and hasattr(getattr(self._board, n), "id")
            )
            shown = ", ".join(pins[:40]) + (", ..." if len(pins) > 40 else "")
            raise DioError(
                f"blinka: {name!r}: board {getattr(self._board, 'board_id', '?')} has no pin {pin!r} "
                f"(pins: {shown or 'none'})"
            )
        for other in self._lines.values():
            if self._pin_objects.get(other.name) is obj:
                raise DioError(f"blinka: pin {pin} is the same pin as {other.pin}, used by {other.name!r}")

    def _open(self, line: _Line, level: bool | None) -> None:
        dio = self._digitalio
        obj = getattr(self._board, line.pin)
        try:
            handle = dio.DigitalInOut(obj)
            try:
                if level is None:
                    pull = {None: None, "up": dio.Pull.UP, "down": dio.Pull.DOWN}[line.pull]
                    handle.switch_to_input(pull=pull)
                else:
                    handle.switch_to_output(value=level)
            except BaseException:
                handle.deinit()
                raise
        except Exception as exc:
            raise DioError(
                f"blinka: cannot set up {line.name!r} on pin {line.pin}: {type(exc).__name__}: {exc}"
            ) from exc
        line.handle = handle
        self._pin_objects[line.name] = obj

    def _read_level(self, line: _Line) -> bool:
        try:
            return bool(line.handle.value)
        except Exception as exc:
            raise DioError(f"blinka: cannot read {line.name!r} (pin {line.pin}): {type(exc).__name__}: {exc}") from exc

    def _write_level(self, line: _Line, level: bool) -> None:
        try:
            line.handle.value = level
        except Exception as exc:
            raise DioError(f"blinka: cannot write {line.name!r} (pin {line.pin}): {type(exc).__name__}: {exc}") from exc

    def _release(self, line: _Line) -> None:
        self._pin_objects.pop(line.name, None)
        try:
            line.handle.deinit()
        except Exception:  # noqa: BLE001 - close() releases every line; one failing deinit must not keep the rest
            pass
