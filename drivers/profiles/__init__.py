"""Device profiles, one module per device type; this registry finds them.

Adding a device is adding a module here that defines `SPEC` (a ProfileSpec).
"""

from __future__ import annotations

import importlib
import pkgutil

from drivers.profiles.base import ProfileSpec

_SKIP = {"base"}
_cache: dict[str, ProfileSpec] | None = None


def _load() -> dict[str, ProfileSpec]:
    global _cache
    if _cache is None:
        found: dict[str, ProfileSpec] = {}
        for mod in pkgutil.iter_modules(__path__):
            if mod.name in _SKIP or mod.name.startswith("_"):
                continue
            spec = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "SPEC", None)
            if isinstance(spec, ProfileSpec):
                found[spec.name] = spec
        _cache = found
    return _cache


def names() -> list[str]:
    return sorted(_load())


def get(name: str) -> ProfileSpec:
    """The profile called `name`; KeyError if there is none."""
    return _load()[name]
