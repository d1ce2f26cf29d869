"""The fleet ACL (tools/mosquitto/acl.example) and mutual TLS against a real mosquitto.

`acl_broker` (tests/broker.py): TLS only, the example ACL, client id forced to the certificate CN
on `tls_port` (as in cabinet-broker.conf.example), `service_port` without that rule (services).

Non-delivery is proven without long sleeps: messages from one publisher reach one subscriber in
order, so once a later "sentinel" message has arrived, an earlier dropped one is never coming.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.broker import Broker, acl_broker, broker, example_acl, free_port  # noqa: F401
from tools.provision import pki

NOT_AUTHORIZED = 0x87
T = "city/v1/cab/{}/{}"


class Pubacks:
    """PUBACK reason codes of one client, read by wrapping paho's on_publish (aiomqtt ignores them)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.codes: list[int] = []
        original: Any = client._client.on_publish  # typed as paho's v1 | v2 union; aiomqtt installs the v2 form

        def on_publish(c, userdata, mid, reason_code, properties):
            self.codes.append(reason_code.value)
            return original(c, userdata, mid, reason_code, properties)

        client._client.on_publish = on_publish

    @property
    def last(self) -> int:
        return self.codes[-1]


class Inbox:
    """Collects a client's messages in a task."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(client))

    async def _run(self, client: aiomqtt.Client) -> None:
        try:
            async for m in client.messages:
                self.messages.append((str(m.topic), bytes(m.payload)))
        except aiomqtt.MqttError as e:
            self.error = e

    @property
    def payloads(self) -> list[bytes]:
        return [p for _, p in self.messages]

    async def wait_for(self, payload: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while payload not in self.payloads:
            if time.monotonic() > deadline:
                raise AssertionError(f"{payload!r} not received within {timeout} s; got {self.messages}")
            await asyncio.sleep(0.01)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def ingest(b: Broker, identifier: str = "ingest-1") -> aiomqtt.Client:
    return b.client("ingest", port=b.service_port, identifier=identifier)


# ----------------------------------------------------------------------------- telemetry path


@pytest.mark.integration
async def test_cabinet_telemetry_reaches_the_shared_ingest(acl_broker):
    ing, cab = ingest(acl_broker), acl_broker.client("CAB-A")
    async with ing, cab:
        granted = await ing.subscribe("$share/ingest/city/v1/cab/+/telemetry", qos=1)
        assert isinstance(granted, list)  # MQTT v5: reason codes, not the v3 tuple of ints
        assert [r.value for r in granted] == [1]
        inbox, acks = Inbox(ing), Pubacks(cab)
        await cab.publish(T.format("CAB-A", "telemetry"), b"batch-1", qos=1)
        assert acks.last == 0
        await inbox.wait_for(b"batch-1")
        assert inbox.messages == [(T.format("CAB-A", "telemetry"), b"batch-1")]
        await inbox.close()


@pytest.mark.integration
async def test_publishing_as_another_cabinet_is_dropped(acl_broker):
    ing, cab = ingest(acl_broker), acl_broker.client("CAB-A")
    async with ing, cab:
        await ing.subscribe("$share/ingest/city/v1/cab/+/telemetry", qos=1)
        await ing.subscribe("city/v1/cab/+/state", qos=1)
        inbox, acks = Inbox(ing), Pubacks(cab)
        # QoS 1: aiomqtt's publish() returns normally, only the PUBACK reason says "Not authorized"
        await cab.publish(T.format("CAB-B", "telemetry"), b"forged-1", qos=1)
        assert acks.last == NOT_AUTHORIZED
        await cab.publish(T.format("CAB-B", "state"), b"forged-2", qos=1)
        assert acks.last == NOT_AUTHORIZED
        await cab.publish(T.format("CAB-B", "telemetry"), b"forged-3", qos=0)  # QoS 0: no answer at all
        await cab.publish("city/v1/cab/CAB-A/anything-else", b"forged-4", qos=1)
        assert acks.last == NOT_AUTHORIZED
        await cab.publish(T.format("CAB-A", "state"), b"sentinel", qos=1)
        assert acks.last == 0
        await inbox.wait_for(b"sentinel")
        await asyncio.sleep(0.2)  # belt and braces: nothing else trickles in
        assert inbox.payloads == [b"sentinel"]
        await inbox.close()


@pytest.mark.integration
async def test_ingest_acks_but_cannot_forge_telemetry(acl_broker):
    ing, cab = ingest(acl_broker), acl_broker.client("CAB-A")
    async with ing, cab:
        await cab.subscribe(T.format("CAB-A", "ack"), qos=1)
        await ing.subscribe("city/v1/cab/+/telemetry", qos=1)
        cab_inbox, ing_inbox, acks = Inbox(cab), Inbox(ing), Pubacks(ing)
        await ing.publish(T.format("CAB-A", "telemetry"), b"forged", qos=1)
        assert acks.last == NOT_AUTHORIZED
        await ing.publish(T.format("CAB-A", "ack"), b"ack-1", qos=1)
        assert acks.last == 0
        await cab_inbox.wait_for(b"ack-1")
        await cab.publish(T.format("CAB-A", "telemetry"), b"sentinel", qos=1)
        await ing_inbox.wait_for(b"sentinel")
        assert ing_inbox.payloads == [b"sentinel"]
        await cab_inbox.close()
        await ing_inbox.close()


@pytest.mark.integration
async def test_cabinet_cannot_read_another_cabinets_topics(acl_broker):
    ing, cab_a, cab_b = ingest(acl_broker), acl_broker.client("CAB-A"), acl_broker.client("CAB-B")
    async with ing, cab_a, cab_b:
        # acl_file does not check SUBSCRIBE at all: every filter is granted ...
        granted = await cab_a.subscribe([("city/v1/cab/CAB-B/ack", 1), ("city/v1/cab/+/ack", 1), ("#", 1)])
        assert [r.value for r in granted] == [1, 1, 1]
        await cab_b.subscribe(T.format("CAB-B", "ack"), qos=1)
        inbox_a, inbox_b = Inbox(cab_a), Inbox(cab_b)
        # ... but every message is checked against the reader's rights at delivery
        await ing.publish(T.format("CAB-B", "ack"), b"ack-for-B", qos=1)
        await cab_b.publish(T.format("CAB-B", "telemetry"), b"telemetry-of-B", qos=1)
        await ing.publish(T.format("CAB-A", "ack"), b"ack-for-A", qos=1)
        await inbox_b.wait_for(b"ack-for-B")
        await inbox_a.wait_for(b"ack-for-A")
        await asyncio.sleep(0.2)
        # CAB-A matches three of its filters for its own ack; MQTT v5 may deliver one copy per filter
        assert set(inbox_a.payloads) == {b"ack-for-A"}
        assert inbox_b.payloads == [b"ack-for-B"]
        for inbox in (inbox_a, inbox_b):
            await inbox.close()


# ----------------------------------------------------------------------------- who may connect


async def _connect_fails(b: Broker, ctx: ssl.SSLContext, log_line: str) -> None:
    assert b.tls_port is not None
    client = aiomqtt.Client(
        "127.0.0.1", b.tls_port, identifier="CAB-A", tls_context=ctx, protocol=aiomqtt.ProtocolVersion.V5, timeout=1.0
    )
    with pytest.raises(aiomqtt.MqttError):  # paho only logs the TLS alert; aiomqtt times out
        async with client:
            pass
    deadline = time.monotonic() + 5
    while log_line not in b.log_text():
        assert time.monotonic() < deadline, f"{log_line!r} not in the broker log:\n{b.log_text()}"
        await asyncio.sleep(0.02)


@pytest.mark.integration
async def test_client_without_certificate_is_rejected(acl_broker):
    await _connect_fails(acl_broker, acl_broker.tls_context(None), "peer did not return a certificate")


@pytest.mark.integration
async def test_certificate_from_another_ca_is_rejected(acl_broker, tmp_path):
    other = pki.init_ca(tmp_path / "other-ca", name=acl_broker.ca.cert.subject.rfc4514_string()[3:])
    key_pem, cert_pem = other.issue_client("CAB-A")  # same CA name, same CN, different key
    pki.write_private(tmp_path / "a.key", key_pem)
    pki.write_public(tmp_path / "a.crt", cert_pem)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(acl_broker.ca_path))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
    await _connect_fails(acl_broker, ctx, "certificate verify failed")


# ----------------------------------------------------------------------------- client id vs certificate


async def _impostor_has_only_its_own_rights(b: Broker, impostor: aiomqtt.Client, ing: aiomqtt.Client) -> None:
    """`impostor` holds CN CAB-A's certificate but says client id "CAB-B"."""
    await ing.subscribe("city/v1/cab/+/telemetry", qos=1)
    await impostor.subscribe(T.format("CAB-B", "ack"), qos=1)
    ing_inbox, imp_inbox, acks = Inbox(ing), Inbox(impostor), Pubacks(impostor)
    await impostor.publish(T.format("CAB-B", "telemetry"), b"as-B", qos=1)
    assert acks.last == NOT_AUTHORIZED
    await impostor.publish(T.format("CAB-A", "telemetry"), b"as-A", qos=1)
    assert acks.last == 0
    await ing_inbox.wait_for(b"as-A")
    assert ing_inbox.payloads == [b"as-A"]
    await ing.publish(T.format("CAB-B", "ack"), b"ack-for-B", qos=1)
    await asyncio.sleep(0.3)
    assert imp_inbox.payloads == []
    await ing_inbox.close()
    await imp_inbox.close()


