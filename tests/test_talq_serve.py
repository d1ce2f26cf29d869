"""`cabinet talq serve` (tools/talq/server.py, api.py, source.py) answers the Gateway API's
reads from a real PostgreSQL ingest over real HTTP: devices, functions, attributes and device
classes from the stored catalogue and last values, with TALQ's errors for bad requests."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import encode_body
from agent.wire.catalogue import PointInfo, Site, build, encode
from agent.wire.catalogue_seal import seal_catalogue
from tests.pgdb import fresh_database
from tools.ingest.core import IngestCore
from tools.ingest.store import Commit, Store
from tools.talq.mapping import device_address
from tools.talq.server import Gateway
from tools.talq.source import PgSource

pytestmark = pytest.mark.integration
CAB = "CAB-0042"
CLIENT = "3f1e6a52-8a4b-4c1e-9d53-0c8f4e2b7a10"
T0 = dt.datetime(2026, 1, 15, 22, 0, tzinfo=dt.UTC).timestamp()
POINTS = [
    PointInfo("dio.door", "", "bool", None, "dio", "", "climate.door.input", "door contact"),
    PointInfo("dio.flood", "", "bool", None, "dio", "", "climate.flood.input", "flood"),
    PointInfo("meter_seg1.voltage", "V", "float", 1, "meter_seg1", "rs485", "lighting.seg1.voltage", "voltage"),
    PointInfo("meter_seg1.current", "A", "float", 2, "meter_seg1", "rs485", "", "current"),
    PointInfo("meter_seg1.active_power", "W", "float", 0, "meter_seg1", "rs485", "lighting.seg1.power", "power"),
    PointInfo("meter_seg1.import_energy", "kWh", "float", 2, "meter_seg1", "rs485", "lighting.seg1.energy", "energy"),
    PointInfo("lighting.seg1.on", "", "bool", None, "lighting", "", "lighting.seg1", "on"),
    PointInfo("lighting.seg1.burning_h", "h", "float", 2, "lighting", "", "lighting.seg1", "burning hours"),
    PointInfo("lighting.seg1.switches", "", "int", None, "lighting", "", "lighting.seg1", "switches"),
    PointInfo("relays.relay_1", "", "bool", None, "relays", "rs485", "lighting.seg1.contactor", "relay 1"),
]
READINGS = [
    Reading("dio.door", T0, True, Quality.GOOD),
    Reading("dio.flood", T0, False, Quality.GOOD),
    Reading("meter_seg1.voltage", T0, 231.5, Quality.GOOD),
    Reading("meter_seg1.voltage", T0 + 60, None, Quality.BAD, "timeout"),
    Reading("meter_seg1.current", T0, 4.25, Quality.GOOD),
    Reading("meter_seg1.active_power", T0, 950.0, Quality.GOOD),
    Reading("meter_seg1.import_energy", T0, 1234.5, Quality.GOOD),
    Reading("lighting.seg1.on", T0, True, Quality.GOOD),
    Reading("lighting.seg1.burning_h", T0, 4021.5, Quality.GOOD),
    Reading("lighting.seg1.switches", T0, 812, Quality.GOOD),
    Reading("relays.relay_1", T0, True, Quality.GOOD),
]


def store_cabinet(dsn: str, cabinet: str = CAB) -> None:
    """`cabinet`'s catalogue (POINTS) and READINGS, stored and materialized as the ingest does."""
    store = Store(dsn)
    try:
        key = Ed25519PrivateKey.generate()
        kid = cose.key_id(key.public_key())
        store.add_key(cabinet, kid, cose.raw_public(key.public_key()), 0.0)
        topic = cose.telemetry_topic("city/v1", cabinet)
        cat = build(cabinet, "sim", 7, Site(52.52, 13.405, "Europe/Berlin"), POINTS)
        core, commit = IngestCore(store), Commit()
        message = seal_catalogue(encode(cat), key=key, kid=kid, cabinet=cabinet, topic=topic)
        assert core.handle(topic, message, T0 - 3600, commit).kind == "catalogue"
        env = cose.seal_batch(encode_body(READINGS), key=key, kid=kid, cabinet=cabinet, boot=1, seq=1, topic=topic)
        assert core.handle(topic, env, T0 + 120, commit).kind == "stored"
        store.commit(commit)
        store.maintain(T0 - 86400)
        assert store.materialize() == (1, len(READINGS))
    finally:
        store.close()


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with fresh_database("cabinet_talq") as dsn:
        store_cabinet(dsn)
        yield dsn


