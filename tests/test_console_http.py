"""The web console at the HTTP level (issue 19): a ConsoleServer on a real TLS socket, driven by
a small asyncio HTTPS client that checks the server's own certificate. The agent's status and
actions are stood in for by a snapshot function and an action that refuses like the real one
(the whole agent is driven in tests/test_console_browser.py): login, roles, sessions and their
expiry, CSRF and Origin, lockout, bounded requests, 100 event streams and clients that go away,
the audit trail in the outbox."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from agent.config.console import ConsoleSettings
from agent.console.http import MAX_BODY
from agent.console.server import ConsoleServer
from agent.console.tls import tls_dir
from agent.console.users import User, hash_password, write_users
from agent.model import Priority, Reading
from agent.remote.host import ActionError
from tests.broker import free_port

PASSWORD = "correct horse battery"


class Agent:
    """What the console is given: a snapshot, the local actions, the outbox's put."""

    def __init__(self) -> None:
        self.snapshots = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[Reading, Priority]] = []

    def snapshot(self) -> dict[str, Any]:
        self.snapshots += 1
        return {"cabinet": {"id": "CAB-T", "timezone": "UTC"}, "n": self.snapshots, "points": []}

    async def override(self, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("/lighting/override", args))
        if args.get("segments") != ["seg1"]:
            raise ActionError(f"unknown segment(s) {args.get('segments')}")
        return {"override": {"on": args["on"], "source": args["source"]}}

    async def ack(self, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("/alarms/ack", args))
        return {"event": {"id": args["id"], "by": args["by"]}}

    async def put(self, readings: list[Reading], priority: Priority) -> None:
        self.events += [(r, priority) for r in readings]


class Console:
    def __init__(self, tmp: Path, agent: Agent, config_path: str | None = None, **settings: Any) -> None:
        self.now = 1000.0
        self.agent = agent
        self.port = free_port()
        self.settings = ConsoleSettings(port=self.port, **settings)
        self.server = ConsoleServer(
            self.settings,
            data_dir=tmp,
            snapshot=agent.snapshot,
            actions={"/lighting/override": agent.override, "/alarms/ack": agent.ack},
            put=agent.put,
            wall=lambda: 1_800_000_000.0,
            name="CAB-T",
            monotonic=lambda: self.now,
            config_path=config_path,
        )
        self.tmp = tmp

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ctx = ssl.create_default_context(cafile=str(tls_dir(self.tmp) / "cert.pem"))  # the console's own certificate
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx, limit=1 << 20)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        cookie: str | None = None,
        csrf: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        h = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if method == "POST":
            h.setdefault("Content-Length", str(len(data)))
        if cookie:
            h["Cookie"] = f"cabinet_session={cookie}"
        if csrf:
            h["X-CSRF-Token"] = csrf
        reader, writer = await self.connect()
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        writer.write(raw if raw is not None else head.encode() + data)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return parse(answer)

    async def login(self, user: str = "tech", password: str = PASSWORD) -> tuple[str, str]:
        status, headers, doc = await self.call("POST", "/api/login", {"user": user, "password": password})
        assert status == 200, doc
        cookie = headers["set-cookie"].split(";")[0].split("=", 1)[1]
        return cookie, doc["csrf"]


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    try:
        doc: Any = json.loads(body) if headers.get("content-type", "").startswith("application/json") else body
    except ValueError:
        doc = body
    return int(lines[0].split()[1]), headers, doc


@pytest.fixture
async def console(tmp_path: Path):
    write_users(
        tmp_path / "console" / "users.json",
        {
            "tech": User("tech", "technician", hash_password(PASSWORD, n=2**10)),
            "view": User("view", "viewer", hash_password(PASSWORD, n=2**10)),
        },
    )
    c = Console(tmp_path, Agent())
    assert await c.server.start()
    yield c
    await c.server.close()


