"""The Gateway API 2.7.1 read operations (docs/talq.md §1): a request (method, path, query,
headers) in, a status and a JSON body out. No sockets here (server.py carries the bytes).

GET /devices, /devices/{deviceAddress}, /devices/{deviceAddress}/{functionId},
/devices/{deviceAddress}/{functionId}/{attributeName}, /device-classes,
/device-classes/{className}. Every request needs the `talq-api-version` header (major 2)
and `clientAddress` (a UUID); an error is a list of TALQErrorMessage with its key.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tools.talq.mapping import DeviceMap, Latest, attribute, device, device_class, function

API_VERSION = "2.7.1"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SCOPES = {"configuration", "measurement", "operational", "event"}
MEASURED_SCOPES = {"measurement", "event"}  # a point-backed attribute; a fixed one is configuration


class Source(Protocol):
    def devices(self) -> list[DeviceMap]: ...
    def latest(self, cabinet: str) -> Latest: ...


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


def error(status: int, key: str, description: str) -> Answer:
    return Answer(status, [{"key": key, "description": description}])


def _is_uuid(text: str) -> bool:
    if not UUID_RE.match(text):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _int(query: Mapping[str, Sequence[str]], name: str) -> int | Answer | None:
    values = query.get(name)
    if not values:
        return None
    try:
        n = int(values[-1])
    except ValueError:
        return error(400, "parameterValueNotValid", f"query parameter {name}={values[-1]!r}: not an integer")
    return max(n, 0)  # the OAS allows any integer: a negative offset or limit counts as 0


def handle(
    method: str, path: str, query: Mapping[str, Sequence[str]], headers: Mapping[str, str], src: Source
) -> Answer:
    """The answer to one request (headers: lower-case names)."""
    if method not in ("GET", "HEAD"):
        return error(405, "genericError", f"{method} {path}: this gateway does not support it yet (docs/talq.md)")
    version = headers.get("talq-api-version")
    if version is None:
        return error(400, "headerMissing", "the talq-api-version header is missing")
    if not re.fullmatch(r"2(\.\d+){0,2}", version.strip()):
        return error(400, "headerValueNotValid", f"talq-api-version {version!r}: this gateway speaks {API_VERSION}")
    parts = [p for p in path.split("/") if p]
    client = query.get("clientAddress")
    if not client:
        return error(400, "parameterMissing", "the clientAddress query parameter is missing")
    if not _is_uuid(client[-1]):
        return error(400, "parameterValueNotValid", f"clientAddress {client[-1]!r}: not a UUID")
    known = {"clientAddress"} | (
        {"deviceClasses", "offset", "limit"}
        if parts == ["devices"]
        else {"attributeScope"}
        if len(parts) == 3
        else set()
    )
    unknown = sorted(set(query) - known)
    if unknown:
        return error(400, "parameterValueNotValid", f"query parameter {unknown[0]!r}: not one of {sorted(known)}")
    repeated = sorted(k for k, v in query.items() if len(v) > 1 and k != "deviceClasses")
    if repeated:
        return error(400, "parameterValueNotValid", f"query parameter {repeated[0]!r}: given more than once")
    if parts and parts[0] == "device-classes" and len(parts) <= 2:
        return _classes(parts[1:], src)
    if parts and parts[0] == "devices" and 1 <= len(parts) <= 4:
        return _devices(parts[1:], query, src)
    return error(404, "resourceNotFound", f"{path}: no such resource on this gateway")


def _classes(rest: list[str], src: Source) -> Answer:
    classes: dict[str, dict[str, Any]] = {}
    for dm in src.devices():
        classes.setdefault(dm.class_name, device_class(dm))
    if not rest:
        return Answer(200, [classes[k] for k in sorted(classes)])
    if rest[0] not in classes:
        return error(404, "resourceNotFound", f"device class {rest[0]!r}: not found")
    return Answer(200, classes[rest[0]])


def _devices(rest: list[str], query: Mapping[str, Sequence[str]], src: Source) -> Answer:
    if not rest:
        return _list(query, src)
    address = rest[0]
    if not _is_uuid(address):
        return error(400, "parameterValueNotValid", f"deviceAddress {address!r}: not a UUID")
    dm = next((d for d in src.devices() if d.address == address.lower()), None)
    if dm is None:
        return error(404, "resourceNotFound", f"device {address}: not found")
    latest = src.latest(dm.cabinet)
    if len(rest) == 1:
        return Answer(200, device(dm, latest))
    f = dm.function(rest[1])
    if f is None:
        return error(404, "resourceNotFound", f"device {address}: no function {rest[1]!r}")
    if len(rest) == 2:
        scope = query.get("attributeScope")
        body = function(f, latest)
        if scope:
            if scope[-1] not in SCOPES:
                return error(400, "parameterValueNotValid", f"attributeScope {scope[-1]!r}: one of {sorted(SCOPES)}")
            measured = scope[-1] in MEASURED_SCOPES
            for a in f.attrs:
                if bool(a.point) != measured:
                    body.pop(a.name, None)
        return Answer(200, body)
    found = next((x for x in f.attrs if x.name == rest[2]), None)
    if found is None:
        return error(404, "resourceNotFound", f"device {address}, function {f.id}: no attribute {rest[2]!r}")
    return Answer(200, attribute(found, latest))


def _list(query: Mapping[str, Sequence[str]], src: Source) -> Answer:
    offset, limit = _int(query, "offset"), _int(query, "limit")
    for bad in (offset, limit):
        if isinstance(bad, Answer):
            return bad
    classes = set(query.get("deviceClasses", ()))
    dms = [d for d in src.devices() if not classes or d.class_name in classes]
    start = offset if isinstance(offset, int) else 0
    end = start + limit if isinstance(limit, int) else None
    page = dms[start:end]
    body = [device(d, src.latest(d.cabinet)) for d in page]
    if offset is None and limit is None:
        return Answer(200, body)
    pages = (("pagination-count", len(page)), ("pagination-offset", start), ("pagination-totalCount", len(dms)))
    return Answer(200, body, tuple((k, str(v)) for k, v in pages))
