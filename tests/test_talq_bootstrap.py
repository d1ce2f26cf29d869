"""Bootstrap towards a CMS (TALQ 2.7.1 §5.1, tools/talq/bootstrap.py) against a CMS stand-in
written here from the CMS OpenAPI file: a real HTTP server that checks every request the
gateway sends (operation, talq-api-version, clientAddress, talqRequestId, and the body against
the data model's schema, with jsonschema-rs) and answers as a CMS does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema_rs
import pytest

from tests.pgdb import fresh_database
from tests.test_talq_serve import CAB, store_cabinet
from tools.talq.bootstrap import NIL, BootstrapError, bootstrap, http_sender
from tools.talq.mapping import device_address
from tools.talq.reference import load
from tools.talq.source import PgSource

pytestmark = pytest.mark.integration
MODEL_REF = "./talq-data-model-2-7-1-online.json#"


def _local_refs(node: Any) -> Any:
    """The CMS file's references into the data model file, made local to one combined document."""
    if isinstance(node, dict):
        return {k: (v.replace(MODEL_REF, "#") if k == "$ref" else _local_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


class Cms:
    """What the CMS OAS says about a request: which operation, and is its body valid."""

    def __init__(self) -> None:
        self.api = load("cms")
        self.components = load("model")["components"]
        self.ops: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for path, item in self.api["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for method, op in item.items():
                self.ops.append((pattern, method.upper(), op))
        self.gateway = str(uuid.uuid4())
        self.address = str(uuid.uuid4())
        self.seen: list[tuple[str, str, Any]] = []
        self.errors: list[str] = []
        self.refuse: str | None = None  # "METHOD /path" answered 403

    def check(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any) -> None:
        op = next((o for p, m, o in self.ops if m == method and p.match(path)), None)
        if op is None:
            self.errors.append(f"{method} {path}: not an operation of the CMS API")
            return
        for param in op.get("parameters", []):
            where = headers if param["in"] == "header" else query if param["in"] == "query" else None
            if where is None or not param.get("required"):
                continue
            if param["name"] not in where:
                self.errors.append(f"{method} {path}: required {param['in']} {param['name']} missing")
            elif param.get("schema", {}).get("format") == "uuid":
                value = where[param["name"]]
                try:
                    uuid.UUID(value[0] if isinstance(value, list) else value)
                except ValueError:
                    self.errors.append(f"{method} {path}: {param['name']} {value!r} not a UUID")
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            doc = {**_local_refs(schema), "components": _local_refs(self.components)}
            validator = jsonschema_rs.Draft4Validator(doc)
            for e in validator.iter_errors(body):
                self.errors.append(f"{method} {path}: {e.message} at {list(e.instance_path)}")

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.refuse == f"{method} {path}":
            return 403, [{"key": "genericError", "description": "not now"}]
        if method == "POST" and path == "/devices" and len(self.seen) == 1:  # the gateway announcement
            gw = json.loads(json.dumps(body[0]))
            gw["address"] = self.gateway
            for f in gw["functions"]:
                if f["type"] == "GatewayFunction":
                    f["gatewayAddress"]["value"] = self.gateway
                    f["cmsAddress"]["value"] = self.address
            return 201, [gw]
        return (200 if method == "PATCH" else 201), (body if method == "POST" else None)


@pytest.fixture
def cms() -> Iterator[tuple[Cms, str]]:
    state = Cms()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.loads(raw) if raw else None
            query = parse_qs(url.query)
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.seen.append((self.command, url.path, body))
            path = url.path.removeprefix("/talq")  # the cmsUri's base
            state.check(self.command, path, query, headers, body)
            status, answer = state.answer(self.command, path, body)
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PATCH = do_PUT = do_GET = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/talq"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with fresh_database("cabinet_talq_boot") as dsn:
        store_cabinet(dsn, CAB)
        store_cabinet(dsn, "CAB-0043")
        yield dsn


def test_bootstrap_in_the_order_of_the_spec_with_valid_bodies(cms, dsn):
    state, url = cms
    src = PgSource(dsn, "test-db")
    try:
        r = bootstrap(url, "https://gw.example.org/talq", src, http_sender())
    finally:
        src.close()
    assert state.errors == []
    steps = [(m, p) for m, p, _ in state.seen]
    assert steps == [
        ("POST", "/talq/devices"),
        ("POST", "/talq/device-classes"),
        ("PATCH", f"/talq/devices/{state.gateway}"),
        ("POST", "/talq/services"),
        ("POST", "/talq/device-classes"),
        ("POST", "/talq/device-classes"),
        ("POST", "/talq/devices"),
    ]
    assert (r.gateway_address, r.cms_address, r.classes, r.devices) == (state.gateway, state.address, 1, 2)
    first = state.seen[0][2][0]
    assert first["address"] == NIL
    gwf = next(f for f in first["functions"] if f["type"] == "GatewayFunction")
    assert gwf["gatewayUri"]["value"] == "https://gw.example.org/talq"
    assert state.seen[5][2] == []  # the empty list ends the bootstrap
    devices = state.seen[6][2]
    assert sorted(d["address"] for d in devices) == sorted([device_address(CAB), device_address("CAB-0043")])
    assert devices[0]["class"] == state.seen[4][2][0]["name"]


def test_the_stand_in_would_see_a_wrong_body(cms):
    """The stand-in is honest: a device without its required class is an error it reports."""
    state, _ = cms
    state.check("POST", "/devices", {}, {}, [{"address": NIL, "name": "x"}])
    assert any("class" in e for e in state.errors)
    assert any("talq-api-version" in e for e in state.errors)


def test_a_refused_step_stops_the_bootstrap_with_what_the_cms_said(cms, dsn):
    state, url = cms
    state.refuse = "POST /services"
    src = PgSource(dsn, "test-db")
    try:
        with pytest.raises(BootstrapError, match=r"POST /services \(services\): the CMS answered 403.*not now"):
            bootstrap(url, "http://gw", src, http_sender())
    finally:
        src.close()
    assert [p for _, p, _ in state.seen][-1] == "/talq/services"  # nothing after the refusal


def test_the_command_bootstraps_and_an_unreachable_cms_is_one_line(cms, dsn):
    state, url = cms
    cmd = [sys.executable, "-m", "tools.cli.table", "talq", "bootstrap", "--db", dsn, "--gateway-uri", "http://gw"]
    r = subprocess.run([*cmd, "--cms", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"gatewayAddress {state.gateway}" in r.stdout and "2 device(s)" in r.stdout
    assert state.errors == []
    r = subprocess.run([*cmd, "--cms", "http://127.0.0.1:1/talq"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("cabinet talq bootstrap: POST http://127.0.0.1:1/talq/devices")
