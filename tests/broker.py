"""A real mosquitto for tests: free ports, a temp dir, its own CA and certificates.

    b = Broker(tmp_path / "mqtt", tls=True, acl=example_acl(), plain=False)
    b.start()                                   # returns once the ports accept connections
    ctx = b.tls_context("CAB-A")                # client TLS context: cert CN "CAB-A" from the broker's CA
    aiomqtt.Client("127.0.0.1", b.tls_port, tls_context=ctx, protocol=aiomqtt.ProtocolVersion.V5, ...)
    b.stop(); b.restart(); b.kill()             # SIGTERM (persistence saved) / same ports again / SIGKILL

Fixtures (function-scoped; import them into a test module with
`from tests.broker import broker, acl_broker  # noqa: F401`):

    broker       plain listener + TLS listener (mutual TLS, CN = username), no ACL
    acl_broker   TLS only, the fleet ACL from tools/mosquitto/acl.example, no anonymous clients,
                 client id forced to the certificate CN (use_username_as_clientid) as in
                 tools/mosquitto/cabinet-broker.conf.example; `service_port` is a second TLS
                 listener without that rule, for cloud services running several instances
                 under one CN (the ingest)

Ports are picked by binding port 0 (test machines are shared; the system broker on 1883 is
never used). If another process grabs a port between the pick and mosquitto's bind, start()
picks new ports and tries again. start() waits for mosquitto's "running" log line and then
opens one TCP connection per port; on TLS ports that leaves a harmless
"Client connection from 127.0.0.1 failed: ... unexpected eof" line in the log.

The log (`Broker.log`, mosquitto's stderr) has connections, subscriptions and errors; pass
debug_log=True to see every packet (PUBACK reason codes, "Denied PUBLISH" lines).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import pytest

from tools.provision import pki

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ACL = ROOT / "tools" / "mosquitto" / "acl.example"
HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    """mosquitto did not start (the message includes its log) or is not in the expected state."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if not found:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto); tests need a real broker")
    return found


def example_acl(prefix: str = "city/v1") -> str:
    """The ACL of tools/mosquitto/acl.example with its topic prefix "city/v1" replaced by `prefix`."""
    text = EXAMPLE_ACL.read_text()
    return text if prefix == "city/v1" else text.replace("city/v1/", prefix.rstrip("/") + "/")


