"""The config validator's vocabulary: typed fields, collected errors, unknown-key hints,
`number_pair` (a list of two numbers such as a limit pair), `is_number` (finite: never NaN,
infinity or an integer beyond a float) and `or_default`, for a value that may be None after
a recorded error.

Every error is a ConfigIssue naming the file, the section and key, the value given
and what is allowed, so `cabinet config check` can print them all at once; it prints on
one line whatever the file held (odd keys quoted by `key_name`, control characters
escaped). Pure code.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

MISSING = object()
T = TypeVar("T")


def or_default(value: T | None, default: T) -> T:
    """`value` unless it is None (a recorded error, or an optional key left out): 0 and False are values."""
    return default if value is None else value


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    section: str
    key: str
    value: Any
    allowed: str
    message: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: [{self.section}]" if self.section else self.file
        if self.key:
            where += f" {self.key}" if self.section else f": {self.key}"
        given = "" if self.value is MISSING else f" = {_show(self.value)}"
        text = f"{where}{given}: {self.message or 'invalid'}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text.translate(_ESCAPES)  # one line, whatever a key or a message quoted from the file holds


# control characters and line separators, as TOML escapes them
_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


class ConfigError(ValueError):
    """One or more config issues; `issues` has them all."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def read_source(path: str | Path) -> bytes:
    """A config or scenario file's bytes; ConfigError naming the file when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(
            [ConfigIssue(str(path), "", "", MISSING, "a readable file", f"cannot read: {e.strerror}")]
        ) from None


def _show(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # quoted, with any control character escaped: one line
    if isinstance(v, bool):
        return "true" if v else "false"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class Issues:
    """Collects issues for one file; sections hand out `Section` views."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigIssue] = []

    def add(self, section: str, key: str, value: Any, allowed: str, message: str) -> None:
        self.items.append(ConfigIssue(self.file, section, key, value, allowed, message))

    def section(self, name: str, data: Any) -> Section:
        if not isinstance(data, Mapping):
            self.add("", name, data, "a table", f"[{name}] must be a table")
            data = {}
        return Section(self, name, data)


@dataclass
class F:
    """A field: type name, bounds, choices, default (MISSING = required)."""

    kind: str  # int, float, number, str, bool, list, table, any
    default: Any = MISSING
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None
    help: str = ""
    check: Callable[[Any], str | None] | None = None  # returns a message when bad
    items: str | None = None  # element kind for lists

    def allowed(self) -> str:
        if self.choices is not None:
            return ", ".join(_show(c) for c in self.choices)
        text = _KINDS.get(self.kind, self.kind)
        if self.min is not None and self.max is not None:
            text += f" {self.min:g}..{self.max:g}"
        elif self.min is not None:
            text += f" >= {self.min:g}"
        elif self.max is not None:
            text += f" <= {self.max:g}"
        if self.help:
            text += f"; {self.help}"
        return text


# what each field kind is called in an error line
_KINDS = {
    "int": "an integer",
    "float": "a number",
    "number": "a number",
    "str": "a string",
    "bool": "true or false",
    "list": "a list",
    "table": "a table",
    "any": "a value",
}


