"""Mosquitto started as root drops to its user `mosquitto` before it loads its certificates
(issue 14): from the CA's 0700 `pki/` it cannot (`Unable to load CA certificates`); from
the directory `cabinet ca issue-server` writes it can, and a cabinet provisioned with
`cabinet provision` connects with mutual TLS. A real mosquitto, as root, without `user root`."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest

from agent.config.model import Uplink
from agent.uplink.client import tls_context
from tests.broker import free_port, mosquitto_binary
from tools.cli.table import main
from tools.provision import pki
from tools.provision.identity import provision

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop happens only when mosquitto starts as root"),
]


def _user_exists() -> bool:
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return False
    return True


def _config(d: Path, port: int, ca: Path, cert: Path, key: Path) -> Path:
    conf = d / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings false\nallow_anonymous false\npersistence false\nlog_dest stderr\n"
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    return conf


def _start(conf: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """mosquitto -c conf; returns once it accepts connections or has exited."""
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        if " running" in log.read_text(errors="replace"):
            break
        time.sleep(0.05)
    return proc


@pytest.mark.skipif(not _user_exists(), reason="no user mosquitto")
async def test_the_broker_reads_what_issue_server_wrote(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # private, like a home directory or the CA's pki/
    ca = pki.init_ca(tmp_path / "pki")
    key, cert = ca.issue_server(["localhost", "127.0.0.1"])
    pki.write_private(tmp_path / "pki" / "server.key", key)
    pki.write_public(tmp_path / "pki" / "server.crt", cert)
    port = free_port()
    p = tmp_path / "pki"
    old = _start(_config(tmp_path, port, p / "ca.crt", p / "server.crt", p / "server.key"), port, tmp_path / "old.log")
    try:
        assert old.wait(10) != 0
    finally:
        if old.poll() is None:
            old.kill()
    assert "Unable to load CA certificates" in (tmp_path / "old.log").read_text()  # the setup as it was

    broker_dir = Path("/tmp") / f"b14-priv-{os.getpid()}"
    try:
        argv = ["ca", "issue-server", "--dir", str(p), "--host", "localhost", "--host", "127.0.0.1"]
        assert main([*argv, "--out", str(broker_dir)]) == 0
        b = broker_dir
        conf = _config(broker_dir, port, b / "ca.crt", b / "server.crt", b / "server.key")
        proc = _start(conf, port, tmp_path / "new.log")
        try:
            assert proc.poll() is None, (tmp_path / "new.log").read_text()
            provision("CAB-PRIV-1", tmp_path / "cab", ca_dir=p, broker_host="127.0.0.1", broker_port=port)
            c = tmp_path / "cab"
            settings = Uplink(broker="127.0.0.1", port=port, ca=str(c / "ca.crt"), cert=str(c / "tls.crt"),
                              key=str(c / "tls.key"))  # fmt: skip
            async with aiomqtt.Client(
                "127.0.0.1", port, identifier="CAB-PRIV-1", tls_context=tls_context(settings), timeout=10
            ) as client:
                await client.publish("city/v1/cab/CAB-PRIV-1/state", b"{}", qos=1)
            log = (tmp_path / "new.log").read_text()
            assert "CAB-PRIV-1" in log and "Error" not in log, log
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(broker_dir, ignore_errors=True)
