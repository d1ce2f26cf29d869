"""The point catalogue: what a cabinet's points are (docs/batch-format.md §8), as one
deterministic CBOR document whose SHA-256 is its id. Pure: no I/O, no clock.

A catalogue says, per point: name, unit, value kind, decimals, device, bus, role (the
lighting segment or climate function it serves) and description; and for the cabinet:
its id, the site (latitude, longitude, time zone), the board and the config version.
Batch format v2 (agent/wire/batch_v2.py) names a catalogue by the first REF_LEN bytes of
its id and its points by their index in `points` (sorted by name).

`encode` gives the one encoding of a catalogue (RFC 8949 §4.2.1 core deterministic
encoding); `decode` accepts only that encoding (it re-encodes and compares), so the hash
of the bytes is the identity of the content.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from agent.wire.deterministic import deterministic

VERSION = 1
ID_LEN = 32  # SHA-256 of the encoded catalogue
REF_LEN = 8  # a batch names its catalogue by the first 8 bytes of the id
MAX_POINTS = 65_536
MAX_BYTES = 4 * 1024 * 1024
MAX_TEXT = 1024
KINDS = ("", "bool", "int", "float", "str")  # "" = not declared (any value)
POINT_FIELDS = ("name", "unit", "kind", "decimals", "device", "bus", "role", "description")
KEYS = {"v", "cab", "board", "config_version", "site", "points"}


class CatalogueError(ValueError):
    """A catalogue cannot be built (bad entry) or decoded (malformed, not canonical)."""


@dataclass(frozen=True)
class PointInfo:
    name: str
    unit: str = ""
    kind: str = ""  # one of KINDS
    decimals: int | None = None  # the resolution worth reporting (None: as measured)
    device: str = ""  # the device or input producing it ("" for the agent's own)
    bus: str = ""  # the field bus of that device ("" when none)
    role: str = ""  # e.g. "lighting.main.relay", "climate.temperature" ("" when none)
    description: str = ""


@dataclass(frozen=True)
class Site:
    latitude: float
    longitude: float
    timezone: str


@dataclass(frozen=True)
class Catalogue:
    cabinet: str
    board: str
    config_version: int
    site: Site
    points: tuple[PointInfo, ...]  # sorted by name (code-point order), unique

    def names(self) -> list[str]:
        return [p.name for p in self.points]

    def index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.points)}


def build(cabinet: str, board: str, config_version: int, site: Site, points: Sequence[PointInfo]) -> Catalogue:
    """A catalogue with its points sorted by name; duplicate names: the first one is kept."""
    seen: dict[str, PointInfo] = {}
    for p in points:
        seen.setdefault(p.name, p)
    cat = Catalogue(cabinet, board, config_version, site, tuple(seen[n] for n in sorted(seen)))
    _check(cat)
    return cat


def _text(v: Any, what: str, empty: bool = True) -> str:
    if not isinstance(v, str) or len(v) > MAX_TEXT or (not empty and not v):
        article = "a" if empty else "a non-empty"
        raise CatalogueError(f"{what} must be {article} string of at most {MAX_TEXT} characters")
    return v


def _check(cat: Catalogue) -> None:
    _text(cat.cabinet, "cab", empty=False)
    _text(cat.board, "board")
    if type(cat.config_version) is not int or not 0 <= cat.config_version < 2**63:
        raise CatalogueError(f"config_version must be an unsigned integer, got {cat.config_version!r}")
    for what, v, lim in (("latitude", cat.site.latitude, 90.0), ("longitude", cat.site.longitude, 180.0)):
        if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > lim:
            raise CatalogueError(f"site {what} must be a number within ±{lim:g}, got {v!r}")
    _text(cat.site.timezone, "site timezone")
    if not cat.points or len(cat.points) > MAX_POINTS:
        raise CatalogueError(f"a catalogue holds 1..{MAX_POINTS} points, got {len(cat.points)}")
    prev = None
    for i, p in enumerate(cat.points):
        where = f"points[{i}]"
        _text(p.name, f"{where} name", empty=False)
        if prev is not None and not prev < p.name:
            raise CatalogueError(f"{where} {p.name!r}: names must be unique and sorted")
        prev = p.name
        for f in ("unit", "device", "bus", "role", "description"):
            _text(getattr(p, f), f"{where} ({p.name}) {f}")
        if p.kind not in KINDS:
            raise CatalogueError(f"{where} ({p.name}) kind {p.kind!r} is not one of {KINDS}")
        if p.decimals is not None and (type(p.decimals) is not int or not 0 <= p.decimals <= 15):
            raise CatalogueError(f"{where} ({p.name}) decimals must be an integer 0..15 or null")


def encode(cat: Catalogue) -> bytes:
    """The catalogue's one encoding (deterministic CBOR map, points as 8-element arrays)."""
    _check(cat)
    doc = {
        "v": VERSION,
        "cab": cat.cabinet,
        "board": cat.board,
        "config_version": cat.config_version,
        "site": {"lat": float(cat.site.latitude), "lon": float(cat.site.longitude), "tz": cat.site.timezone},
        "points": [[getattr(p, f) for f in POINT_FIELDS] for p in cat.points],
    }
    return deterministic(doc)


def catalogue_id(data: bytes) -> bytes:
    """The id of an encoded catalogue: SHA-256 of its bytes."""
    return hashlib.sha256(bytes(data)).digest()


def ref_of(cat_id: bytes) -> bytes:
    return bytes(cat_id[:REF_LEN])


def decode(data: bytes) -> Catalogue:
    """Encoded bytes -> Catalogue; CatalogueError naming what is wrong (also for an
    encoding that is not the deterministic one)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CatalogueError(f"a catalogue must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_BYTES:
        raise CatalogueError(f"catalogue is {len(data)} bytes; at most {MAX_BYTES}")
    fp = io.BytesIO(data)
    try:
        doc = cbor2.CBORDecoder(fp, allow_indefinite=False, allow_duplicate_keys=False, max_depth=8).decode()
    except Exception as e:  # noqa: BLE001 - cbor2 raises several types on junk
        raise CatalogueError(f"catalogue is not CBOR: {type(e).__name__}: {e}") from None
    if fp.tell() != len(data):
        raise CatalogueError(f"{len(data) - fp.tell()} bytes after the catalogue")
    if not isinstance(doc, dict) or set(doc) != KEYS:
        raise CatalogueError(f"a catalogue is a map with exactly the keys {sorted(KEYS)}")
    if doc["v"] != VERSION or type(doc["v"]) is not int:
        raise CatalogueError(f"unsupported catalogue version {doc['v']!r} (this decoder reads {VERSION})")
    site = doc["site"]
    if not isinstance(site, dict) or set(site) != {"lat", "lon", "tz"}:
        raise CatalogueError("site must be a map with exactly lat, lon, tz")
    pts = doc["points"]
    if not isinstance(pts, list):
        raise CatalogueError("points must be an array")
    points = []
    for i, p in enumerate(pts):
        if not isinstance(p, list) or len(p) != len(POINT_FIELDS):
            raise CatalogueError(f"points[{i}] must be an array of {len(POINT_FIELDS)}: {', '.join(POINT_FIELDS)}")
        points.append(PointInfo(*p))
    cat = Catalogue(
        doc["cab"], doc["board"], doc["config_version"], Site(site["lat"], site["lon"], site["tz"]), tuple(points)
    )
    _check(cat)
    if encode(cat) != data:
        raise CatalogueError("catalogue is not in its deterministic encoding")
    return cat
