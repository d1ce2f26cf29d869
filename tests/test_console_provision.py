"""The console's first technician (issue 19): `cabinet provision --console-user NAME` writes the
users file with a one-time code (the real command, as its own process); whoever logs in with the
code must choose a password before anything else, and the code then stops working. Also a user
changing their own password. The console is the real TLS server of tests/test_console_http.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from agent.console.users import User, hash_password, read_users, verify_password, write_users
from tests.test_console_http import PASSWORD, Agent, Console

CLI = [sys.executable, "-m", "tools.cli"]


def provision(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "provision", "--id", "CAB-0042", "--out", str(out), "--broker", "mqtt://127.0.0.1", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_provisioned_one_time_code_must_be_replaced_at_the_first_login(tmp_path: Path) -> None:
    out = tmp_path / "cab-0042"
    r = provision(out, "--console-user", "anna")
    assert r.returncode == 0, r.stderr
    m = re.search(r"web console: anna \(technician\), one-time code ([a-z0-9-]+) \(shown only now\)", r.stdout)
    assert m, r.stdout
    code = m.group(1)
    users_file = out / "console" / "users.json"
    assert f"in {users_file}: the agent's <data dir>/console/users.json" in r.stdout
    assert code not in users_file.read_text() and oct(users_file.stat().st_mode & 0o777) == "0o600"
    (anna,) = read_users(users_file).values()
    assert anna.role == "technician" and anna.one_time and verify_password(code, anna.hash)

    c = Console(out, Agent())
    assert await c.server.start()
    try:
        cookie, csrf = await c.login("anna", code)
        status, _, who = await c.call("GET", "/api/session", cookie=cookie)
        assert status == 200 and who["must_set_password"] is True
        for method, path in (("GET", "/api/status"), ("GET", "/api/events"), ("GET", "/api/log")):
            status, _, doc = await c.call(method, path, cookie=cookie)
            assert status == 403 and "choose your own password first" in doc["error"], path
        status, _, doc = await c.call("POST", "/api/alarms/ack", {"id": "door_open"}, cookie=cookie, csrf=csrf)
        assert status == 403 and c.agent.calls == []
        status, _, doc = await c.call("POST", "/api/password", {"password": "short"}, cookie=cookie, csrf=csrf)
        assert status == 400 and "at least 10 characters" in doc["error"]
        status, _, doc = await c.call("POST", "/api/password", {"password": PASSWORD}, cookie=cookie)
        assert status == 403 and "CSRF" in doc["error"]
        assert read_users(users_file)["anna"] == anna  # nothing changed so far
        status, _, doc = await c.call("POST", "/api/password", {"password": PASSWORD}, cookie=cookie, csrf=csrf)
        assert status == 200 and doc["must_set_password"] is False
        assert (await c.call("GET", "/api/status", cookie=cookie))[0] == 200  # the same session goes on
        stored = read_users(users_file)["anna"]
        assert not stored.one_time and verify_password(PASSWORD, stored.hash)
        assert (await c.call("POST", "/api/login", {"user": "anna", "password": code}))[0] == 401
        await c.login("anna", PASSWORD)
        kinds = [(r.point, json.loads(str(r.value)).get("ok")) for r, _ in c.agent.events]
        assert ("event.console.password", True) in kinds and ("event.console.password", False) in kinds
    finally:
        await c.server.close()


def test_provision_refuses_a_bad_console_user_before_writing_anything(tmp_path: Path) -> None:
    out = tmp_path / "cab"
    r = provision(out, "--console-user", "Anna Admin")
    assert r.returncode == 2 and "--console-user 'Anna Admin': a user name is a lower-case letter" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


async def test_a_user_changes_their_own_password_with_the_current_one(tmp_path: Path) -> None:
    path = tmp_path / "console" / "users.json"
    write_users(path, {"tech": User("tech", "technician", hash_password(PASSWORD, n=2**10))})
    c = Console(tmp_path, Agent())
    assert await c.server.start()
    try:
        cookie, csrf = await c.login()
        other, _ = await c.login()
        new = "a brand new passphrase"
        status, _, doc = await c.call("POST", "/api/password", {"password": new}, cookie=cookie, csrf=csrf)
        assert status == 400 and '"current"' in doc["error"]
        body = {"password": new, "current": "not it at all"}
        status, _, doc = await c.call("POST", "/api/password", body, cookie=cookie, csrf=csrf)
        assert status == 401 and "nothing changed" in doc["error"]
        assert verify_password(PASSWORD, read_users(path)["tech"].hash)
        body = {"password": new, "current": PASSWORD}
        assert (await c.call("POST", "/api/password", body, cookie=cookie, csrf=csrf))[0] == 200
        assert (await c.call("GET", "/api/status", cookie=cookie))[0] == 200
        assert (await c.call("GET", "/api/status", cookie=other))[0] == 401  # the other session ended
        await c.login("tech", new)
    finally:
        await c.server.close()
