"""The ingest service: a shared MQTT v5 subscription to every cabinet's telemetry,
group commits, then signed acknowledgements.

Several workers may run with the same `group`: the broker splits the messages
between them (`$share/<group>/<prefix>/cab/+/telemetry`). Messages are handled in
groups (up to `group_max` messages or `group_s` seconds), written in one
transaction, and only then acknowledged, one ack message per cabinet.
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

from agent.aio import cancel_all, wait_within
from agent.wire import cose
from tools.ingest.core import IngestCore, Outcome
from tools.ingest.store import Commit, Store

log = logging.getLogger("tools.ingest")


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
        self.ready = asyncio.Event()
        self._stored = asyncio.Event()
        self.outcomes: dict[str, int] = defaultdict(int)

    async def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client = aiomqtt.Client(
            self.broker,
            self.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            tls_context=self.tls,
            keepalive=30,
            timeout=30,
        )
        client.pending_calls_threshold = 10_000
        backoff = 0.5
        while True:
            try:
                async with client:
                    await client.subscribe(self.filter, qos=1)
                    log.info("ingest subscribed to %s on %s:%s", self.filter, self.broker, self.port)
                    self.ready.set()
                    backoff = 0.5
                    await self._loop(client)
            except aiomqtt.MqttError as e:
                self.ready.clear()
                log.warning("ingest disconnected: %s; retrying in %.1f s", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _loop(self, client: aiomqtt.Client) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.group_max * 4)

        async def receive() -> None:
            async for msg in client.messages:
                await queue.put((str(msg.topic), bytes(msg.payload)))

        receiver = asyncio.create_task(receive())
        materializer = asyncio.create_task(self._materialize())
        try:
            while True:
                first = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait([first, receiver], return_when=asyncio.FIRST_COMPLETED)
                if receiver in done:
                    first.cancel()
                    receiver.result()
                    return
                group = [first.result()]
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
                await self._process(client, group)
        finally:
            await cancel_all([receiver, materializer])

    async def _materialize(self) -> None:
        """Stored batches -> reading rows, after their acks, in bulk."""
        while True:
            n, _ = self.store.materialize(200)
            if n == 0:
                self._stored.clear()
                await self._stored.wait()
            else:
                await asyncio.sleep(0)

    def handle_group(self, group: list[tuple[str, bytes]]) -> tuple[Commit, list[Outcome]]:
        now = self.clock.now()
        commit = Commit()
        outcomes = [self.core.handle(topic, payload, now, commit) for topic, payload in group]
        return commit, outcomes

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
        if sends:  # a lost ack costs nothing: the cabinet sends again and gets a duplicate's ack
            done, _ = await wait_within(asyncio.gather(*sends), self.ack_timeout_s)
            if not done:
                raise aiomqtt.MqttError("acknowledgements not confirmed by the broker in time")
