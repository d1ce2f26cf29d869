"""The web console in a real browser (issue 19): headless Chromium (Debian's
chromium-headless-shell or chromium, never a downloaded build) driven by Playwright against
`python -m agent run` on the simulated cabinet, its console on a free port. Log in (a wrong
password first), see a value change, set an override and see the segment and its simulated
relay follow, acknowledge an alarm raised through `cabinet sim-control`, a viewer on a phone
with every action disabled, a POST without the CSRF token refused. Screenshots go to each
test's tmp dir."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import config as cfg
from tests.broker import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "tools.cli"]
PASSWORD = "night-shift-2026"
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
MISSING = (
    "PyPI playwright (the test extra)"
    if importlib.util.find_spec("playwright") is None
    else "Debian chromium-headless-shell or chromium"
    if CHROMIUM is None
    else None
)
if MISSING and os.environ.get("CI"):  # in CI a missing browser is a failure, not a skip
    raise RuntimeError(f"the browser tests need {MISSING}")
if MISSING:
    pytest.skip(f"needs {MISSING}", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402 - only when installed


def cabinet(*args: str, data_dir: Path, stdin: str = "") -> str:
    r = subprocess.run(
        [*CLI, *args, "--data-dir", str(data_dir)], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stdout, r.stderr)
    return r.stdout


class Site:
    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.data_dir, self.port, self.log = data_dir, port, log
        self.url = f"https://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The agent on the simulated cabinet with its console on a free port, and two users."""
    data_dir = tmp_path_factory.mktemp("console-site")
    port = free_port()
    config = data_dir / "cabinet.toml"
    config.write_text(cfg.EXAMPLE.read_text() + f"\n[console]\nport = {port}\n")
    for user, role in (("tech", "technician"), ("viewer", "viewer")):
        cabinet("console", "passwd", "--role", role, "--password-stdin", user, data_dir=data_dir, stdin=PASSWORD + "\n")
    log = data_dir / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config), "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        cabinet("status", "--wait", "60", "--summary", data_dir=data_dir)
        assert f"console at https://127.0.0.1:{port}/" in log.read_text()
        yield Site(data_dir, port, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser: Browser, **context: Any) -> Page:
    # the console's certificate is self-signed (generated in the data dir): trusted for this test only
    ctx = browser.new_context(ignore_https_errors=True, **context)
    return ctx.new_page()


def log_in(page: Page, site: Site, user: str = "tech", password: str = PASSWORD) -> None:
    page.goto(site.url)
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("#login button[type=submit]")


def point(page: Page, name: str) -> Any:
    return page.locator(f'tr[data-point="{name}"] td.value')


def test_login_then_live_values(site: Site, browser: Browser, tmp_path: Path) -> None:
    page = open_page(browser)
    log_in(page, site, password="not-the-password")
    expect(page.locator("#message")).to_contain_text("wrong user name or password")
    expect(page.locator("#console")).to_be_hidden()
    log_in(page, site)
    expect(page.locator("#who")).to_have_text("tech (technician)")
    expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    expect(page.locator("#title")).to_contain_text("CAB-SIM-0001")
    expect(point(page, "dio.door")).to_have_text("false", timeout=15_000)
    page.screenshot(path=str(tmp_path / "summary.png"), full_page=True)
    cabinet("sim-control", "set", "door_open", "true", data_dir=site.data_dir)
    try:
        expect(point(page, "dio.door")).to_have_text("true", timeout=15_000)  # the stream brought the change
    finally:
        cabinet("sim-control", "set", "door_open", "false", data_dir=site.data_dir)
    page.fill("#filter", "relays.")
    expect(page.locator("#count")).to_have_text("(8 of 127)")
    page.screenshot(path=str(tmp_path / "filtered.png"), full_page=True)


