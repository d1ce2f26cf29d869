"""`cabinet doctor` with real parts: the simulated cabinet's RS-485 pty and TCP endpoint, the
agent in process with its status socket, a real mosquitto with mutual TLS and certificates
from tools.provision.pki, real outbox files and the real file system."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import sys
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.config.model import Uplink
from agent.model import Quality, Reading
from agent.outbox.writer import Outbox
from agent.runtime.app import App, Endpoints
from agent.runtime.entry import board_infos
from agent.runtime.status_api import SOCKET_NAME, fetch
from boards.sim.cabinet import SimCabinet
from drivers.dio import FilePinsDIO
from tests.broker import broker  # noqa: F401
from tests.conftest import wait_until
from tools.doctor import checks as dc
from tools.doctor import host, uplink
from tools.doctor import report as doctor
from tools.provision import pki

HEAD = """
[cabinet]
id = "CAB-DOC-0001"
[site]
latitude = 52.5
longitude = 13.4
timezone = "Europe/Berlin"
[board]
profile = "sim"
"""


def write_config(tmp: Path, body: str, name: str = "doctor.toml", head: str = HEAD) -> Path:
    p = tmp / name
    p.write_text(head + body)
    assert cfg.check(p, board_infos()) == [], cfg.check(p, board_infos())
    return p


def by_check(results: list[dc.Result]) -> dict[str, dc.Result]:
    return {r.check: r for r in results}


@pytest.fixture
async def sim(tmp_path):
    config = cfg.load(cfg.EXAMPLE, board_infos())
    cab = SimCabinet(config, tmp_path / "sim", ScaledClock(1.0))
    ep = await cab.start()
    (tmp_path / "sim" / "endpoints.json").write_text(json.dumps(ep))  # as `cabinet sim --ready-file` does
    yield cab, ep, tmp_path
    await cab.stop()


@pytest.fixture
async def running(tmp_path):
    config = cfg.load(cfg.EXAMPLE, board_infos())
    clock = ScaledClock(1.0)
    cab = SimCabinet(config, tmp_path / "sim", clock)
    ep = await cab.start()
    app = App(
        config,
        data_dir=tmp_path,
        clock=clock,
        endpoints=Endpoints(
            buses={k: tuple(v) for k, v in ep["buses"].items()}, gps_port=ep["gps"], dio=FilePinsDIO(ep["pins"])
        ),
    )
    await app.start()
    yield app, cab, tmp_path
    await app.stop()
    await cab.stop()


# ------------------------------------------------------------------ buses and devices, no agent running


@pytest.mark.integration
async def test_no_agent_every_bus_opens_and_every_device_answers_with_its_profile(sim):
    _, _, tmp = sim
    results = await doctor.run(cfg.EXAMPLE, tmp, boards=board_infos())
    r = by_check(results)
    assert r["config"].status == "PASS"
    assert r["agent"].status == "WARN" and "not running" in r["agent"].detail
    assert r["bus rs485"].status == "PASS" and "9600 8N1: opened" in r["bus rs485"].detail
    assert r["bus dali"].status == "PASS"
    for name in ("meter_main", "meter_seg1", "meter_seg2", "climate", "relays", "lux", "dali"):
        assert r[f"device {name}"].status == "PASS", r[f"device {name}"]
    assert "answers as sdm630" in r["device meter_main"].detail
    assert r["alarms"].status == "WARN" and r["outbox"].status == "WARN"  # no agent, no outbox yet
    assert doctor.exit_code(results) == 0, doctor.render(results)


@pytest.mark.integration
async def test_device_answering_as_another_profile_fails_with_a_hint(sim):
    _, _, tmp = sim
    path = write_config(
        tmp,
        """
[buses.rs485]
type = "rtu"
port = "rs485-1"
timeout_ms = 100
[devices.meter]
bus = "rs485"
unit = 1
profile = "sdm630"
[devices.lux]
bus = "rs485"
unit = 10
profile = "lux"
[devices.gone]
bus = "rs485"
unit = 99
profile = "xy-md02"
""",
    )
    results = await doctor.run(path, tmp, boards=board_infos(), skip_buses=False)
    r = by_check(results)
    assert r["device meter"].status == "PASS"
    lux = r["device lux"]
    assert lux.status == "FAIL" and "answers like xy-md02" in lux.detail and "not lux" in lux.detail
    assert 'profile = "xy-md02"' in lux.hint and "unit 10" in lux.hint
    gone = r["device gone"]
    assert gone.status == "FAIL" and "no response" in gone.detail and "cabinet scan --bus rs485" in gone.hint
    assert doctor.exit_code(results) == 1
    text = doctor.render(results)
    assert "FAIL  device lux" in text and "fix: another device is at unit 10" in text


@pytest.mark.integration  # doctor.run runs timedatectl
async def test_missing_serial_port_fails_the_bus_and_its_devices(tmp_path):
    path = write_config(
        tmp_path,
        """