@pytest.mark.integration
async def test_client_id_is_replaced_by_the_certificate_cn(acl_broker):
    """The cabinet listener (use_username_as_clientid): saying "CAB-B" gets the client id CAB-A,
    CAB-A's rights, and leaves the real CAB-B connected."""
    real_b = acl_broker.client("CAB-B")
    impostor = acl_broker.client("CAB-A", identifier="CAB-B")
    ing = ingest(acl_broker)
    async with real_b, ing:
        await real_b.subscribe(T.format("CAB-B", "ack"), qos=1)
        real_inbox = Inbox(real_b)
        async with impostor:
            await _impostor_has_only_its_own_rights(acl_broker, impostor, ing)
        await real_inbox.wait_for(b"ack-for-B")  # still connected, got its ack
        assert real_inbox.error is None
        await real_inbox.close()
    assert re.search(r"New client connected from \S+ as CAB-A \(.*u'CAB-A'\)", acl_broker.log_text())
    assert "as CAB-B (p5, c1, k60, u'CAB-A')" not in acl_broker.log_text()


@pytest.mark.integration
async def test_without_clientid_binding_rights_still_follow_the_cn_but_the_session_is_taken(acl_broker):
    """The service listener has no use_username_as_clientid: the client id "CAB-B" is used as is.
    %u keeps the rights at CAB-A's, but the real CAB-B is kicked off (session takeover), which is
    why the cabinet listener binds the client id to the CN."""
    port = acl_broker.service_port
    real_b = acl_broker.client("CAB-B", port=port)
    impostor = acl_broker.client("CAB-A", port=port, identifier="CAB-B")
    ing = ingest(acl_broker)
    async with real_b, ing:
        real_inbox = Inbox(real_b)
        async with impostor:
            await real_inbox.wait_closed()
            assert isinstance(real_inbox.error, aiomqtt.MqttError)  # kicked off
            await _impostor_has_only_its_own_rights(acl_broker, impostor, ing)
    assert "as CAB-B (p5, c1, k60, u'CAB-A')" in acl_broker.log_text()