def test_override_and_cancel_a_segment(site: Site, browser: Browser, tmp_path: Path) -> None:
    page = open_page(browser)
    log_in(page, site)
    row = page.locator('[data-seg="seg1"]')
    expect(row.locator(".state")).not_to_be_empty(timeout=15_000)
    was_on = row.locator(".state").inner_text().startswith("ON")
    relay = point(page, "relays.relay_1")
    expect(relay).to_have_text("true" if was_on else "false", timeout=15_000)
    row.locator("select.on").select_option("off" if was_on else "on")
    row.locator("input.minutes").fill("5")
    row.locator("button.set").click()
    expect(page.locator("#message")).to_have_text("override set on seg1")
    expect(row.locator(".state")).to_have_text("off" if was_on else "ON", timeout=10_000)
    expect(row.locator(".why")).to_contain_text("override by console:tech, until")
    expect(relay).to_have_text("false" if was_on else "true", timeout=15_000)  # the simulated relay switched
    page.screenshot(path=str(tmp_path / "override.png"), full_page=True)
    row.locator("button.cancel").click()
    expect(page.locator("#message")).to_have_text("override on seg1 cancelled")
    expect(row.locator(".why")).not_to_contain_text("override by", timeout=10_000)
    # (the lamps come back under the program's own rules, e.g. a minimum off time: not checked here)
    text = site.log.read_text()
    assert f"lighting seg1: override {'off' if was_on else 'on'} until" in text
    assert "lighting seg1: override cancelled by console:tech" in text


def test_acknowledge_an_alarm_raised_in_the_simulator(site: Site, browser: Browser, tmp_path: Path) -> None:
    page = open_page(browser)
    log_in(page, site)
    expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    cabinet("sim-control", "set", "door_open", "true", data_dir=site.data_dir)
    try:
        alarm = page.locator('[data-alarm="climate.door_open"]')
        expect(alarm.locator(".state")).to_have_text("warning, active", timeout=20_000)
        alarm.locator("button.ack").click()
        expect(page.locator("#message")).to_have_text("alarm climate.door_open acknowledged")
        expect(alarm.locator(".state")).to_have_text("warning, acknowledged", timeout=10_000)
        expect(alarm.locator("button.ack")).to_be_disabled()
        page.screenshot(path=str(tmp_path / "alarm.png"), full_page=True)
    finally:
        cabinet("sim-control", "set", "door_open", "false", data_dir=site.data_dir)
    assert "alarm climate.door_open acknowledged by console:tech" in site.log.read_text()


def test_a_viewer_on_a_phone_sees_everything_and_can_do_nothing(site: Site, browser: Browser, tmp_path: Path) -> None:
    page = open_page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    log_in(page, site, user="viewer")
    expect(page.locator("#who")).to_have_text("viewer (viewer)")
    row = page.locator('[data-seg="seg1"]')
    expect(row.locator("button.set")).to_be_disabled(timeout=15_000)
    expect(row.locator("button.cancel")).to_be_disabled()
    expect(point(page, "meter_main.voltage_l1")).not_to_have_text("–", timeout=15_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    # the page's buttons are disabled; the server refuses a viewer's action anyway
    status = page.evaluate(
        """async () => {
            const s = await (await fetch('/api/session')).json();
            const r = await fetch('/api/lighting/cancel', {method: 'POST', body: '{}',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf}});
            return [r.status, (await r.json()).error];
        }"""
    )
    assert status[0] == 403 and "viewer" in status[1]


def test_a_post_without_the_csrf_token_is_refused(site: Site, browser: Browser) -> None:
    page = open_page(browser)
    log_in(page, site)
    expect(page.locator("#who")).to_have_text("tech (technician)")
    status = page.evaluate(
        """async () => {
            const r = await fetch('/api/lighting/override', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({on: false, minutes: 5})});
            return [r.status, (await r.json()).error];
        }"""
    )
    assert status[0] == 403 and "CSRF" in status[1]
    assert '"error":"bad CSRF token"' in site.log.read_text()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("fetch('/api/status').then(r => r.status)") == 401


def test_logins_and_actions_are_events_in_the_outbox(site: Site, browser: Browser) -> None:
    page = open_page(browser)
    log_in(page, site, password="wrong-password-1")
    log_in(page, site)
    expect(page.locator("#who")).to_have_text("tech (technician)")
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    with sqlite3.connect(f"file:{site.data_dir / 'outbox.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT p.name, r.v FROM rows r JOIN points p ON r.point = p.id WHERE p.name LIKE 'event.console.%'"
        ).fetchall()
    kinds = {(name, json.loads(v)["user"], json.loads(v).get("ok")) for name, v in rows}
    assert {
        ("event.console.login", "tech", False),
        ("event.console.login", "tech", True),
        ("event.console.logout", "tech", None),
    } <= kinds


def test_the_page_is_small_and_served_from_the_cabinet_only(site: Site, browser: Browser) -> None:
    page = open_page(browser)
    sizes: dict[str, int] = {}
    page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body())))
    page.goto(site.url)
    page.wait_for_load_state("networkidle")
    assert {u.removeprefix(site.url) for u in sizes} == {"", "console.js", "console.css", "api/session"}
    assert sum(sizes.values()) < 20_000
