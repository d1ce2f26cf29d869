"""The operator tools' MQTT connection (`cabinet cmd send`, `cabinet config push`,
`cabinet ota rollout`): an MQTT v5 client for --broker/--tls/--ca/--cert/--tls-key whose
publish and subscribe fail at once when the broker refuses them.

A broker that does not let a client publish on a topic (its ACL) answers a QoS 1 PUBLISH
with PUBACK reason 0x87 "Not authorized" (MQTT v5; Mosquitto drops the message), and a
refused subscription with a SUBACK reason >= 0x80. aiomqtt returns normally from
`publish()` whatever the PUBACK says, so an operator whose certificate has no rights used
to wait for replies that could never come (a rollout ended after its cabinet timeout with
"no terminal status"). `Connection` reads the PUBACK reason codes from paho (as the
cabinet's uplink does, agent/uplink/client.py) and raises `BrokerRefused` naming the topic
and the right that is missing; `describe_error` turns a failed connection into one line.
"""

from __future__ import annotations

import argparse
import ssl
from typing import TYPE_CHECKING, Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.uplink.address import parse_broker

if TYPE_CHECKING:
    import aiomqtt

ACL_HINT = "the operator's certificate needs a role in the broker's ACL (docs/ota.md, tools/mosquitto/acl.example)"


class BrokerRefused(Exception):
    """The broker refused a publish or a subscription (an MQTT v5 reason code >= 0x80)."""

    def __init__(self, action: str, topic: str, reason: Any) -> None:
        self.action, self.topic = action, topic
        self.code = int(getattr(reason, "value", reason))
        name = reason.getName() if hasattr(reason, "getName") else str(reason)
        right = "write" if action == "publish" else "read"
        super().__init__(
            f"the broker refused to {action} {topic!r}: {name} (reason code 0x{self.code:02X}); "
            f"{ACL_HINT}: {right} access to it"
        )


def tls_context(a: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of `--broker mqtts://...` or --tls/--ca (with --cert/--tls-key: a client
    certificate); None: plain MQTT. The address rule is the agent's (agent/uplink/address.py)."""
    scheme_tls = parse_broker(a.broker).tls
    if scheme_tls is False and (a.tls or a.ca):
        raise ValueError(f"--broker {a.broker!r} is plain MQTT: use mqtts:// with --tls/--ca")
    if not (a.tls or a.ca or scheme_tls):
        return None
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
    if a.cert or a.tls_key:
        if not (a.cert and a.tls_key):
            raise ValueError("--cert and --tls-key go together (the client certificate and its key)")
        tls.load_cert_chain(a.cert, a.tls_key)
    return tls


def broker_address(a: argparse.Namespace, tls: ssl.SSLContext | None) -> tuple[str, int]:
    """(host, port) of --broker mqtts://HOST[:PORT], mqtt://HOST[:PORT] or HOST[:PORT]; the port
    defaults to 8883 with TLS, else 1883."""
    addr = parse_broker(a.broker)
    return addr.host, addr.port_or_default(tls is not None)


def mqtt_client(a: argparse.Namespace, tls: ssl.SSLContext | None, identifier: str) -> Connection:
    """An MQTT v5 connection to --broker HOST[:PORT] (default port 8883 with TLS, else 1883)."""
    import aiomqtt  # deferred: heavy (aiomqtt, paho-mqtt client)

    host, port = broker_address(a, tls)
    return Connection(
        aiomqtt.Client(
            host,
            port,
            tls_context=tls,
            protocol=aiomqtt.ProtocolVersion.V5,
            identifier=identifier,
            timeout=a.timeout,
        )
    )


def reply_properties(response_topic: str, correlation: bytes) -> Properties:
    """PUBLISH properties asking for a reply on response_topic, tagged with correlation."""
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


class Connection:
    """An aiomqtt.Client (`async with`) whose publish (QoS 1) and subscribe raise
    BrokerRefused when the broker refuses them. Publishes are awaited one at a time by
    the operator tools, so a refusal seen while one is awaited is that one's."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.refused: list[Any] = []  # failed PUBACK reason codes, in arrival order
        paho = getattr(client, "_client", None)  # aiomqtt drops PUBACK reason codes: read them from paho
        original = getattr(paho, "on_publish", None)
        if paho is not None and original is not None:

            def on_publish(c: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> Any:
                if getattr(reason_code, "is_failure", False):
                    self.refused.append(reason_code)
                return original(c, userdata, mid, reason_code, properties)

            paho.on_publish = on_publish

    async def __aenter__(self) -> Connection:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.__aexit__(*exc)

    @property
    def messages(self) -> Any:
        return self.client.messages

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: Properties | None = None
    ) -> None:
        seen = len(self.refused)
        await self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if len(self.refused) > seen:
            raise BrokerRefused("publish", topic, self.refused[-1])

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        granted = await self.client.subscribe(topic, qos=qos)
        for code in granted if isinstance(granted, list) else []:
            if getattr(code, "is_failure", False):
                raise BrokerRefused("subscribe to", topic, code)


def describe_error(e: BaseException, a: argparse.Namespace) -> str:
    """One line for an MQTT failure (no broker, refused connection, lost connection)."""
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if "Not authorized" in text or "Bad user name or password" in text:
        return f"the broker {a.broker} refused the connection ({text}); {ACL_HINT}"
    return f"MQTT broker {a.broker}: {text}"
