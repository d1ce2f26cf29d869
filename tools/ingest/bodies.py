"""Stored batch bodies -> readings-table rows, for `Store.materialize`: version 1 bodies by
themselves, version 2 bodies with the cabinet's catalogue (docs/batch-format.md §1.6, §8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agent.model import Reading
from agent.wire.batch import BatchError, decode_body
from agent.wire.batch_v2 import catalogue_ref, decode_v2, is_v2
from agent.wire.catalogue import decode
from agent.wire.cose import payload_of

Lookup = Callable[[str, bytes], tuple[bytes, bytes] | None]  # (cabinet, ref) -> (id, body) or None


def readings_of(
    cabinet: str, envelope: bytes, catalogue: Lookup, names: dict[tuple[str, bytes], list[str]]
) -> list[Reading]:
    """The readings of a stored (verified on arrival) envelope. `names` caches the catalogues'
    point names by (cabinet, ref). Raises ValueError (BatchError ...) naming what is wrong."""
    body = payload_of(envelope)
    if not is_v2(body):
        return decode_body(body)
    key = (cabinet, catalogue_ref(body))
    if key not in names:
        found = catalogue(*key)
        if found is None:  # the ingest stores a v2 batch only once it holds its catalogue
            raise BatchError(f"catalogue {key[1].hex()} of cabinet {cabinet} is not stored")
        names[key] = decode(found[1]).names()
    return decode_v2(body, names[key])


def split_value(value: Any) -> tuple[str, float | None, str | None]:
    """A reading's value as (kind, num, text) columns."""
    if value is None:
        return "n", None, None
    if isinstance(value, bool):
        return "b", float(value), None
    if isinstance(value, int):
        return "i", float(value), None
    if isinstance(value, float):
        return "f", value, None
    return "s", None, str(value)


def rows_of(readings: Iterable[Any]) -> list[tuple]:
    """Readings (agent.model.Reading) as readings-table rows."""
    out = []
    for r in readings:
        kind, num, text = split_value(r.value)
        out.append(
            (
                r.point,
                r.t,
                kind,
                num,
                text,
                str(r.quality.value if hasattr(r.quality, "value") else r.quality),
                r.reason,
            )
        )
    return out