@pytest.fixture(scope="module")
def base(dsn: str) -> Iterator[str]:
    src = PgSource(dsn, "test-db")
    gw = Gateway(("127.0.0.1", 0), src)
    gw.start()
    yield f"http://127.0.0.1:{gw.server_address[1]}"
    gw.shutdown()
    gw.server_close()
    src.close()


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET", data: bytes | None = None):
    """(status, headers, JSON body) of a request; TALQ's version header unless `headers` says otherwise."""
    h = {"talq-api-version": "2.7.1"} if headers is None else headers
    req = urllib.request.Request(url, headers=h, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def q(path: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}clientAddress={CLIENT}"


ADDR = device_address(CAB)


def test_devices_lists_the_cabinet_with_values_in_talq_units(base):
    status, headers, body = get(base + q("/devices"))
    assert status == 200 and headers["talq-api-version"] == "2.7.1"
    (dev,) = body
    assert dev["address"] == ADDR and dev["name"] == CAB and dev["class"].startswith("cabinet-")
    funcs = {f["id"]: f for f in dev["functions"]}
    meter = funcs["meter-meter_seg1"]
    assert meter["type"] == "ElectricalMeterFunction"
    assert meter["totalPower"] == {"type": "AttributeFloat", "timestamp": "2026-01-15T22:00:00Z", "value": 0.95}
    assert meter["supplyVoltage"] == {"type": "AttributeFloat", "timestamp": "2026-01-15T22:01:00Z"}  # bad: no value
    assert funcs["cabinetMonitor"]["cabinetDoorOpen"]["value"] is True
    assert funcs["cabinetMonitor"]["leakageDetected"]["value"] is False
    assert funcs["lampMonitor-seg1"]["operatingHours"]["value"] == 4021.5
    assert funcs["lampMonitor-seg1"]["switchOnCounter"]["value"] == 812
    assert funcs["segmentMonitor-seg1"]["actualState"]["value"] == "ON"
    assert funcs["basic"]["timeZone"] == {"type": "AttributeString", "value": "Europe/Berlin"}


def test_device_function_and_attribute(base):
    status, _, dev = get(base + q(f"/devices/{ADDR}"))
    assert status == 200 and dev["address"] == ADDR
    status, _, f = get(base + q(f"/devices/{ADDR}/lampActuator-seg1"))
    assert status == 200 and f["actualLightState"]["value"] == {"name": "LevelState", "value": 100}
    status, _, a = get(base + q(f"/devices/{ADDR}/meter-meter_seg1/totalActiveEnergy"))
    assert (status, a["value"]) == (200, 1234.5)
    status, _, f = get(base + q(f"/devices/{ADDR}/segmentMonitor-seg1?attributeScope=measurement"))
    assert status == 200 and set(f) == {"id", "type", "actualState"}


def test_device_classes_describe_the_functions(base):
    status, _, classes = get(base + q("/device-classes"))
    assert status == 200
    (cls,) = classes
    fd = {f["functionId"]: f for f in cls["functions"]}
    assert {"name": "totalPower", "readOnly": True, "unit": "KiloWatt"} in fd["meter-meter_seg1"]["attributes"]
    status, _, one = get(base + q(f"/device-classes/{cls['name']}"))
    assert (status, one) == (200, cls)


def test_pagination(base):
    status, headers, body = get(base + q("/devices?offset=1&limit=5"))
    assert (status, body, headers["pagination-totalCount"], headers["pagination-count"]) == (200, [], "1", "0")


@pytest.mark.parametrize(
    ("path", "headers", "status", "key"),
    [
        ("/devices?clientAddress=" + CLIENT, {}, 400, "headerMissing"),
        ("/devices?clientAddress=" + CLIENT, {"talq-api-version": "1.0"}, 400, "headerValueNotValid"),
        ("/devices", None, 400, "parameterMissing"),
        ("/devices?clientAddress=nope", None, 400, "parameterValueNotValid"),
        (q("/devices/not-a-uuid"), None, 400, "parameterValueNotValid"),
        (q("/devices?limit=ten"), None, 400, "parameterValueNotValid"),
        (q("/devices/00000000-0000-4000-8000-000000000000"), None, 404, "resourceNotFound"),
        (q(f"/devices/{ADDR}/noSuchFunction"), None, 404, "resourceNotFound"),
        (q(f"/devices/{ADDR}/basic/noSuchAttribute"), None, 404, "resourceNotFound"),
        (q(f"/devices/{ADDR}/basic?attributeScope=weird"), None, 400, "parameterValueNotValid"),
        (q("/device-classes/none-such"), None, 404, "resourceNotFound"),
        (q("/calendars"), None, 404, "resourceNotFound"),
    ],
)
def test_bad_requests_get_talq_errors(base, path, headers, status, key):
    got, _, body = get(base + path, headers)
    assert got == status
    assert body[0]["key"] == key and body[0]["description"]


def test_writes_are_refused_and_big_bodies_are_cut(base):
    status, headers, body = get(base + q(f"/devices/{ADDR}"), method="PATCH", data=b"{}")
    assert status == 405 and headers["Allow"] == "GET" and body[0]["key"] == "genericError"
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"POST /devices HTTP/1.1\r\nHost: x\r\ntalq-api-version: 2.7.1\r\nContent-Length: 999999999\r\n\r\n")
        raw = b""
        while chunk := s.recv(4096):  # the gateway answers and closes without reading the body
            raw += chunk
    answer = raw.decode()
    assert answer.startswith("HTTP/1.1 413") and "payloadError" in answer


