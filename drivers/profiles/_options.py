"""Checking the options a config gives a profile, with errors that name the key.

Owns `resolve(declared, given)`: fills defaults from the profile's `Option`s, checks
kind, choices and range of every value, and rejects unknown keys; and `fail()`, the
one way profiles word a ProfileError: `key` is the option path, the message reads
"problem: got VALUE; allowed: ...". The
config layer may already have done the same; running it again is harmless, and it
keeps `SPEC.build(...)` safe to call directly. Helpers for values nested in lists
and tables (`as_int`, `as_number`, ...) take a `key` path such as `points[2].address`
so errors point at the exact place. Pure code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn, TypeGuard

from drivers.profiles.base import Option, ProfileError

__all__ = ["as_bool", "as_int", "as_list", "as_number", "as_str", "as_subset", "as_table", "fail", "resolve", "show"]


def show(v: Any) -> str:
    """A value as the user wrote it in TOML: "text", true/false, numbers, lists."""
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(key: str, value: Any, problem: str, allowed: str) -> NoReturn:
    """Raise the ProfileError profiles use. `key` is the option path; the message
    says what is wrong, the value given and what is allowed (the config layer puts
    file, section and key in front)."""
    raise ProfileError(key, f"{problem}: got {show(value)}; allowed: {allowed}", value, allowed)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> TypeGuard[int | float]:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g}..{hi:g}"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any"


def _kind_text(kind: str, lo: float | None, hi: float | None) -> str:
    return kind if lo is None and hi is None else f"{kind} {_range_text(lo, hi)}"


def as_int(key: str, v: Any, lo: int | None = None, hi: int | None = None) -> int:
    if not _is_int(v):
        fail(key, v, "not an integer", _kind_text("an integer", lo, hi))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        fail(key, v, "out of range", _range_text(lo, hi))
    return v


def as_number(key: str, v: Any, lo: float | None = None, hi: float | None = None) -> float | int:
    if not _is_number(v):
        fail(key, v, "not a finite number", _kind_text("a number", lo, hi))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        fail(key, v, "out of range", _range_text(lo, hi))
    return v


def as_str(key: str, v: Any, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(v, str):
        fail(key, v, "not a string", "one of " + ", ".join(map(show, choices)) if choices else "a string")
    if choices is not None and v not in choices:
        fail(key, v, "not a known choice", "one of " + ", ".join(map(show, choices)))
    return v


def as_bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        fail(key, v, "not a boolean", "true or false")
    return v


def as_list(key: str, v: Any) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        fail(key, v, "not a list", "a list, e.g. [1, 2]")
    return list(v)


def as_table(key: str, v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        fail(key, v, "not a table", "a table of key = value")
    return v


def as_subset(key: str, value: Any, known: Mapping[str, Any] | tuple[str, ...]) -> list[str]:
    """A non-empty list of names from `known`, each at most once (e.g. `groups`)."""
    names = ", ".join(map(show, known))
    items = as_list(key, value)
    if not items:
        fail(key, value, "empty: nothing would be polled", f"a non-empty list of {names}")
    seen: list[str] = []
    for i, name in enumerate(items):
        if not isinstance(name, str) or name not in known:
            fail(f"{key}[{i}]", name, "not a known name", f"one of {names}")
        if name in seen:
            fail(f"{key}[{i}]", name, "listed twice", "each name once")
        seen.append(name)
    return seen


def _check(key: str, opt: Option, v: Any) -> Any:
    if v is None and opt.default is None:
        return None  # "not set": the profile derives a value (documented per option)
    if opt.kind == "bool":
        v = as_bool(key, v)
    elif opt.kind == "int":
        v = as_int(key, v)
    elif opt.kind == "float":
        v = as_number(key, v)
    elif opt.kind == "str":
        v = as_str(key, v)
    elif opt.kind == "list":
        v = as_list(key, v)
    elif opt.kind == "table":
        v = as_table(key, v)
    else:  # a profile bug, not a config error
        raise TypeError(f"option {key!r} has unknown kind {opt.kind!r}")
    if opt.choices is not None and v not in opt.choices:
        fail(key, v, "not a known choice", "one of " + ", ".join(map(show, opt.choices)))
    if (opt.min is not None and v < opt.min) or (opt.max is not None and v > opt.max):
        fail(key, v, "out of range", _range_text(opt.min, opt.max))
    return v


def resolve(declared: Mapping[str, Option], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Given options (possibly already default-filled) -> checked options with defaults."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        fail("options", given, "not a table", "a table of option = value")
    for k in given:
        if k not in declared:
            allowed = ", ".join(sorted(declared)) if declared else "none (this profile takes no options)"
            fail(str(k), given[k], "unknown option", allowed)
    return {k: _check(k, opt, given.get(k, opt.default)) for k, opt in declared.items()}
