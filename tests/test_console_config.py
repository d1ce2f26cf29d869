"""[console] in the cabinet config (issue 19): on by default on loopback only, every bad value an
error naming the file, section and key, the self-signed certificate generated once."""

from __future__ import annotations

import ssl
from pathlib import Path

from agent import config as cfg
from agent.config.console import ConsoleSettings
from agent.console import tls
from tests.conftest import find, issues_of

EXAMPLE = cfg.EXAMPLE.read_text()


def test_no_section_means_on_loopback_port_8443() -> None:
    c = cfg.loads(EXAMPLE, "cab.toml")
    assert c.console == ConsoleSettings()
    assert (c.console.enabled, c.console.address, c.console.port, c.console.cert) == (True, "127.0.0.1", 8443, "")


def test_settings_are_read_and_paths_taken_from_the_config_dir(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    path = tmp_path / "cab.toml"
    path.write_text(
        EXAMPLE + '\n[console]\naddress = "192.168.7.1"\nport = 9443\ncert = "c.pem"\nkey = "k.pem"\n'
        "session_idle_minutes = 10\nlockout_failures = 3\nmax_streams = 4\n"
    )
    c = cfg.load(path).console
    assert (c.address, c.port, c.cert, c.key) == ("192.168.7.1", 9443, str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert (c.session_idle_minutes, c.lockout_failures, c.max_streams) == (10.0, 3, 4)
    off = cfg.loads(EXAMPLE + "\n[console]\nenabled = false\n", "cab.toml").console
    assert off.enabled is False


def test_every_bad_value_is_named() -> None:
    issues = issues_of(
        EXAMPLE + '\n[console]\naddress = "cabinet.local"\nport = 70000\ncert = "/nonexistent/c.pem"\n'
        'session_hours = "8"\nlockout_failures = 0\nmax_stream = 3\n'
    )
    assert find(issues, "console", "address").message == "not an IP address"
    assert find(issues, "console", "port").message == "out of range"
    assert "no such file: /nonexistent/c.pem" in find(issues, "console", "cert").message
    assert "expected a number, got a string" in find(issues, "console", "session_hours").message
    assert find(issues, "console", "lockout_failures").message == "out of range"
    assert "did you mean 'max_streams'" in find(issues, "console", "max_stream").message
    assert all(i.file == "cab.toml" for i in issues)
    line = str(find(issues, "console", "port"))
    assert line.startswith("cab.toml: [console] port = 70000: out of range (allowed: an integer 1..65535")


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    path = tmp_path / "cab.toml"
    path.write_text(EXAMPLE + '\n[console]\ncert = "c.pem"\n')
    issues = cfg.check(path)
    assert [(i.section, i.key) for i in issues] == [("console", "key")]
    assert "cert and key go together" in issues[0].message


def test_the_self_signed_certificate_is_made_once_and_serves_tls(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path, "127.0.0.1", "CAB-SIM-0001")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    first = tls.fingerprint(cert)
    assert tls.self_signed(tmp_path, "127.0.0.1", "CAB-SIM-0001") == (cert, key)
    assert tls.fingerprint(cert) == first and len(first.split(":")) == 32
    tls.self_signed(tmp_path, "192.168.7.1", "CAB-SIM-0001")  # the listen address changed: a new certificate
    second = tls.fingerprint(cert)
    assert second != first
    tls.self_signed(tmp_path, "192.168.7.1", "CAB-SIM-0001")
    assert tls.fingerprint(cert) == second
    assert tls.server_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2
    # (tests/test_console_http.py connects with this certificate as the only CA, checking the host name)