def test_the_command_serves_with_a_token_and_stops_on_sigterm(dsn):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tools.cli.table", "talq", "serve", "--db", dsn, "--listen", "127.0.0.1:0"]
    p = subprocess.Popen(
        [*cmd, "--token", "s3cret"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = p.stdout.readline() if p.stdout else ""
        assert line.startswith("TALQ gateway on http://127.0.0.1:"), line + (p.stderr.read() if p.stderr else "")
        url = line.split()[3] + q("/devices")
        assert get(url)[0] == 401
        status, _, body = get(url, {"talq-api-version": "2.7.1", "Authorization": "Bearer s3cret"})
        assert status == 200 and body[0]["address"] == ADDR
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def test_a_database_that_is_not_there_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "tools.cli.table", "talq", "serve", "--db", "postgresql://127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("cabinet talq serve: postgresql://127.0.0.1:1/none")


def test_mutual_tls_serves_a_client_with_a_certificate_and_refuses_one_without(dsn, tmp_path):
    from tools.provision import pki

    ca = pki.init_ca(tmp_path / "ca")
    files = {}
    for name, (key, cert) in {"server": ca.issue_server("127.0.0.1"), "client": ca.issue_client("city-cms")}.items():
        files[name] = (tmp_path / f"{name}.key", tmp_path / f"{name}.crt")
        files[name][0].write_bytes(key)
        files[name][1].write_bytes(cert)
    cmd = [sys.executable, "-m", "tools.cli.table", "talq", "serve", "--db", dsn, "--listen", "127.0.0.1:0"]
    cmd += [
        "--tls-cert",
        str(files["server"][1]),
        "--tls-key",
        str(files["server"][0]),
        "--client-ca",
        str(ca.cert_path),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline() if p.stdout else ""
        assert line.startswith("TALQ gateway on https://127.0.0.1:"), line + (p.stderr.read() if p.stderr else "")
        url = line.split()[3] + q("/devices")
        hello = urllib.request.Request(url, headers={"talq-api-version": "2.7.1"})
        anonymous = ssl.create_default_context(cafile=str(ca.cert_path))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(hello, timeout=10, context=anonymous).read()
        known = ssl.create_default_context(cafile=str(ca.cert_path))
        known.load_cert_chain(str(files["client"][1]), str(files["client"][0]))
        # a client that connects and says nothing holds only its own thread, not the accept loop
        port = int(url.split(":")[2].split("/")[0])
        silent = socket.create_connection(("127.0.0.1", port))
        with silent, urllib.request.urlopen(hello, timeout=10, context=known) as r:
            assert r.status == 200 and json.loads(r.read())[0]["address"] == ADDR
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def test_a_database_gone_while_serving_is_503_not_a_traceback(dsn):
    src = PgSource(dsn, "test-db")
    gw = Gateway(("127.0.0.1", 0), src)
    gw.start()
    try:
        src.conn.close()
        status, _, body = get(f"http://127.0.0.1:{gw.server_address[1]}" + q("/devices"))
        assert status == 503 and body[0]["key"] == "genericError"
    finally:
        gw.shutdown()
        gw.server_close()