# ----------------------------------------------------------------------------- shared subscriptions


@pytest.mark.integration
async def test_shared_group_member_without_read_rights_black_holes_messages(acl_broker):
    """Characterises mosquitto 2.0: a shared group hands each message to its next member; if that
    member may not read it, the message is dropped, not given to another member. Subscribing is
    not ACL-checked, so any cabinet can join the ingest's group (see acl.example)."""
    ing, thief, cab = ingest(acl_broker), acl_broker.client("CAB-C"), acl_broker.client("CAB-A")
    async with ing, thief, cab:
        await ing.subscribe("$share/ingest/city/v1/cab/+/telemetry", qos=1)
        await thief.subscribe("$share/ingest/city/v1/cab/+/telemetry", qos=1)
        ing_inbox, thief_inbox = Inbox(ing), Inbox(thief)
        sent = [f"m{i}".encode() for i in range(6)]
        for payload in sent:
            await cab.publish(T.format("CAB-A", "telemetry"), payload, qos=1)
        await asyncio.sleep(0.3)
        assert thief_inbox.payloads == []
        assert 0 < len(ing_inbox.payloads) < len(sent)  # 2.0.11: every other message is lost
        await ing_inbox.close()
        await thief_inbox.close()


# ----------------------------------------------------------------------------- provisioning end to end


@pytest.mark.integration
async def test_provisioned_cabinet_connects_and_publishes(acl_broker, tmp_path):
    import tomllib

    from tools.provision.identity import provision

    registered = {}
    out = tmp_path / "CAB-P"
    provision(
        "CAB-P",
        out,
        ca_dir=acl_broker.pki_dir,
        broker_host="127.0.0.1",
        broker_port=acl_broker.tls_port,
        registry=lambda cid, kid, pub: registered.update({cid: (kid, pub)}),
    )
    up = tomllib.loads((out / "cabinet.toml").read_text())["uplink"]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(out / up["ca"]))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(out / up["cert"]), str(out / up["key"]))
    cab = aiomqtt.Client(
        up["broker"], up["port"], identifier="CAB-P", tls_context=ctx, protocol=aiomqtt.ProtocolVersion.V5, timeout=5
    )
    ing = ingest(acl_broker)
    async with ing, cab:
        await ing.subscribe("$share/ingest/city/v1/cab/+/telemetry", qos=1)
        inbox, acks = Inbox(ing), Pubacks(cab)
        signer = pki.load_signing_key(out / up["signing_key"])
        body = b"batch"
        await cab.publish(f"{up['topic_prefix']}/cab/CAB-P/telemetry", body + signer.sign(body), qos=1)
        assert acks.last == 0
        await inbox.wait_for(body + signer.sign(body))  # Ed25519 signatures are deterministic
        kid, pub = registered["CAB-P"]
        assert pki.key_id(pub) == kid
        await inbox.close()


