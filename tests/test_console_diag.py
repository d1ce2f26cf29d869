"""The console's diagnostics at the HTTP level (issue 19): the log tail, `config check` of an
uploaded file with its errors against their lines, the diagnostics bundle, and the doctor run
as the real `python -m tools.cli doctor` child process. Same real TLS server and client as
tests/test_console_http.py; the agent's status and actions are stood in for there."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tarfile
from pathlib import Path
from typing import Any

import pytest

from agent import config as cfg
from agent.console import bundle
from agent.console.checks import MAX_CONFIG, CheckFailed, Doctor, locate, parse_doctor
from agent.console.logtail import LogRing
from agent.console.users import User, hash_password, write_users
from tests.test_console_http import PASSWORD, Agent, Console

EXAMPLE = cfg.EXAMPLE.read_text()


@pytest.fixture
async def console(tmp_path: Path):
    write_users(
        tmp_path / "console" / "users.json",
        {
            "tech": User("tech", "technician", hash_password(PASSWORD, n=2**10)),
            "view": User("view", "viewer", hash_password(PASSWORD, n=2**10)),
        },
    )
    config = tmp_path / "cabinet.toml"
    config.write_text(EXAMPLE)
    c = Console(tmp_path, Agent(), config_path=str(config))
    assert await c.server.start()
    yield c
    await c.server.close()


def events(agent: Agent, action: str) -> list[dict[str, Any]]:
    out = []
    for r, _ in agent.events:
        doc = json.loads(str(r.value))
        if r.point == "event.console.action" and doc.get("action") == action:
            out.append(doc)
    return out


async def _raw_post(
    c: Console, path: str, body: bytes, cookie: str, csrf: str | None, name: str
) -> tuple[int, dict, Any]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{c.port}\r\nContent-Type: application/toml\r\n"
        f"X-File-Name: {name}\r\nContent-Length: {len(body)}\r\nCookie: cabinet_session={cookie}\r\n"
        + (f"X-CSRF-Token: {csrf}\r\n" if csrf else "")
        + "\r\n"
    )
    return await c.call("POST", path, raw=head.encode() + body)


# ------------------------------------------------------------------------------ log tail
async def test_the_log_tail_shows_the_agents_recent_lines_after_a_sequence_number(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the agent's root logger level (logs.setup)
    cookie, _ = await console.login("view")  # looking at the log is for viewers too
    logging.getLogger("agent.test").warning("bus rs485 down: port missing")
    status, _, doc = await console.call("GET", "/api/log", cookie=cookie)
    assert status == 200
    lines = [line["line"] for line in doc["lines"]]
    assert any("console login" in t and '"user":"view"' in t for t in lines)
    assert any(t.endswith("WARNING agent.test bus rs485 down: port missing") for t in lines)
    seq = doc["seq"]
    logging.getLogger("agent.test").info("lamp seg1 on")
    _, _, doc = await console.call("GET", f"/api/log?after={seq}", cookie=cookie)
    assert [line["line"].split(" ", 1)[1] for line in doc["lines"]] == ["INFO agent.test lamp seg1 on"]
    _, _, doc = await console.call("GET", "/api/log?level=warning", cookie=cookie)
    assert doc["lines"] and all(line["level"] in ("WARNING", "ERROR", "CRITICAL") for line in doc["lines"])
    status, _, doc = await console.call("GET", "/api/log?after=x", cookie=cookie)
    assert status == 400 and "after and limit are numbers" in doc["error"]
    status, _, doc = await console.call("GET", "/api/log?level=loud", cookie=cookie)
    assert status == 400 and "unknown level" in doc["error"]
    assert (await console.call("GET", "/api/log"))[0] == 401


async def test_the_ring_keeps_the_last_lines_and_leaves_the_root_logger_when_stopped(tmp_path: Path) -> None:
    ring = LogRing(capacity=3)
    ring.attach()
    try:
        for i in range(5):
            logging.getLogger("agent.test").warning("line %d %s", i, "x" * 3000 if i == 4 else "")
    finally:
        ring.detach()
    logging.getLogger("agent.test").warning("after")
    tail = ring.tail()
    assert [t["seq"] for t in tail] == [3, 4, 5]
    assert "line 2" in str(tail[0]["line"]) and str(tail[-1]["line"]).endswith(" …")
    assert "after" not in ring.text() and ring not in logging.getLogger().handlers


# ------------------------------------------------------------------------------ config check
async def test_a_valid_config_upload_is_summarised(console: Console) -> None:
    cookie, csrf = await console.login()
    status, _, doc = await _raw_post(console, "/api/config/check", EXAMPLE.encode(), cookie, csrf, "cabinet.toml")
    assert status == 200, doc
    assert doc["ok"] and doc["issues"] == [] and "cabinet CAB-SIM-0001, 2 buses, 7 devices" in doc["summary"]
    (ev,) = events(console.agent, "config/check")
    assert ev["user"] == "tech" and ev["args"] == {"file": "cabinet.toml", "bytes": len(EXAMPLE.encode())}


async def test_config_errors_are_shown_against_their_lines(console: Console) -> None:
    cookie, csrf = await console.login()
    bad = EXAMPLE.replace("baudrate = 9600", 'baudrate = "fast"', 1).replace("[site]\n", "[site]\nbogus = 1\n", 1)
    lines = bad.splitlines()
    status, _, doc = await _raw_post(console, "/api/config/check", bad.encode(), cookie, csrf, "../../etc/site.toml")
    assert status == 200 and doc["ok"] is False and doc["file"] == "site.toml"
    by_key = {(i["section"], i["key"]): i for i in doc["issues"]}
    assert lines[by_key[("site", "bogus")]["line"] - 1] == "bogus = 1"
    assert lines[by_key[("buses.rs485", "baudrate")]["line"] - 1] == 'baudrate = "fast"'
    assert "expected an integer" in by_key[("buses.rs485", "baudrate")]["text"]
    assert [i["line"] for i in doc["issues"]] == sorted(i["line"] for i in doc["issues"])
    # a file that is not TOML: the line the parser names
    status, _, doc = await _raw_post(console, "/api/config/check", b'[cabinet]\nid = "A"\nname = \n', cookie, csrf, "x")
    assert status == 200 and doc["issues"][0]["line"] == 3 and "TOML syntax error" in doc["issues"][0]["text"]
    status, _, doc = await _raw_post(console, "/api/config/check", b"\xff\xfe[cabinet]", cookie, csrf, "x")
    assert status == 200 and "not UTF-8" in doc["issues"][0]["text"]


async def test_config_uploads_too_large_without_token_or_by_a_viewer_are_refused(console: Console) -> None:
    cookie, csrf = await console.login()
    status, _, doc = await _raw_post(console, "/api/config/check", b"#" * (MAX_CONFIG + 1), cookie, csrf, "big.toml")
    assert status == 413 and f"at most {MAX_CONFIG}" in doc["error"]
    status, _, doc = await _raw_post(console, "/api/config/check", EXAMPLE.encode(), cookie, None, "c.toml")
    assert status == 403 and "CSRF" in doc["error"]
    vcookie, vcsrf = await console.login("view")
    status, _, doc = await _raw_post(console, "/api/config/check", EXAMPLE.encode(), vcookie, vcsrf, "c.toml")
    assert status == 403 and "viewer may look, not act" in doc["error"]
    assert [e["ok"] for e in events(console.agent, "config/check")] == [False, False]


def test_locate_finds_keys_in_dotted_and_quoted_tables() -> None:
    text = '[a]\nx = 1\n[ "devices" . meter ]\nunit = 1\n[[lighting.programs]]\nname = "p"\n'
    issue = cfg.ConfigIssue
    assert locate(text, issue("f", "a", "x", 1, "")) == 2
    assert locate(text, issue("f", "devices.meter", "unit", 1, "")) == 4
    assert locate(text, issue("f", "devices.meter", "profile", None, "", "missing")) == 3  # missing: its table
    assert locate(text, issue("f", "lighting.programs[0]", "name", "p", "")) == 6
    assert locate(text, issue("f", "nowhere", "k", 1, "")) is None


# ------------------------------------------------------------------------------ bundle
async def test_the_bundle_has_config_without_secrets_status_and_log(console: Console, tmp_path: Path) -> None:
    secrets = '\n[extra]\nmqtt_password = "hunter2-very-secret"\napi_token="t0k"\n'
    (tmp_path / "cabinet.toml").write_text(EXAMPLE + secrets)
    cookie, _ = await console.login()
    logging.getLogger("agent.test").error("meter_seg2 silent")
    status, headers, data = await console.call("GET", "/api/bundle", cookie=cookie)
    assert status == 200 and headers["content-type"] == "application/gzip"
    name = headers["content-disposition"].split('filename="')[1].rstrip('"')
    assert name.startswith("CAB-T-diag-20270115T") and name.endswith(".tar.gz")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert set(files) == {"README.txt", "config.toml", "status.json", "agent.log", "console.json"}
    assert "hunter2" not in data.decode("latin-1") and "hunter2" not in files["config.toml"]
    assert 'mqtt_password = "<removed>"' in files["config.toml"] and 'api_token="<removed>"' in files["config.toml"]
    assert "2 secret-looking value(s) removed" in files["README.txt"]
    assert json.loads(files["status.json"])["cabinet"]["id"] == "CAB-T"
    assert "ERROR agent.test meter_seg2 silent" in files["agent.log"]
    con = json.loads(files["console.json"])
    assert con["users"] == {"tech": "technician", "view": "viewer"} and "scrypt" not in files["console.json"]
    (ev,) = events(console.agent, "bundle")
    assert ev["ok"] and ev["args"]["file"] == name
    vcookie, _ = await console.login("view")
    assert (await console.call("GET", "/api/bundle", cookie=vcookie))[0] == 403


def test_redact_leaves_other_lines_alone() -> None:
    text, n = bundle.redact('id = "A"\npassword="x"\n  "psk" = "y"\nkey = "/etc/k.pem"\n')
    assert n == 2 and text == 'id = "A"\npassword="<removed>"\n  "psk" = "<removed>"\nkey = "/etc/k.pem"\n'


# ------------------------------------------------------------------------------ doctor
async def test_doctor_runs_the_real_command_and_shows_its_lines(console: Console) -> None:
    cookie, csrf = await console.login()
    first = asyncio.ensure_future(console.call("POST", "/api/doctor", {}, cookie=cookie, csrf=csrf))
    while not console.server.diag.doctor or not console.server.diag.doctor.running:
        await asyncio.sleep(0.01)
    status, _, doc = await console.call("POST", "/api/doctor", {}, cookie=cookie, csrf=csrf)
    assert status == 409 and "running already" in doc["error"]  # one at a time
    status, _, doc = await first
    assert status == 200, doc
    checks = {r["check"]: r for r in doc["results"]}
    assert checks["config"]["status"] == "PASS" and "cabinet CAB-SIM-0001" in checks["config"]["detail"]
    # no agent and no simulated cabinet here: the doctor says so, with a fix
    assert checks["agent"]["status"] == "WARN" and checks["bus rs485"]["status"] == "FAIL"
    assert doc["ok"] is False and doc["exit"] == 1 and checks["bus rs485"]["hint"]
    evs = events(console.agent, "doctor")
    assert [e["ok"] for e in evs] == [False, True] and evs[1]["result"]["FAIL"] >= 1
    vcookie, vcsrf = await console.login("view")
    assert (await console.call("POST", "/api/doctor", {}, cookie=vcookie, csrf=vcsrf))[0] == 403


async def test_a_doctor_that_hangs_or_prints_nothing_useful_is_a_clear_refusal(tmp_path: Path) -> None:
    d = Doctor(str(tmp_path / "cabinet.toml"), tmp_path, timeout_s=0.05)
    with pytest.raises(CheckFailed, match=r"no result within 0\.05 s; it was stopped"):
        await d.run(0.0)
    assert not d.running
    with pytest.raises(CheckFailed, match=r"exit code 2\) without a report: usage: oops"):
        parse_doctor(b"not json", b"usage: oops\n", 2)
    doc = parse_doctor(b'{"results": [{"check": "x", "status": "??", "detail": 1}]}', b"", 0)
    assert doc["results"] == [{"check": "x", "status": "FAIL", "detail": "1", "hint": ""}] and doc["ok"] is False


# ------------------------------------------------------------------------------ scan
BUSES = {"buses": [{"name": "rs485", "kind": "rtu"}, {"name": "dali", "kind": "tcp"}]}


async def test_scan_refusals_change_nothing(console: Console) -> None:
    console.server.diag.snapshot = lambda: BUSES
    cookie, csrf = await console.login()
    for body, error in (
        ({"bus": "rs485"}, "the agent polls rs485 (an RTU line): one master per line"),
        ({"bus": "nope"}, "no bus 'nope' (buses: rs485, dali)"),
        ({"bus": "dali", "units": "1-x"}, "units '1-x': give unit ids such as 1-32"),
        ({"bus": 3}, 'give "bus" (a bus name) and "units"'),
    ):
        status, _, doc = await console.call("POST", "/api/scan", body, cookie=cookie, csrf=csrf)
        assert status == 409 and error in doc["error"], (body, doc)
    assert (await console.call("GET", "/api/scan", cookie=cookie))[2] == {"running": False}
    vcookie, vcsrf = await console.login("view")
    assert (await console.call("POST", "/api/scan", {"bus": "dali"}, cookie=vcookie, csrf=vcsrf))[0] == 403
    assert [e["ok"] for e in events(console.agent, "scan")] == [False] * 5


async def test_one_scan_at_a_time_and_its_failure_is_reported(console: Console) -> None:
    console.server.diag.snapshot = lambda: BUSES
    cookie, csrf = await console.login()
    status, _, doc = await console.call("POST", "/api/scan", {"bus": "dali", "units": "1-2"}, cookie=cookie, csrf=csrf)
    assert status == 200 and doc["running"] and doc["bus"] == "dali"
    status, _, doc = await console.call("POST", "/api/scan", {"bus": "dali"}, cookie=cookie, csrf=csrf)
    assert status == 409 and "a scan of dali is running already" in doc["error"]
    for _ in range(300):  # the real `cabinet scan`: no simulated cabinet runs in this data dir
        _, _, st = await console.call("GET", "/api/scan", cookie=cookie)
        if not st["running"]:
            break
        await asyncio.sleep(0.1)
    assert st["running"] is False and st["devices"] == [] and st["exit"] == 1
    assert "simulated cabinet is not running" in st["error"], st