async def test_login_sets_a_strict_cookie_and_the_session_answers(console: Console) -> None:
    status, headers, doc = await console.call("POST", "/api/login", {"user": "tech", "password": PASSWORD})
    assert status == 200 and doc["role"] == "technician" and len(doc["csrf"]) >= 40
    cookie = headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert flag in cookie
    assert "default-src 'self'" in headers["content-security-policy"]
    token = cookie.split(";")[0].split("=", 1)[1]
    status, _, who = await console.call("GET", "/api/session", cookie=token)
    assert (status, who["user"], who["csrf"]) == (200, "tech", doc["csrf"])
    status, _, snap = await console.call("GET", "/api/status", cookie=token)
    assert status == 200 and snap["cabinet"]["id"] == "CAB-T"
    login = [json.loads(r.value) for r, p in console.agent.events if r.point == "event.console.login"]
    assert login == [{"from": "127.0.0.1", "ok": True, "role": "technician", "user": "tech"}]


async def test_wrong_password_unknown_user_and_no_cookie_are_refused(console: Console) -> None:
    assert (await console.call("POST", "/api/login", {"user": "tech", "password": "wrong-password"}))[0] == 401
    assert (await console.call("POST", "/api/login", {"user": "nobody", "password": PASSWORD}))[0] == 401
    assert (await console.call("GET", "/api/status"))[0] == 401
    assert (await console.call("GET", "/api/status", cookie="forged-token"))[0] == 401
    assert (await console.call("GET", "/api/events"))[0] == 401
    bad = [json.loads(r.value) for r, _ in console.agent.events if r.point == "event.console.login"]
    assert [(b["user"], b["ok"]) for b in bad] == [("tech", False), ("nobody", False)]