# ----------------------------------------------------------------------------- the example files


def test_acl_example_has_no_client_id_patterns_and_only_column_0_comments():
    text = (Path(__file__).parent.parent / "tools" / "mosquitto" / "acl.example").read_text()
    rules = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(re.fullmatch(r"(pattern|topic) (read|write|readwrite|deny) \S+|user \S+", r) for r in rules)
    assert not any("%c" in r for r in rules)
    assert "city/v1/cab/%u/telemetry" in text


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(), reason="mosquitto not installed"
)
def test_broker_config_example_is_accepted_by_mosquitto(tmp_path):
    """cabinet-broker.conf.example, with paths and ports rewritten, starts mosquitto."""
    from tests.broker import mosquitto_binary

    helper = Broker(tmp_path / "certs", plain=False, acl=example_acl())
    helper._ensure_server_cert()
    helper.acl_path.write_text(example_acl())
    conf = (Path(__file__).parent.parent / "tools" / "mosquitto" / "cabinet-broker.conf.example").read_text()
    ports = [free_port(), free_port()]
    replacements = {
        "listener 8883\n": f"listener {ports[0]} 127.0.0.1\n",
        "listener 8884 10.0.0.1\n": f"listener {ports[1]} 127.0.0.1\n",
        "/etc/mosquitto/cabinet-acl": str(helper.acl_path),
        "/var/lib/mosquitto/": f"{tmp_path}/data/",
        "/etc/mosquitto/certs/ca.crt": str(helper.ca_path),
        "/etc/mosquitto/certs/server.crt": str(helper.server_cert),
        "/etc/mosquitto/certs/server.key": str(helper.server_key),
        "log_dest syslog": "log_dest stderr",
    }
    for old, new in replacements.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "data").mkdir()
    (tmp_path / "broker.conf").write_text(conf + "\nuser root\n")
    log_path = tmp_path / "broker.log"
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(tmp_path / "broker.conf")], stdout=subprocess.DEVNULL, stderr=log_fh
        )
    try:
        deadline = time.monotonic() + 10
        while " running" not in log_path.read_text():
            assert proc.poll() is None, f"mosquitto refused the example config:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"mosquitto did not start:\n{log_path.read_text()}"
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(10)
    log = log_path.read_text()
    assert "Error" not in log, log
    assert f"Opening ipv4 listen socket on port {ports[0]}" in log and f"port {ports[1]}" in log


# ----------------------------------------------------------------------------- the Broker helper


@pytest.mark.integration
async def test_broker_fixture_plain_and_tls_and_restart_keeps_sessions(broker):
    assert broker.plain_port and broker.tls_port and broker.plain_port != broker.tls_port
    assert 1883 not in (broker.plain_port, broker.tls_port)
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    sub = broker.client("watcher", clean_start=False, properties=props)
    async with sub:
        await sub.subscribe("x/#", qos=1)
    ports = (broker.plain_port, broker.tls_port)
    broker.restart()
    assert (broker.plain_port, broker.tls_port) == ports
    plain = aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5, timeout=5)
    async with plain:
        await plain.publish("x/1", b"while away", qos=1)
    sub = broker.client("watcher", clean_start=False, properties=props)
    async with sub:
        inbox = Inbox(sub)
        await inbox.wait_for(b"while away")  # the session survived the SIGTERM restart
        await inbox.close()


@pytest.mark.integration
def test_broker_picks_new_ports_when_one_is_taken(tmp_path, monkeypatch):
    import socket

    import tests.broker as tb

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real = tb.free_port
        monkeypatch.setattr(tb, "free_port", lambda: next(picks, None) or real())
        b = Broker(tmp_path, tls=False)
        try:
            b.start()
            assert b.plain_port != taken and b.running
            assert "Address already in use" in b.log_text()
        finally:
            b.close()


@pytest.mark.integration
def test_broker_start_failure_reports_the_log(tmp_path):
    b = Broker(tmp_path, plain=True, tls=False, extra_config="this_is_not_an_option 1")
    with pytest.raises(Exception, match="this_is_not_an_option"):
        b.start()
    assert not b.running
