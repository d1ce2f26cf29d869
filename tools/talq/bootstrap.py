"""Bootstrap towards a CMS (TALQ 2.7.1 §5.1), gateway -> CMS, in order:

1. gateway announcement: POST /devices with the gateway's device (its GatewayFunction with
   `gatewayUri`, nil addresses); the CMS answers with the device holding the new
   `gatewayAddress` (the device's address) and its `cmsAddress`; POST /device-classes with the
   gateway's class; PATCH /devices/{gatewayAddress} with its attribute values;
2. services announcement: POST /services;
3. device-class announcement: POST /device-classes with the cabinets' classes, then an empty
   list (the end of the bootstrap);
4. device announcement: POST /devices with every cabinet's device.

Every request carries `talq-api-version`, `clientAddress` (the gatewayAddress once known) and a
fresh `talqRequestId`. A refusal stops the bootstrap with what the CMS said.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.talq.api import API_VERSION, Source
from tools.talq.mapping import device, device_class

NIL = "00000000-0000-0000-0000-000000000000"
GATEWAY_CLASS = "cabinet-agent-gateway"
VENDOR = "cabinet-agent"
SERVICES: list[dict[str, Any]] = [{"name": "ConfigurationService"}]  # device, function, attribute reads
Send = Callable[[str, str, Any], tuple[int, Any]]  # (method, url, body) -> (status, decoded JSON or None)


class BootstrapError(RuntimeError):
    """The CMS refused a step or cannot be reached; the message names the step."""


@dataclass(frozen=True)
class Result:
    gateway_address: str
    cms_address: str
    classes: int
    devices: int


def http_sender(timeout: float = 10.0, context: ssl.SSLContext | None = None, token: str | None = None) -> Send:
    """Requests over urllib (https with `context`: a client certificate there gives mutual TLS)."""

    def send(method: str, url: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("talq-api-version", API_VERSION)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise BootstrapError(f"{method} {url}: {getattr(e, 'reason', e)}") from e
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    return send


def gateway_device(address: str, gateway_uri: str, cms_uri: str, cms_address: str) -> dict[str, Any]:
    def s(v: str) -> dict[str, Any]:
        return {"type": "AttributeString", "value": v}

    def u(v: str) -> dict[str, Any]:
        return {"type": "AttributeUri", "value": v}

    return {
        "address": address,
        "name": "cabinet-agent TALQ gateway",
        "class": GATEWAY_CLASS,
        "functions": [
            {
                "id": "gateway",
                "type": "GatewayFunction",
                "gatewayUri": u(gateway_uri),
                "cmsUri": u(cms_uri),
                "gatewayAddress": s(address),
                "cmsAddress": s(cms_address),
                "vendor": s(VENDOR),
            },
            {"id": "basic", "type": "BasicFunction", "displayName": s("cabinet-agent TALQ gateway")},
        ],
    }


GATEWAY_CLASS_DOC: dict[str, Any] = {
    "name": GATEWAY_CLASS,
    "functions": [
        {
            "functionId": "gateway",
            "type": "GatewayFunction",
            "attributes": [{"name": n} for n in ("gatewayUri", "cmsUri", "gatewayAddress", "cmsAddress", "vendor")],
        },
        {"functionId": "basic", "type": "BasicFunction", "attributes": [{"name": "displayName", "readOnly": True}]},
    ],
}


def _gateway_addresses(body: Any) -> tuple[str, str]:
    """(gatewayAddress, cmsAddress) from the CMS's answer to the gateway announcement."""
    dev = body[0] if isinstance(body, list) and body else body
    if not isinstance(dev, dict):
        raise BootstrapError("POST /devices (gateway announcement): the CMS answered no device")
    gw = next((f for f in dev.get("functions", []) if isinstance(f, dict) and f.get("type") == "GatewayFunction"), {})
    address = gw.get("gatewayAddress", {}).get("value") if isinstance(gw.get("gatewayAddress"), dict) else None
    address = address if address and address != NIL else dev.get("address")
    cms = gw.get("cmsAddress", {}).get("value") if isinstance(gw.get("cmsAddress"), dict) else None
    for what, v in (("gatewayAddress", address), ("cmsAddress", cms)):
        try:
            if not isinstance(v, str) or str(uuid.UUID(v)) == NIL:
                raise ValueError
        except ValueError:
            raise BootstrapError(f"POST /devices (gateway announcement): the CMS gave no valid {what}: {v!r}") from None
    return str(address), str(cms)


def bootstrap(cms_uri: str, gateway_uri: str, src: Source, send: Send) -> Result:
    base = cms_uri.rstrip("/")

    def call(method: str, path: str, client: str, body: Any, ok: tuple[int, ...], step: str) -> Any:
        url = f"{base}{path}?clientAddress={client}&talqRequestId={uuid.uuid4()}"
        status, answer = send(method, url, body)
        if status not in ok:
            raise BootstrapError(f"{method} {path} ({step}): the CMS answered {status}: {json.dumps(answer)[:500]}")
        return answer

    answer = call("POST", "/devices", NIL, [gateway_device(NIL, gateway_uri, cms_uri, NIL)], (200, 201), "gateway")
    gw, cms = _gateway_addresses(answer)
    call("POST", "/device-classes", gw, [GATEWAY_CLASS_DOC], (200, 201), "gateway class")
    call("PATCH", f"/devices/{gw}", gw, gateway_device(gw, gateway_uri, cms_uri, cms), (200, 202), "gateway values")
    call("POST", "/services", gw, SERVICES, (200, 201), "services")
    dms = src.devices()
    classes: dict[str, dict[str, Any]] = {}
    for dm in dms:
        classes.setdefault(dm.class_name, device_class(dm))
    if classes:
        call("POST", "/device-classes", gw, [classes[k] for k in sorted(classes)], (200, 201), "device classes")
    call("POST", "/device-classes", gw, [], (200, 201), "end of device classes")
    if dms:
        devices = [device(dm, src.latest(dm.cabinet)) for dm in dms]
        call("POST", "/devices", gw, devices, (200, 201, 202), "devices")
    return Result(gw, cms, len(classes), len(dms))