async def test_a_form_post_cannot_log_in(console: Console) -> None:
    """A cross-site HTML form can send text/plain or urlencoded bodies, never application/json."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, doc = await console.call("POST", "/api/login", {"user": "tech", "password": PASSWORD}, headers=form)
    assert status == 415 and "JSON" in doc["error"]


async def test_every_post_needs_the_csrf_token_and_the_same_origin(console: Console) -> None:
    cookie, csrf = await console.login()
    body = {"segments": ["seg1"], "on": True, "minutes": 10}
    status, _, doc = await console.call("POST", "/api/lighting/override", body, cookie=cookie)
    assert status == 403 and "CSRF" in doc["error"]
    status, _, _ = await console.call("POST", "/api/lighting/override", body, cookie=cookie, csrf="x" * 43)
    assert status == 403
    evil = {"Origin": "https://evil.example"}
    status, _, doc = await console.call("POST", "/api/lighting/override", body, cookie=cookie, csrf=csrf, headers=evil)
    assert status == 403 and "cross-site" in doc["error"]
    status, _, _ = await console.call("POST", "/api/logout", cookie=cookie)
    assert status == 403
    assert console.agent.calls == []  # nothing reached the agent
    status, _, doc = await console.call(
        "POST",
        "/api/lighting/override",
        body,
        cookie=cookie,
        csrf=csrf,
        headers={"Origin": f"https://127.0.0.1:{console.port}"},
    )
    assert status == 200 and doc["override"]["source"] == "console:tech"


async def test_actions_go_through_the_agents_validation_with_the_user_as_source(console: Console) -> None:
    cookie, csrf = await console.login()
    status, _, doc = await console.call(
        "POST", "/api/lighting/override", {"segments": ["nope"], "on": True}, cookie=cookie, csrf=csrf
    )
    assert status == 409 and "unknown segment" in doc["error"]
    status, _, doc = await console.call(
        "POST",
        "/api/lighting/override",
        {"segments": ["seg1"], "on": False, "source": "cloud"},
        cookie=cookie,
        csrf=csrf,
    )
    assert status == 400 and "source" in doc["error"]  # nobody picks their own name
    status, _, doc = await console.call(
        "POST", "/api/alarms/ack", {"id": "climate.door_open"}, cookie=cookie, csrf=csrf
    )
    assert status == 200 and doc["event"]["by"] == "console:tech"
    status, _, doc = await console.call("POST", "/api/lighting/cancel", {}, cookie=cookie, csrf=csrf)
    assert status == 409 and "no lighting" in doc["error"]  # this stand-in agent has no cancel
    actions = [json.loads(r.value) for r, p in console.agent.events if r.point == "event.console.action"]
    assert [(a["action"], a["ok"]) for a in actions] == [
        ("lighting/override", False),
        ("alarms/ack", True),
        ("lighting/cancel", False),
    ]
    assert actions[0]["error"].startswith("unknown segment") and actions[1]["args"] == {"id": "climate.door_open"}
    assert all(p == Priority.EVENT for r, p in console.agent.events)


async def test_a_viewer_looks_but_cannot_act(console: Console) -> None:
    cookie, csrf = await console.login("view")
    assert (await console.call("GET", "/api/status", cookie=cookie))[0] == 200
    status, _, doc = await console.call("POST", "/api/alarms/ack", {"id": "x"}, cookie=cookie, csrf=csrf)
    assert status == 403 and "viewer" in doc["error"]
    assert console.agent.calls == []


async def test_lockout_after_failed_logins_then_it_lifts(console: Console) -> None:
    for _ in range(5):
        assert (await console.call("POST", "/api/login", {"user": "tech", "password": "not-it-at-all"}))[0] == 401
    status, _, doc = await console.call("POST", "/api/login", {"user": "tech", "password": PASSWORD})
    assert status == 429 and "try again in 300 s" in doc["error"]  # the right password too, while locked
    console.now += 301
    status, _, _ = await console.call("POST", "/api/login", {"user": "tech", "password": PASSWORD})
    assert status == 200


async def test_sessions_expire_when_idle_and_at_their_age(console: Console) -> None:
    cookie, _ = await console.login()
    console.now += 29 * 60
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 200  # restarts the idle time
    console.now += 29 * 60
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 200
    console.now += 31 * 60
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 401
    cookie, _ = await console.login()
    for _ in range(17):  # active all the time: still ends after 8 h
        console.now += 29 * 60
        await console.call("GET", "/api/session", cookie=cookie)
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 401


async def test_removing_a_user_or_changing_the_password_ends_their_sessions(console: Console, tmp_path: Path) -> None:
    cookie, _ = await console.login()
    other, _ = await console.login("view")
    path = tmp_path / "console" / "users.json"
    write_users(path, {"tech": User("tech", "technician", hash_password("a new password!", n=2**10))})
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 401
    assert (await console.call("GET", "/api/session", cookie=other))[0] == 401


async def test_bad_and_oversized_requests_get_clear_refusals(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.console.http.BODY_TIMEOUT_S", 0.5)  # a body that never comes: 10 s on a cabinet
    cookie, csrf = await console.login()
    big = "x" * (MAX_BODY + 1)
    status, _, doc = await console.call("POST", "/api/login", {"user": "tech", "password": big})
    assert status == 413 and str(MAX_BODY) in doc["error"]
    status, _, doc = await console.call("GET", "/", headers={"X-Big": "y" * 9000})
    assert status == 431
    short = {"Content-Type": "application/json", "Content-Length": "5"}
    status, _, doc = await console.call("POST", "/api/alarms/ack", cookie=cookie, csrf=csrf, headers=short)
    assert status == 400 and "incomplete" in doc["error"]  # declared 5 bytes, sent none
    chunked = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    assert (await console.call("POST", "/api/alarms/ack", cookie=cookie, csrf=csrf, headers=chunked))[0] == 411
    r = await console.call("POST", "/api/alarms/ack", [1, 2], cookie=cookie, csrf=csrf)
    assert r[0] == 400 and "object" in r[2]["error"]
    assert (await console.call("GET", "/nope"))[0] == 404
    assert (await console.call("DELETE", "/api/status"))[0] == 405
    assert (await console.call("GET", "/", raw=b"garbage\r\n\r\n"))[0] == 400
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 200  # still serving


async def test_plain_http_and_broken_handshakes_get_nothing_and_change_nothing(console: Console) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)  # no TLS
    writer.write(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 15) == b""
    writer.close()
    for _ in range(20):  # connections that go away before or during the handshake
        _, w = await asyncio.open_connection("127.0.0.1", console.port)
        w.write(b"\x16\x03\x01\x00")
        w.close()
    await asyncio.sleep(0.2)
    assert (await console.call("GET", "/"))[0] == 200
    assert console.agent.events == [] and console.agent.calls == []


async def test_no_user_yet_the_page_says_how_to_create_one(tmp_path: Path) -> None:
    c = Console(tmp_path, Agent())
    assert await c.server.start()
    try:
        status, headers, body = await c.call("GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"no user yet" in body and b"cabinet console passwd" in body and str(tmp_path).encode() in body
        status, _, doc = await c.call("POST", "/api/login", {"user": "admin", "password": "admin-admin"})
        assert status == 401
        (tmp_path / "console" / "users.json").write_text("{not json")
        status, _, body = await c.call("GET", "/")
        assert status == 200 and b"unusable" in body
        status, _, doc = await c.call("POST", "/api/login", {"user": "admin", "password": "admin-admin"})
        assert status == 503 and "users.json" in doc["error"]
    finally:
        await c.server.close()


async def read_event(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)


async def open_stream(console: Console, cookie: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await console.connect()
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: cabinet_session={cookie}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b" 200 " in head.split(b"\r\n")[0] and b"text/event-stream" in head
    assert await read_event(reader) == b"retry: 3000\n\n"
    return reader, writer


async def test_a_hundred_event_streams_share_one_snapshot_per_second(console: Console) -> None:
    cookie, _ = await console.login()
    streams = [await open_stream(console, cookie) for _ in range(100)]
    firsts = [await read_event(r) for r, _ in streams]
    seconds = [await read_event(r) for r, _ in streams]
    assert all(f.startswith(b"event: status\ndata: {") for f in firsts + seconds)
    # 2 frames seen by 100 clients; the snapshot was built once per frame, not once per client
    assert console.agent.snapshots <= 4 and console.server.hub.clients == 100
    n = json.loads(seconds[0].split(b"data: ", 1)[1])["n"]
    assert all(json.loads(s.split(b"data: ", 1)[1])["n"] >= n - 1 for s in seconds)
    for _, w in streams[:50]:  # half of them go away mid-stream
        w.close()
    for _ in range(100):
        if console.server.hub.clients == 50:
            break
        await asyncio.sleep(0.05)
    assert console.server.hub.clients == 50
    assert (await read_event(streams[60][0])).startswith(b"event: status")  # the others go on
    assert (await console.call("GET", "/api/session", cookie=cookie))[0] == 200
    for _, w in streams[50:]:
        w.close()
    for _ in range(100):
        if console.server.hub.clients == 0:
            break
        await asyncio.sleep(0.05)
    assert console.server.hub.clients == 0
    made = console.agent.snapshots
    await asyncio.sleep(1.5)
    assert console.agent.snapshots == made  # no client, no work


async def test_streams_beyond_the_limit_are_refused_and_an_expired_session_ends_its_stream(tmp_path: Path) -> None:
    write_users(
        tmp_path / "console" / "users.json", {"tech": User("tech", "technician", hash_password(PASSWORD, n=2**10))}
    )
    c = Console(tmp_path, Agent(), max_streams=2)
    assert await c.server.start()
    try:
        cookie, _ = await c.login()
        a = await open_stream(c, cookie)
        b = await open_stream(c, cookie)
        status, _, doc = await c.call("GET", "/api/events", cookie=cookie)
        assert status == 503 and "live views" in doc["error"]
        await read_event(a[0])
        c.now += 9 * 3600  # past the session's age
        while (frame := await read_event(a[0])).startswith(b"event: status"):
            pass
        assert frame.startswith(b"event: expired")
        assert await asyncio.wait_for(a[0].read(), 10) == b""  # and the server closed it
        b[1].close()
    finally:
        await c.server.close()
