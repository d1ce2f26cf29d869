"""The ingest service: a shared MQTT v5 subscription to every cabinet's telemetry,
group commits, then signed acknowledgements.

Several workers may run with the same `group`: the broker splits the messages
between them (`$share/<group>/<prefix>/cab/+/telemetry`). Messages are handled in
groups (up to `group_max` messages or `group_s` seconds), written in one
transaction, and only then acknowledged, one ack message per cabinet.

Sessions are not persistent (clean start, session expiry 0): the broker forgets a
worker, and its place in the group, the moment its connection ends. A persistent
session would outlive a killed worker and keep receiving its share of the group's
messages, re-sends included, with nobody to read them. Nothing is kept at the broker
for a worker because nothing needs to be: a cabinet keeps every batch until it is
acknowledged and sends it again after `ack_timeout_s`, and then a live worker gets it.
(docs/uplink.md, "Ingest workers: sessions".)

`stop()` drains: the worker leaves the group first (new messages go to the others),
then stores and acknowledges what it was already given, for at most `drain_s`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections import defaultdict
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.aio import cancel_all, wait_event, wait_within
from agent.wire import cose
from agent.wire.catalogue_seal import seal_reply
from tools.ingest.core import IngestCore, Outcome
from tools.ingest.store import Commit, Store

log = logging.getLogger("tools.ingest")
RECONNECT_MAX_S = 5.0  # back within seconds of the broker: a few workers make no thundering herd


class IngestService:
    def __init__(
        self,
        store: Store,
        *,
        broker: str,
        port: int,
        ack_key: Any,
        clock: Any,
        tls: ssl.SSLContext | None = None,
        prefix: str = "city/v1",
        group: str = "ingest",
        client_id: str | None = None,
        group_max: int = 256,
        group_s: float = 0.02,
        window_size: int = 4096,
        ack_timeout_s: float = 5.0,
        keepalive_s: int = 10,
        drain_s: float = 5.0,
        drain_quiet_s: float = 0.3,
    ) -> None:
        self.store = store
        self.core = IngestCore(store, window_size=window_size)
        self.broker, self.port, self.tls = broker, port, tls
        self.ack_key = ack_key
        self.ack_kid = cose.key_id(ack_key.public_key())
        self.clock = clock
        self.prefix = prefix
        self.filter = f"$share/{group}/{prefix}/cab/+/telemetry"
        self.client_id = client_id or f"ingest-{group}-{uuid.uuid4().hex[:8]}"
        self.group_max = group_max
        self.group_s = group_s
        self.ack_timeout_s = ack_timeout_s
        self.keepalive_s = keepalive_s  # a worker that vanishes without closing its socket leaves after 1.5 × this
        self.drain_s = drain_s
        self.drain_quiet_s = drain_quiet_s
        self.ready = asyncio.Event()
        self._stored = asyncio.Event()
        self._stopping = asyncio.Event()
        self.outcomes: dict[str, int] = defaultdict(int)

    def stop(self) -> None:
        """Leave the group, store and acknowledge what this worker was given, then end `run()`."""
        self._stopping.set()

    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # the session, and the group membership, end with the connection
        client = aiomqtt.Client(
            self.broker,
            self.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,  # every connection (a restart, a reconnect) starts with no session left over
            properties=props,
            tls_context=self.tls,
            keepalive=self.keepalive_s,
            timeout=30,
        )
        client.pending_calls_threshold = 10_000
        return client

    async def run(self) -> None:
        """Serve until `stop()` (then return after the drain) or cancellation; reconnect on errors."""
        client = self._client()
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                async with client:
                    await client.subscribe(self.filter, qos=1)
                    log.info("ingest subscribed to %s on %s:%s", self.filter, self.broker, self.port)
                    self.ready.set()
                    backoff = 0.5
                    await self._loop(client)
            except aiomqtt.MqttError as e:
                self.ready.clear()
                if self._stopping.is_set():
                    log.warning("ingest stopping: %s; unacknowledged batches will be re-sent by their cabinets", e)
                    return
                log.warning("ingest disconnected: %s; retrying in %.1f s", e, backoff)
                await wait_event(self._stopping, backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
        self.ready.clear()

    async def _loop(self, client: aiomqtt.Client) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.group_max * 4)

        async def receive() -> None:
            async for msg in client.messages:
                await queue.put((str(msg.topic), bytes(msg.payload)))

        receiver = asyncio.create_task(receive())
        materializer = asyncio.create_task(self._materialize())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                first = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait([first, receiver, stopping], return_when=asyncio.FIRST_COMPLETED)
                if first not in done:
                    first.cancel()
                    if receiver in done:
                        receiver.result()  # raises the MqttError that ended it
                        return
                    await self._drain(client, queue)
                    return
                await self._process(client, await self._fill(queue, [first.result()]))
        finally:
            await cancel_all([receiver, materializer, stopping])

    async def _fill(self, queue: asyncio.Queue, group: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """More messages for a group that has its first: up to `group_max`, waiting at most `group_s`."""
        deadline = asyncio.get_running_loop().time() + self.group_s
        while len(group) < self.group_max:
            try:
                group.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                got, item = await wait_within(queue.get(), left)
                if not got:
                    break
                group.append(item)
        return group

    async def _drain(self, client: aiomqtt.Client, queue: asyncio.Queue) -> None:
        """Stopping: leave the group (the broker gives new messages to the other workers), then
        store and acknowledge the messages already given to this worker until none came for
        `drain_quiet_s`, for at most `drain_s`. What is left is re-sent by its cabinet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_s
        waiting, n = queue.qsize(), 0
        done, _ = await wait_within(client.unsubscribe(self.filter), self.drain_s)
        if not done:
            log.warning("ingest stopping: the broker did not confirm leaving the group in %.1f s", self.drain_s)
        while (left := deadline - loop.time()) > 0:
            got, first = await wait_within(queue.get(), min(self.drain_quiet_s, left))
            if not got:
                break
            group = await self._fill(queue, [first])
            n += len(group)
            await self._process(client, group)
        log.info("ingest stopping: left the group, drained %d messages (%d were waiting)", n, waiting)

    async def _materialize(self) -> None:
        """Stored batches -> reading rows, after their acks, in bulk. Also wakes up now and
        then without a commit of its own: a stopped worker may have left batches to do."""
        failures = 0
        while True:
            try:
                self.store.maintain(self.clock.now())  # PostgreSQL: today's and tomorrow's partitions
                n, _ = self.store.materialize(200)
                failures = 0
            except Exception:  # e.g. the database busy or unreachable: try again later
                failures += 1
                if failures == 1:
                    log.exception("ingest could not materialize stored batches; retrying")
                n = 0
            if n == 0:
                self._stored.clear()
                await wait_event(self._stored, 5.0 if failures == 0 else 1.0)
            else:
                await asyncio.sleep(0)

    def handle_group(self, group: list[tuple[str, bytes]]) -> tuple[Commit, list[Outcome]]:
        now = self.clock.now()
        commit = Commit()
        outcomes = [self.core.handle(topic, payload, now, commit) for topic, payload in group]
        return commit, outcomes

    @staticmethod
    def catalogue_replies(outcomes: list[Outcome]) -> list[tuple[str, bytes | None, bytes | None]]:
        """(cabinet, acked id, needed ref), each once: catalogues stored (acknowledged after the
        commit, like batches) and catalogues asked for (v2 batches refused for want of them)."""
        out: dict[tuple[str, bytes | None, bytes | None], None] = {}
        for o in outcomes:
            if o.cabinet is None or o.catalogue is None:
                continue
            if o.kind == "catalogue":
                out[o.cabinet, o.catalogue, None] = None
            elif o.kind == "need_catalogue":
                out[o.cabinet, None, o.catalogue] = None
        return list(out)

    async def _process(self, client: aiomqtt.Client, group: list[tuple[str, bytes]]) -> None:
        commit, outcomes = self.handle_group(group)
        acks: dict[str, set[int]] = defaultdict(set)
        for o in outcomes:
            if o.kind in ("stored", "duplicate") and o.cabinet is not None and o.seq is not None:
                acks[o.cabinet].add(o.seq)
        if acks:
            commit.count("acks_sent", sum(len(s) for s in acks.values()))
        try:
            self.store.commit(commit)  # acknowledged only once this transaction is on disk
        except Exception:
            log.exception("ingest could not store %d batches; not acknowledging them", len(commit.batches))
            self.core.reload(self.clock.now())
            return
        if commit.batches:
            self._stored.set()
        for o in outcomes:
            key = o.kind if o.kind != "rejected" else f"rejected.{o.reason}"
            self.outcomes[key] += 1
            if o.kind == "rejected" and self.outcomes[key] == 1:
                log.warning("ingest rejected a batch (%s)%s", o.reason, f" from {o.cabinet}" if o.cabinet else "")
        sends = []
        for cabinet, seqs in acks.items():
            topic = cose.ack_topic(self.prefix, cabinet)
            payload = cose.seal_ack(sorted(seqs), key=self.ack_key, kid=self.ack_kid, cabinet=cabinet, topic=topic)
            sends.append(client.publish(topic, payload, qos=1))
        for cabinet, acked, need in self.catalogue_replies(outcomes):
            topic = cose.ack_topic(self.prefix, cabinet)
            payload = seal_reply(
                cabinet=cabinet, key=self.ack_key, kid=self.ack_kid, topic=topic, acked=acked, need=need
            )
            sends.append(client.publish(topic, payload, qos=1))
        if sends:  # a lost ack costs nothing: the cabinet sends again and gets a duplicate's ack
            done, _ = await wait_within(asyncio.gather(*sends), self.ack_timeout_s)
            if not done:
                raise aiomqtt.MqttError("acknowledgements not confirmed by the broker in time")