def kind_of(v: Any) -> str:
    """What a TOML value is, for an error line: `a string`, `an integer`, `a table` ..."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a decimal number" if math.isfinite(v) else "a non-finite number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, Mapping):
        return "a table"
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return "a date/time"
    return type(v).__name__


def key_name(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (an empty or odd key still shows)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _show(key)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool): NaN, infinity and integers beyond a float's range are not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _type_ok(kind: str, v: Any) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind in ("float", "number"):
        return is_number(v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "list":
        return isinstance(v, list)
    if kind == "table":
        return isinstance(v, Mapping)
    return True


@dataclass
class Section:
    issues: Issues
    name: str
    data: Mapping[str, Any]
    used: set[str] = field(default_factory=set)

    def get(self, key: str, spec: F) -> Any:
        """The validated value, the default, or None after recording an issue."""
        self.used.add(key)
        if key not in self.data:
            if spec.default is MISSING:
                self.issues.add(self.name, key, MISSING, spec.allowed(), "required key is missing")
                return None
            return spec.default
        v = self.data[key]
        if not _type_ok(spec.kind, v):
            self.issues.add(
                self.name, key, v, spec.allowed(), f"expected {_KINDS.get(spec.kind, spec.kind)}, got {kind_of(v)}"
            )
            return None
        if spec.kind == "float" and isinstance(v, int):
            v = float(v)
        if spec.choices is not None and v not in spec.choices:
            self.issues.add(self.name, key, v, spec.allowed(), "not one of the allowed values")
            return None
        if (spec.min is not None and v < spec.min) or (spec.max is not None and v > spec.max):
            self.issues.add(self.name, key, v, spec.allowed(), "out of range")
            return None
        if spec.pattern is not None and not re.fullmatch(spec.pattern, v):
            self.issues.add(self.name, key, v, spec.allowed(), "badly formed")
            return None
        if spec.kind == "list" and spec.items is not None:
            for i, item in enumerate(v):
                if not _type_ok(spec.items, item):
                    self.issues.add(self.name, f"{key}[{i}]", item, f"a list of {spec.items}", "wrong element type")
                    return None
        if spec.check is not None:
            msg = spec.check(v)
            if msg:
                self.issues.add(self.name, key, v, spec.allowed(), msg)
                return None
        return v

    def table(self, key: str, required: bool = False) -> Mapping[str, Any]:
        self.used.add(key)
        v = self.data.get(key, MISSING)
        if v is MISSING:
            if required:
                self.issues.add(self.name, key, MISSING, "a table", "required table is missing")
            return {}
        if not isinstance(v, Mapping):
            self.issues.add(self.name, key, v, "a table", f"must be a table [{self.name}.{key}]")
            return {}
        return v

    def sub(self, key: str, required: bool = False) -> Section:
        return Section(self.issues, f"{self.name}.{key}", self.table(key, required))

    def error(self, key: str, value: Any, allowed: str, message: str) -> None:
        self.issues.add(self.name, key, value, allowed, message)

    def finish(self, also_known: Iterable[str] = ()) -> None:
        """Report keys nobody asked for, with a 'did you mean' when one is close."""
        known = set(self.used) | set(also_known)
        for key in self.data:
            if key in known:
                continue
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
            self.issues.add(self.name, key_name(key), self.data[key], ", ".join(sorted(known)) or "no keys", hint)


def number_pair(
    s: Section,
    key: str,
    default: tuple[float, float] | None,
    bounds: tuple[float, float],
    help_: str,
    order: str | None = None,
    allow_off: bool = False,
) -> tuple[float, float] | None:
    """A list of two finite numbers within `bounds` (limits, ranges); `order` "a < b", "a > b" or
    "a != b" between them; [] turns it off (None) when `allow_off`. The default when given badly."""
    lo, hi = bounds
    allowed = (
        f"two numbers [a, b] in {lo:g}..{hi:g}{' with ' + order if order else ''}"
        f"{', or [] = off' if allow_off else ''}; {help_}"
    )
    v = s.get(key, F("list", default=list(default) if default is not None else [], help=allowed))
    if v is None:
        return default
    if allow_off and v == []:
        return None
    if len(v) != 2 or not all(is_number(x) for x in v):
        s.error(key, v, allowed, "must be a list of two finite numbers")
        return default
    a, b = float(v[0]), float(v[1])
    if not (lo <= a <= hi and lo <= b <= hi):
        s.error(key, v, allowed, "out of range")
        return default
    if (order == "a < b" and not a < b) or (order == "a > b" and not a > b) or (order == "a != b" and a == b):
        s.error(key, v, allowed, f"the two numbers must satisfy {order}")
        return default
    return a, b


NAME_RE = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
