"""The uplink: sealed batches from the outbox to the city cloud over MQTT v5 (aiomqtt).

One long-lived client (clean_start=False, session expiry), TLS with the cabinet's
client certificate, a retained last will "offline" and a retained birth "online"
on `<prefix>/cab/<id>/state`, QoS 1 publishes of sealed batches on `.../telemetry`
with a bounded in-flight window, and reconnects with jittered exponential backoff.

A PUBACK is not proof of delivery (aiomqtt ignores its reason code): a batch leaves
the outbox only when the ingest's signed acknowledgement arrives on `.../ack`.
Batches not acknowledged within `ack_timeout_s` are sent again, byte-identical, and
at most `max_unacked` batches are outstanding, so late re-sends stay inside the
ingest's replay window. Sealing follows agent.outbox.policy.SealPolicy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.aio import cancel_all, wait_event
from agent.config.model import Uplink as UplinkSettings
from agent.model import Reading
from agent.outbox.policy import SealPolicy
from agent.outbox.writer import Outbox, OutboxWriteError, Sealed
from agent.uplink.backoff import Backoff
from agent.uplink.catalogue_sender import CatalogueSender
from agent.wire import cose
from agent.wire.catalogue import Catalogue
from agent.wire.catalogue_seal import open_reply

log = logging.getLogger("agent.uplink")
GOODBYE_S = 2.0  # at most this long to publish the offline state on a graceful stop


def tls_context(s: UplinkSettings) -> ssl.SSLContext | None:
    if not s.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if s.cert and s.key:
        ctx.load_cert_chain(s.cert, s.key)
    return ctx


class Uplink:
    def __init__(
        self,
        settings: UplinkSettings,
        *,
        cabinet_id: str,
        outbox: Outbox,
        signing_key: Any,
        ingest_keys: Callable[[bytes], Any],
        clock: Any,
        birth: Callable[[], dict[str, Any]],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.s = settings
        self.cabinet = cabinet_id
        self.outbox = outbox
        self.key = signing_key
        self.kid = cose.key_id(signing_key.public_key())
        self.ingest_keys = ingest_keys
        self.clock = clock
        self.birth = birth
        self.tls = tls
        prefix = settings.topic_prefix
        self.topic = cose.telemetry_topic(prefix, cabinet_id)
        self.ack_topic = cose.ack_topic(prefix, cabinet_id)
        self.state_topic = f"{prefix}/cab/{cabinet_id}/state"
        self.catalogues = CatalogueSender(cabinet=cabinet_id, key=signing_key, kid=self.kid, topic=self.topic)
        self.policy = SealPolicy(settings.batch_max_readings, settings.batch_max_age_s)
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, jitter=0.3, seed=cabinet_id)
        self.state = "starting"
        self.reason: str | None = None
        # Unacknowledged batches of this session: seq -> monotonic time of the last send
        # (None: not sent yet). Loaded from the outbox when a session starts, kept in memory
        # after that, so waking up costs no database read.
        self._sent: dict[int, float | None] = {}
        self._wake = asyncio.Event()
        self._ack_errors: dict[str, int] = {}
        self.downlink: Any = None  # agent.remote.downlink.Downlink: messages on <prefix>/cab/<id>/cmd/# go there
        # Retained side messages (the OTA status): every one set is published in order while
        # connected; on each new connection the latest per topic again. on_sent runs after PUBACK.
        self._retained: dict[str, tuple[bytes, Callable[[], None] | None]] = {}
        self._retained_due: list[tuple[str, bytes, Callable[[], None] | None]] = []
        self.stats = {
            "connects": 0,
            "reconnects": 0,
            "batches_sent": 0,
            "batches_resent": 0,
            "readings_sent": 0,
            "bytes_sent": 0,
            "acks": 0,
            "batches_acked": 0,
            "acks_rejected": 0,
            "puback_errors": 0,
        }
        self.stats.update(self.catalogues.stats)

    # ---------------------------------------------------------------- public
    def wake(self) -> None:
        """New readings are waiting: check the sealing policy now."""
        self._wake.set()

    def set_catalogue(self, catalogue: Catalogue, directory: Path) -> None:
        """Describe this cabinet with `catalogue` (kept in `directory`): sent until acknowledged,
        then batches are sealed in format v2 naming it (docs/batch-format.md §8)."""
        self.catalogues.set(catalogue, directory)
        self._wake.set()

    def put_retained(self, topic: str, payload: bytes, on_sent: Callable[[], None] | None = None) -> None:
        """Publish `payload` retained (QoS 1) on `topic` now if connected, and after every reconnect."""
        self._retained[topic] = (payload, on_sent)
        self._retained_due.append((topic, payload, on_sent))
        del self._retained_due[:-64]  # bounded: a long offline spell keeps the latest
        self._wake.set()

    async def _send_retained(self, client: aiomqtt.Client) -> None:
        while self._retained_due:
            topic, payload, on_sent = self._retained_due[0]
            await client.publish(topic, payload, qos=1, retain=True)
            if self._retained_due and self._retained_due[0][1] is payload:
                self._retained_due.pop(0)
            if on_sent is not None:
                on_sent()

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "broker": f"{self.s.broker}:{self.s.port}",
            "topic": self.topic,
            "unacked_sent": len(self._sent),
            "ack_errors": dict(self._ack_errors),
            **self.stats,
        }

    def encode(self, readings: list[Reading], seq: int) -> bytes:
        body = self.catalogues.body(readings)
        return cose.seal_batch(
            body,
            key=self.key,
            kid=self.kid,
            cabinet=self.cabinet,
            boot=self.outbox.boot_epoch,
            seq=seq,
            topic=self.topic,
        )

    async def run(self) -> None:
        client = self._client()
        while True:
            try:
                async with client:
                    self.stats["connects"] += 1
                    if self.stats["connects"] > 1:
                        self.stats["reconnects"] += 1
                    try:
                        await self._connected(client)
                    except asyncio.CancelledError:  # a graceful stop: say so before disconnecting
                        # (also when it comes while the birth is on its way: a clean DISCONNECT
                        # fires no will, and the retained state would say "online" for ever)
                        await self._goodbye(client)
                        raise
            except aiomqtt.MqttError as e:
                reason = str(e) or type(e).__name__
                delay = self.backoff.failure(reason)
                self._set_state("disconnected", reason)
                await self.clock.sleep(delay)

    async def _connected(self, client: aiomqtt.Client) -> None:
        """One connection: subscriptions, the birth, then the session until it ends."""
        self._watch_pubacks(client)
        await client.subscribe(self.ack_topic, qos=1)
        if self.downlink is not None:  # no-local: our replies (cmd/<kind>/resp) do not come back
            await client.subscribe(self.downlink.filter, options=SubscribeOptions(qos=1, noLocal=True))
        await client.publish(self.state_topic, json.dumps({"online": True, **self.birth()}), qos=1, retain=True)
        self._set_state("connected", None)
        self._retained_due = [(t, p, cb) for t, (p, cb) in self._retained.items()]
        self.backoff.success()
        # a new connection: whatever is unacknowledged goes again, oldest first
        self._sent = dict.fromkeys(self.outbox.unacked_seqs())
        self.catalogues.on_connect()
        await self._session(client)

    def offline_state(self, reason: str | None = None) -> bytes:
        """The retained state when this cabinet is not connected: the broker's will on a lost
        connection, or published by the cabinet itself (with a reason) on a graceful stop."""
        doc: dict[str, Any] = {"online": False, "boot": self.outbox.boot_epoch}
        if reason is not None:
            doc["reason"] = reason
        return json.dumps(doc).encode()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """Publish the retained offline state (a graceful DISCONNECT does not fire the will);
        bounded, so a stop never hangs on a broker that stopped answering."""
        try:
            async with asyncio.timeout(GOODBYE_S):
                await client.publish(self.state_topic, self.offline_state("stopped"), qos=1, retain=True)
            self._set_state("stopped", None)
        except (aiomqtt.MqttError, TimeoutError) as e:
            log.warning("uplink: offline state not published on stop: %s", e)

    # ---------------------------------------------------------------- internals
    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.s.session_expiry_s
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = 0
        will = aiomqtt.Will(
            self.state_topic,
            self.offline_state(),
            qos=1,
            retain=True,
            properties=will_props,
        )
        client = aiomqtt.Client(
            self.s.broker,
            self.s.port,
            identifier=self.s.client_id or self.cabinet,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            will=will,
            tls_context=self.tls,
            keepalive=self.s.keepalive_s,
            timeout=30,
        )
        client.pending_calls_threshold = 10_000
        return client

    def _watch_pubacks(self, client: aiomqtt.Client) -> None:
        """Count PUBACKs with a failure reason (e.g. 0x87 not authorized): aiomqtt drops them."""
        paho = getattr(client, "_client", None)
        original = getattr(paho, "on_publish", None)
        if paho is None or original is None or getattr(original, "_cabinet_wrapped", False):
            return

        def on_publish(c, userdata, mid, reason_code, properties):
            if getattr(reason_code, "is_failure", False):
                self.stats["puback_errors"] += 1
                if self.stats["puback_errors"] == 1:
                    log.error("broker refused a publish: %s (check the broker's ACL for %s)", reason_code, self.topic)
            return original(c, userdata, mid, reason_code, properties)

        on_publish._cabinet_wrapped = True  # type: ignore[attr-defined]
        paho.on_publish = on_publish

    def _set_state(self, state: str, reason: str | None) -> None:
        if (state, reason) != (self.state, self.reason):
            if state == "connected":
                log.info("uplink connected to %s:%s", self.s.broker, self.s.port)
            elif state == "stopped":
                log.info("uplink stopped: offline state published")
            else:
                log.warning("uplink %s: %s; retrying with backoff", state, reason)
        self.state, self.reason = state, reason

    async def _session(self, client: aiomqtt.Client) -> None:
        window = asyncio.Semaphore(self.s.inflight)
        tasks: set[asyncio.Task] = set()
        receiver = asyncio.create_task(self._receive(client))
        try:
            while True:
                if receiver.done():
                    receiver.result()  # raises the MqttError that ended it
                for t in [t for t in tasks if t.done()]:
                    tasks.discard(t)
                    t.result()  # a failed publish ends the session
                await self._send_retained(client)
                await self._send_due(client, window, tasks)
                self._wake.clear()
                await wait_event(self._wake, 0.25)
        finally:
            await cancel_all([receiver, *tasks])

    async def _send_due(self, client: aiomqtt.Client, window: asyncio.Semaphore, tasks: set[asyncio.Task]) -> None:
        now, timeout = self.clock.monotonic(), self.s.ack_timeout_s
        for _, envelope in self.catalogues.to_send(now, timeout):  # before the batches that name it
            await client.publish(self.topic, envelope, qos=1)
            self.catalogues.stats["catalogue_bytes_sent"] += len(envelope)
        self.stats.update(self.catalogues.stats)
        due = sorted(seq for seq, last in self._sent.items() if last is None or now - last >= timeout)
        if due:  # oldest first: re-sends before new batches
            found = {b.seq: b for b in self.outbox.sealed(due)}
            for seq in due:
                sealed = found.get(seq)
                if sealed is None:  # acknowledged meanwhile, or evicted by the byte cap
                    self._sent.pop(seq, None)
                    continue
                if self._sent.get(seq) is not None:
                    self.stats["batches_resent"] += 1
                await self._publish(client, sealed, window, tasks)
        while len(self._sent) < self.s.max_unacked and self.outbox.seal_due(self.policy):
            try:
                sealed = await self.outbox.seal(self.encode, max_readings=self.s.batch_max_readings)
            except OutboxWriteError as e:  # disk full / I/O: nothing changed; seal_due() waits before the next try
                log.warning("uplink: sealing deferred: %s", e)
                break
            if sealed is None:
                break
            await self._publish(client, sealed, window, tasks)

    async def _publish(
        self, client: aiomqtt.Client, sealed: Sealed, window: asyncio.Semaphore, tasks: set[asyncio.Task]
    ) -> None:
        await window.acquire()  # at most `inflight` publishes wait for their PUBACK
        self._sent[sealed.seq] = self.clock.monotonic()

        async def send() -> None:
            try:
                await client.publish(self.topic, sealed.payload, qos=1)
                self.stats["batches_sent"] += 1
                self.stats["readings_sent"] += sealed.count
                self.stats["bytes_sent"] += len(sealed.payload)
            finally:
                window.release()

        tasks.add(asyncio.create_task(send()))

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            if str(msg.topic) != self.ack_topic:
                if self.downlink is not None and str(msg.topic).startswith(self.downlink.filter[:-1]):
                    await self.downlink.handle(str(msg.topic), msg.payload, msg.properties, client)
                continue
            try:
                try:
                    ack = cose.open_ack(bytes(msg.payload), topic=self.ack_topic, keys=self.ingest_keys)
                except cose.VerifyError as e:  # a catalogue ack or request holds bytes, a batch ack none
                    if e.reason != "bad_payload":
                        raise
                    self._catalogue_reply(bytes(msg.payload))
                    continue
                if ack.cabinet != self.cabinet:
                    raise cose.VerifyError("cabinet_mismatch")
            except cose.VerifyError as e:
                self.stats["acks_rejected"] += 1
                n = self._ack_errors.get(e.reason, 0) + 1
                self._ack_errors[e.reason] = n
                if n == 1:
                    log.error("rejected an acknowledgement on %s: %s", self.ack_topic, e.reason)
                continue
            self.stats["acks"] += 1
            try:
                deleted = await self.outbox.ack(ack.seqs)
            except OutboxWriteError as e:  # nothing deleted: re-sent after ack_timeout_s, the ingest acks duplicates
                now = self.clock.monotonic()
                self._sent.update(dict.fromkeys(ack.seqs, now))
                log.warning("uplink: acknowledgement not applied: %s", e)
                continue
            for seq in ack.seqs:
                self._sent.pop(seq, None)
            self.stats["batches_acked"] += len(ack.seqs)
            if deleted:
                self._wake.set()

    def _catalogue_reply(self, payload: bytes) -> None:
        """The ingest acknowledged a catalogue (batches it refused for want of one go again now) or
        asks for one (sent at the next wake-up). Raises cose.VerifyError for a bad reply."""
        reply = open_reply(payload, topic=self.ack_topic, keys=self.ingest_keys)
        if self.catalogues.reply(reply):
            self._sent = dict.fromkeys(self._sent)  # every unacknowledged batch is due again
        self.stats.update(self.catalogues.stats)
        self._wake.set()