[buses.line]
type = "rtu"
port = "/dev/ttyDOCTOR-NOT-THERE"
baudrate = 19200
parity = "E"
[devices.meter]
bus = "line"
unit = 5
profile = "sdm120"
""",
        head=HEAD.replace('profile = "sim"', 'profile = "rpi4-rs485"'),  # a real board: on the sim board
        # the doctor looks for the running simulator's endpoints instead of the config's port
    )
    results = await doctor.run(path, tmp_path / "data", boards=board_infos())
    r = by_check(results)
    assert r["bus line"].status == "FAIL"
    assert "19200 8E1" in r["bus line"].detail and "port missing: /dev/ttyDOCTOR-NOT-THERE" in r["bus line"].detail
    assert "serial adapter" in r["bus line"].hint
    assert r["device meter"].status == "FAIL" and "not reached" in r["device meter"].detail
    assert doctor.exit_code(results) == 1


@pytest.mark.integration  # doctor.run runs timedatectl
async def test_skip_buses_and_invalid_config_lists_every_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + '[buses.x]\ntype = "rtu"\nport = "nowhere"\nbaudrate = -5\n[agent]\nlog_level = "loud"\n')
    results = await doctor.run(bad, tmp_path, boards=board_infos())
    config_lines = [r for r in results if r.check == "config"]
    assert len(config_lines) == len(cfg.check(bad, board_infos())) >= 3
    assert all(r.status == "FAIL" and "cabinet config check" in r.hint for r in config_lines)
    assert any("baudrate" in r.detail for r in config_lines) and any("log_level" in r.detail for r in config_lines)
    assert {"disk", "outbox", "clock", "alarms"} <= set(by_check(results))  # the rest still ran
    assert doctor.exit_code(results) == 1
    good = await doctor.run(cfg.EXAMPLE, tmp_path, boards=board_infos(), skip_buses=True)
    assert by_check(good)["buses"].status == "WARN" and not any(r.check.startswith("bus ") for r in good)


# ------------------------------------------------------------------ with the agent running


@pytest.mark.integration
async def test_running_agent_live_health_clock_outbox_and_alarms(running):
    app, cab, tmp = running
    sock = tmp / SOCKET_NAME

    async def settled() -> bool:
        doc = await fetch(sock)
        devs = [d for b in doc["buses"] for d in b["devices"]]
        return all(d["state"] == "ok" for d in devs) and (doc["gps"] or {}).get("time_quality") == "gps"

    for _ in range(100):
        if await settled():
            break
        await asyncio.sleep(0.2)
    results = await doctor.run(cfg.EXAMPLE, tmp, boards=board_infos())
    r = by_check(results)
    assert r["agent"].status == "PASS"
    assert r["bus rs485"].status == "PASS" and "live" in r["bus rs485"].detail
    assert all(r[f"device {d}"].status == "PASS" and "live" in r[f"device {d}"].detail for d in app.config.devices)
    assert r["clock"].status == "PASS"
    assert r["outbox"].status == "PASS" and "schema 1" in r["outbox"].detail
    assert r["alarms"].status == "PASS"

    cab.set_input("flood", True)
    await wait_until(lambda: app.controls.alarms.is_active("climate.flood"), timeout=15)
    results = await doctor.run(cfg.EXAMPLE, tmp, boards=board_infos(), skip_buses=True)
    alarms = by_check(results)["alarms"]
    assert alarms.status == "FAIL" and "climate.flood" in alarms.detail and "acknowledge" in alarms.hint
    assert doctor.exit_code(results) == 1


@pytest.mark.integration
async def test_live_failing_device_is_a_fail(running):
    app, cab, tmp = running
    cab.device_fault("lux", "silent")
    await wait_until(
        lambda: any(d["name"] == "lux" and d["state"] == "failing" for d in app.status()["buses"][0]["devices"]),
        timeout=20,
    )
    r = by_check(await doctor.run(cfg.EXAMPLE, tmp, boards=board_infos()))
    assert r["device lux"].status == "FAIL" and "no response" in r["device lux"].detail
    assert "wiring" in r["device lux"].hint


def test_alarm_severities():
    warn = {"controls": {"alarms": [{"id": "climate.door_open", "severity": "warning", "state": "active"}]}}
    assert doctor.check_alarms(warn).status == "WARN"
    assert doctor.check_alarms({"controls": {"alarms": []}}).status == "PASS"
    assert doctor.check_alarms(None).status == "WARN"


# ------------------------------------------------------------------ clock


@pytest.mark.integration  # runs a python -c as timedatectl
async def test_clock_falls_back_to_gps_then_unknown():
    missing = ("/nonexistent/timedatectl", "show")
    gps_ok = {"gps": {"port": "/dev/ttyGPS", "time_quality": "gps"}}
    assert (await host.check_clock(gps_ok, missing)).status == "PASS"
    r = await host.check_clock({"gps": {"port": "x", "time_quality": "none"}}, missing)
    assert r.status == "WARN" and r.detail.startswith("unknown") and "'none'" in r.detail
    assert (await host.check_clock(None, missing)).status == "WARN"
    not_synced = (sys.executable, "-c", "print('no')")  # what `timedatectl show -p NTPSynchronized --value` prints
    assert (await host.check_clock(None, not_synced)).status == "FAIL"
    assert (await host.check_clock(gps_ok, not_synced)).status == "PASS"


# ------------------------------------------------------------------ broker and certificate (real mosquitto)

CAB = "CAB-DOC-0001"


def uplink_for(
    b,
    tmp: Path,
    cn: str = CAB,
    *,
    days: int = 825,
    issued: dt.datetime | None = None,
    key_from: str | None = None,
    ca: pki.CA | None = None,
) -> Uplink:
    key_pem, cert_pem = (ca or b.ca).issue_client(cn, days=days, now=issued)
    if key_from is not None:  # a key of another certificate
        key_pem, _ = b.ca.issue_client(key_from)
    d = tmp / f"cab-{cn}-{days}-{key_from}-{ca is not None}"
    pki.write_private(d / "cabinet.key", key_pem)
    pki.write_public(d / "cabinet.crt", cert_pem)
    return Uplink(
        broker=b.host,
        port=b.tls_port,
        tls=True,
        ca=str(b.ca.cert_path),
        cert=str(d / "cabinet.crt"),
        key=str(d / "cabinet.key"),
    )


@pytest.mark.integration
async def test_good_certificate_passes_broker_and_certificate(broker, tmp_path):
    s = uplink_for(broker, tmp_path)
    r = await uplink.check_broker(s, CAB)
    assert r.status == "PASS" and "TLS handshake and MQTT CONNECT accepted" in r.detail, r
    assert f"{CAB}-doctor" in broker.log_text()  # its own client id: never takes over the agent's session
    c = uplink.check_certificate(s, CAB)
    assert c.status == "PASS" and "key matches" in c.detail


@pytest.mark.integration
async def test_expired_certificate_fails_both_with_the_hint(broker, tmp_path):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    s = uplink_for(broker, tmp_path, days=10, issued=past)
    c = uplink.check_certificate(s, CAB)
    assert c.status == "FAIL" and "expired" in c.detail and "cabinet provision" in c.hint
    r = await uplink.check_broker(s, CAB)
    assert r.status == "FAIL" and "expired" in r.detail.lower() and "cabinet provision" in r.hint, r


@pytest.mark.integration
async def test_wrong_cn_key_mismatch_expiring_and_foreign_ca(broker, tmp_path):
    other = uplink.check_certificate(uplink_for(broker, tmp_path, "CAB-SOMEONE-ELSE"), CAB)
    assert other.status == "FAIL" and "'CAB-SOMEONE-ELSE' is not the cabinet id" in other.detail
    assert f"cabinet provision --id {CAB}" in other.hint
    mismatch = uplink.check_certificate(uplink_for(broker, tmp_path, key_from="CAB-X"), CAB)
    assert mismatch.status == "FAIL" and "does not belong" in mismatch.detail
    soon = uplink.check_certificate(uplink_for(broker, tmp_path, days=10), CAB)
    assert soon.status == "WARN" and "expires in 9 days" in soon.detail
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    future = uplink.check_certificate(uplink_for(broker, tmp_path), CAB, now=before)
    assert future.status == "FAIL" and "not valid before" in future.detail and "clock" in future.hint
    foreign = pki.init_ca(tmp_path / "foreign-ca", name="someone else's CA")
    r = await uplink.check_broker(uplink_for(broker, tmp_path, ca=foreign), CAB)
    assert r.status == "FAIL" and "device CA" in r.hint, r


@pytest.mark.integration
async def test_broker_unreachable_no_uplink_and_a_hanging_broker(tmp_path, broker):
    s = uplink_for(broker, tmp_path)
    broker.stop()
    down = await uplink.check_broker(s, CAB)
    assert down.status == "FAIL" and "cannot connect" in down.detail and "[uplink]" in down.hint
    assert (await uplink.check_broker(None, CAB)).status == "WARN"
    assert uplink.check_certificate(None, CAB).status == "WARN"

    async def silent(reader, writer):  # accepts TCP, never speaks MQTT
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        plain = Uplink(broker="127.0.0.1", port=port, tls=False)
        r = await doctor.guarded("broker", uplink.check_broker(plain, CAB, timeout=30), timeout=1.0)
        assert r[0].status == "FAIL" and "no result within 1 s" in r[0].detail
    finally:
        server.close()


# ------------------------------------------------------------------ outbox and disk


async def test_outbox_health_from_a_real_outbox(tmp_path):
    clock = ScaledClock(1.0)
    path = tmp_path / "outbox.db"
    async with Outbox(path, clock=clock) as ob:
        await ob.put([Reading("x.t", clock.now() - 60, 1.5, Quality.GOOD, None)] * 3)
        await ob.flush()
    now = clock.now()
    ok = host.check_outbox(path, now)
    assert ok.status == "PASS" and "3 readings pending" in ok.detail and "schema 1" in ok.detail
    behind = host.check_outbox(path, now + 7 * 3600)
    assert behind.status == "WARN" and "uplink" in behind.hint
    assert host.check_outbox(path, now + 4 * 86400).status == "FAIL"
    assert host.check_outbox(path, now, max_bytes=path.stat().st_size).status == "WARN"
    assert host.check_outbox(tmp_path / "none.db", now).status == "WARN"


def test_a_file_that_is_not_an_outbox(tmp_path):
    text = tmp_path / "outbox.db"
    text.write_text("this is not a database\n" * 20)
    r = host.check_outbox(text, 0.0)
    assert r.status == "FAIL" and "not an SQLite database" in r.detail and "move the file aside" in r.hint
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    r = host.check_outbox(other, 0.0)
    assert r.status == "FAIL" and "something else" in r.detail


def test_disk_thresholds(tmp_path):
    import shutil

    u = shutil.disk_usage(tmp_path)
    pct = 100 * u.free / u.total
    r = doctor.check_disk(tmp_path)
    assert r.status == ("PASS" if pct >= 10 and u.free >= 100 * 2**20 else r.status)
    full_ish = doctor.check_disk(tmp_path, warn_pct=pct + 1, fail_pct=0, fail_bytes=0)
    assert full_ish.status == "WARN" and "below" in full_ish.detail and "free space" in full_ish.hint
    assert doctor.check_disk(tmp_path, fail_pct=pct + 1).status == "FAIL"
    assert doctor.check_disk(tmp_path, fail_pct=0, fail_bytes=u.free * 2).status == "FAIL"
    assert doctor.check_disk(tmp_path / "not" / "yet").status == r.status  # the data dir may not exist yet


# ------------------------------------------------------------------ the command


@pytest.mark.integration
async def test_cabinet_doctor_command_json_against_the_sim(sim):
    cab, _, tmp = sim
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "doctor",
        "--data-dir",
        str(tmp),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)  # the sim runs in this loop: never block it
    doc = json.loads(out)
    assert proc.returncode == 0 and doc["ok"] is True, (out.decode(), err.decode())
    checks = {r["check"]: r["status"] for r in doc["results"]}
    assert checks["bus rs485"] == "PASS" and checks["device lux"] == "PASS" and checks["disk"] == "PASS"
    assert err == b""

    cab.vanish("rs485")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "doctor",
        "--data-dir",
        str(tmp),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode()
    assert proc.returncode == 1, text
    assert "FAIL  bus rs485" in text and "port missing" in text and "fix: the serial adapter" in text
    assert text.rstrip().splitlines()[-1].endswith("failed")