class Broker:
    """A real mosquitto process on free loopback ports, everything in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = True,
        acl: str | None = None,
        plain: bool = True,
        clientid_from_cert: bool = False,
        service_listener: bool = False,
        algorithm: str = "ed25519",
        debug_log: bool = False,
        extra_config: str = "",
        start_timeout: float = 10.0,
    ) -> None:
        if not tls and not plain:
            raise ValueError("Broker: needs at least one listener (tls and/or plain)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls, self.plain, self.acl = tls, plain, acl
        self.clientid_from_cert = clientid_from_cert
        self.service_listener = service_listener and tls
        self.algorithm = algorithm
        self.debug_log = debug_log
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.plain_port: int | None = None
        self.tls_port: int | None = None
        self.service_port: int | None = None
        self.pki_dir = self.workdir / "pki"
        self.ca_path = self.pki_dir / pki.CA_CERT
        self.server_cert = self.pki_dir / "server.crt"
        self.server_key = self.pki_dir / "server.key"
        self.clients_dir = self.workdir / "clients"
        self.data_dir = self.workdir / "data"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.acl_path = self.workdir / "acl"
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._ca: pki.CA | None = None
        self._certs: dict[str, tuple[Path, Path]] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def host(self) -> str:
        return HOST

    def start(self) -> None:
        """Write certificates and config, start `mosquitto -c`, wait until every port accepts connections."""
        if self.running:
            raise BrokerError("Broker.start: already running")
        if self.tls:
            self._ensure_server_cert()
        self.data_dir.mkdir(exist_ok=True)
        fresh = self.plain_port is None and self.tls_port is None
        for attempt in range(5):
            if fresh:
                self._pick_ports()
            self._write_config()
            try:
                self._spawn()
                return
            except _PortTaken:
                if not fresh or attempt == 4:
                    raise BrokerError(
                        f"mosquitto: a port is taken by another process (ports {self.ports})\n{self.log_text()}"
                    ) from None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto writes its persistence file) and wait; SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)  # in case a test froze it with SIGSTOP
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL: no persistence written, no clean disconnects."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reap()

    def restart(self) -> None:
        """Start again on the SAME ports with the same persistence (stops it first if running)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def ports(self) -> list[int]:
        return [p for p in (self.plain_port, self.tls_port, self.service_port) if p is not None]

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    # ------------------------------------------------------------------ certificates

    @property
    def ca(self) -> pki.CA:
        if self._ca is None:
            self._ca = (
                pki.load_ca(self.pki_dir)
                if self.ca_path.exists()
                else pki.init_ca(self.pki_dir, name="test broker device CA", algorithm=self.algorithm)
            )
        return self._ca

    def client_cert(self, cn: str) -> tuple[Path, Path]:
        """(cert_path, key_path) of a client certificate with CN `cn`, issued by the broker's CA (cached)."""
        if cn not in self._certs:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", cn)[:40] + "-" + hashlib.sha256(cn.encode()).hexdigest()[:8]
            key_pem, cert_pem = self.ca.issue_client(cn, algorithm=self.algorithm)
            cert, key = self.clients_dir / f"{safe}.crt", self.clients_dir / f"{safe}.key"
            pki.write_private(key, key_pem, force=True)
            pki.write_public(cert, cert_pem, force=True)
            self._certs[cn] = (cert, key)
        return self._certs[cn]

    def tls_context(self, cn: str | None) -> ssl.SSLContext:
        """A client context for aiomqtt: TLS 1.3, trusts the broker's CA, presents the certificate
        for `cn` (None: no client certificate, which the broker must refuse)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca.cert_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if cn is not None:
            cert, key = self.client_cert(cn)
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def client(self, cn: str | None, *, port: int | None = None, identifier: str | None = None, **kwargs: Any) -> Any:
        """An aiomqtt.Client (MQTT v5) for the TLS listener with the certificate for `cn`.

        `port` defaults to `tls_port`; `identifier` (client id) defaults to `cn`; other keyword
        arguments go to aiomqtt.Client (timeout defaults to 5 s). Call it inside a running loop."""
        import aiomqtt

        port = port or self.tls_port
        if port is None:
            raise BrokerError("Broker.client: this broker has no TLS listener (use plain_port)")
        kwargs.setdefault("protocol", aiomqtt.ProtocolVersion.V5)
        kwargs.setdefault("timeout", 5)
        return aiomqtt.Client(HOST, port, identifier=identifier or cn, tls_context=self.tls_context(cn), **kwargs)

    def _ensure_server_cert(self) -> None:
        if not self.server_cert.exists():
            key_pem, cert_pem = self.ca.issue_server(["localhost", HOST], algorithm=self.algorithm)
            pki.write_private(self.server_key, key_pem, force=True)
            pki.write_public(self.server_cert, cert_pem, force=True)

    # ------------------------------------------------------------------ internals

    def _pick_ports(self) -> None:
        self.plain_port = free_port() if self.plain else None
        self.tls_port = free_port() if self.tls else None
        self.service_port = free_port() if self.service_listener else None
        if len(set(self.ports)) != len(self.ports):  # the kernel handed out the same port twice
            self._pick_ports()

    def _write_config(self) -> None:
        log_types = ["all"] if self.debug_log else ["error", "warning", "notice", "information", "subscribe"]
        lines = [
            "# written by tests/broker.py",
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.plain else 'false'}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "max_inflight_messages 20",
            "log_dest stderr",
            *(f"log_type {t}" for t in log_types),
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            # as root, mosquitto would drop to user "mosquitto", which cannot use this temp dir.
            # (mosquitto.conf has no trailing comments: "user root  # x" means user "root  # x")
            lines.insert(2, "user root")
        if self.acl is not None:
            self.acl_path.write_text(self.acl)
            lines.append(f"acl_file {self.acl_path}")
        if self.plain_port is not None:
            lines += ["", f"listener {self.plain_port} {HOST}"]
        for port, clientid_from_cert in ((self.tls_port, self.clientid_from_cert), (self.service_port, False)):
            if port is None:
                continue
            lines += [
                "",
                f"listener {port} {HOST}",
                f"cafile {self.ca_path}",
                f"certfile {self.server_cert}",
                f"keyfile {self.server_key}",
                "require_certificate true",
                "use_identity_as_username true",
                "tls_version tlsv1.3",
            ]
            if clientid_from_cert:
                lines.append("use_username_as_clientid true")
        if self.extra_config:
            lines += ["", self.extra_config]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def _spawn(self) -> None:
        start_offset = self.log.stat().st_size if self.log.exists() else 0
        self._log_fh = open(self.log, "ab")  # noqa: SIM115 - mosquitto's stdout while it runs; _reap() closes it
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            new_log = self._log_since(start_offset)
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._reap()
                if "Address already in use" in new_log:
                    raise _PortTaken()
                raise BrokerError(
                    f"mosquitto exited with code {rc} during start-up (config {self.conf_path}); its log:\n{new_log}"
                )
            if " running" in new_log and all(_accepts(p) for p in self.ports):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"mosquitto did not accept connections on {self.ports} within "
                    f"{self.start_timeout} s (config {self.conf_path}); its log:\n"
                    f"{self._log_since(start_offset)}"
                )
            time.sleep(0.02)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _reap(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


class _PortTaken(Exception):
    pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def broker(tmp_path: Path):
    """mosquitto with a plain listener (anonymous) and a mutual-TLS listener (CN = username), no ACL."""
    b = Broker(tmp_path / "mosquitto", tls=True, plain=True)
    try:
        b.start()
        yield b
    finally:
        b.close()


@pytest.fixture
def acl_broker(tmp_path: Path):
    """mosquitto as in production: mutual TLS only, the fleet ACL (prefix city/v1), client id = CN
    on `tls_port`; `service_port` for cloud services (several instances may share one CN)."""
    b = Broker(
        tmp_path / "mosquitto",
        tls=True,
        plain=False,
        acl=example_acl("city/v1"),
        clientid_from_cert=True,
        service_listener=True,
    )
    try:
        b.start()
        yield b
    finally:
        b.close()
