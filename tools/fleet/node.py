"""One process of the fleet simulator: a share of the cabinets, each its own MQTT v5 client
(its own client id and session, as a real cabinet), on one asyncio loop.

Each cabinet: connect (staggered), subscribe to its ack topic, send its catalogue, then every
`batch_s` (from its own phase) seal and publish the readings since the last batch (QoS 1),
re-send what was not acknowledged after `ack_timeout_s`, and on purpose now and then:
reboot (a new boot, the seq block skipped, reconnect), send an acknowledged batch again (a
duplicate) or an old one (a replay). At the end (`seconds`), no new batch; it keeps the
connection until everything pending is acknowledged or `drain_s` has passed.

`run(spec)` returns this process's ledger: every batch made (cabinet, seq, readings), the
counters and the publish -> ack latencies. Time: the wall clock through a clock object
(agent/clock.py); the cabinets' logic takes `now` (tools/fleet/cabinet.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.clock import WallClock
from tools.fleet.cabinet import VirtualCabinet, counters_of
from tools.fleet.profiles import profile


@dataclass(frozen=True)
class Faults:
    reboot_p: float = 0.0  # per batch: the cabinet reboots after it
    duplicate_p: float = 0.0  # per batch: an acknowledged batch is sent again
    disconnect_p: float = 0.0  # per batch: the connection drops (the broker sees a dead client)


@dataclass(frozen=True)
class Spec:
    cabinets: list[tuple[str, bytes]]  # (cabinet id, raw Ed25519 private key)
    profile: str
    broker: str
    port: int
    ingest_key: bytes  # raw Ed25519 public key
    seconds: float
    batch_s: float
    ack_timeout_s: float
    drain_s: float
    faults: Faults
    seed: int = 0
    connect_spread_s: float = 5.0


async def _cabinet(cab: VirtualCabinet, spec: Spec, clock: WallClock, end: float, lat: list[float]) -> None:
    rng = random.Random(f"node:{spec.seed}:{cab.cabinet}")
    await asyncio.sleep(rng.uniform(0.0, spec.connect_spread_s))
    due = [clock.monotonic() + rng.uniform(0.0, spec.batch_s)]  # the next batch (inf: the last one was made)
    sent_at: dict[int, float] = {}
    while True:
        try:
            async with aiomqtt.Client(
                spec.broker,
                spec.port,
                identifier=cab.cabinet,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                keepalive=60,
                timeout=30,
            ) as client:
                client.pending_calls_threshold = 10_000
                await client.subscribe(cab.ack_topic, qos=1)
                for msg in cab.on_connect():
                    await client.publish(cab.topic, msg, qos=1)
                if await _session(cab, client, spec, clock, end, rng, sent_at, lat, due):
                    return
        except aiomqtt.MqttError:
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # reconnect, as the agent does (with backoff)
        if clock.monotonic() >= end + spec.drain_s:
            return


async def _session(
    cab: VirtualCabinet,
    client: aiomqtt.Client,
    spec: Spec,
    clock: WallClock,
    end: float,
    rng: random.Random,
    sent_at: dict[int, float],
    lat: list[float],
    due: list[float],
) -> bool:
    """One connection's life; True when the cabinet is done (ended and drained). `due[0]`: when
    the next batch is made; at the end one last batch takes what is left (as an agent that
    stops seals its outbox), then inf."""

    async def receive() -> None:
        async for message in client.messages:
            now = clock.monotonic()
            before = set(cab.pending)
            for payload in cab.on_ack_topic(bytes(message.payload), now):
                await client.publish(cab.topic, payload, qos=1)
            for seq in before - set(cab.pending):
                t = sent_at.pop(seq, None)
                if t is not None:
                    lat.append(now - t)

    reader = asyncio.create_task(receive())
    try:
        while True:
            now = clock.monotonic()
            if now >= end and due[0] != math.inf:
                due[0] = now  # the last batch: the readings up to the end
            if now >= due[0]:
                made = cab.batch(clock.now(), now)
                due[0] = due[0] + spec.batch_s if now < end else math.inf
                if made is not None:
                    payload, seq = made
                    sent_at[seq] = now
                    await client.publish(cab.topic, payload, qos=1)
                    if rng.random() < spec.faults.duplicate_p and (again := cab.injected()) is not None:
                        await client.publish(cab.topic, again, qos=1)
                    if now < end and rng.random() < spec.faults.reboot_p:
                        cab.reboot()
                        return False
                    if now < end and rng.random() < spec.faults.disconnect_p:
                        return False
            if now >= end and (not cab.pending or now >= end + spec.drain_s):
                return True
            for payload in cab.due_again(now, spec.ack_timeout_s):
                await client.publish(cab.topic, payload, qos=1)
            # asleep until the next thing to do: a batch, a re-send, the end (at most 5 s: the
            # drain's check); thousands of cabinets in one loop must not wake every second
            wake = min(due[0], cab.next_resend(spec.ack_timeout_s), end if now < end else now + 5.0)
            await asyncio.sleep(min(5.0, max(0.05, wake - clock.monotonic())))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await reader


def _quiet_transport_errors(errors: Counter[str]) -> None:
    """Count the errors paho/aiomqtt leave to the loop when a broker goes away under
    thousands of clients (a closed socket's writer, "Broken pipe") instead of printing a
    traceback each: the run's result says how many there were."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        e = context.get("exception")
        errors[type(e).__name__ if e is not None else str(context.get("message", "?"))[:60]] += 1

    asyncio.get_running_loop().set_exception_handler(handler)


async def _run(spec: Spec) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    _quiet_transport_errors(errors)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # paho's "failed to receive on socket" lines
    clock = WallClock()
    prof = profile(spec.profile)
    ingest = Ed25519PublicKey.from_public_bytes(spec.ingest_key)
    cabs = [
        VirtualCabinet(cid, Ed25519PrivateKey.from_private_bytes(raw), prof, ingest, clock.now(), seed=spec.seed)
        for cid, raw in spec.cabinets
    ]
    end = clock.monotonic() + spec.seconds
    lat: list[float] = []
    await asyncio.gather(*(_cabinet(c, spec, clock, end, lat) for c in cabs))
    return {
        "made": [(c.cabinet, seq, n) for c in cabs for seq, n in c.made],
        "pending": sum(len(c.pending) for c in cabs),
        "counters": counters_of(cabs),
        "latency_s": lat,
        "loop_errors": dict(errors),
    }


def run(spec: Spec) -> dict[str, Any]:
    """This process's share (the entry point of each fleet process)."""
    return asyncio.run(_run(spec))
