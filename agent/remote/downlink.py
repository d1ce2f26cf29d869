"""The downlink: signed commands from MQTT to handlers, signed replies back.

The uplink's session subscribes to `<prefix>/cab/<id>/cmd/#` (QoS 1, no-local) and hands
every message on a command topic to `Downlink.handle`, which verifies it inline (cheap:
a size check, a CBOR decode, one Ed25519 verify) and runs the handler as a task, at most
`max_running` at once; more is answered `busy`. The receive loop never waits for a handler.

Replies go to `<prefix>/cab/<id>/cmd/<kind>/resp` (the fleet ACL's reply topic), and only to
requests whose MQTT v5 response topic is exactly that topic: a request without a response
topic, or with any other, is dropped without a reply and counted as `bad_reply_topic`
(never publish to a topic a message chose; the operator tools always set it). The
request's correlation data (<= 64 bytes) is echoed. Rejections are answered too (signed,
with the reason), but at most `reject_replies_per_s` per second (burst `reject_burst`): a
flood of junk costs the broker no more than that. Rejections are logged once per reason,
then summarised at most once a minute.

Other issues add commands with `register(kind, handler, args_schema)`:

    async def offer(cmd: Command) -> dict: ...           # returns the reply's result
    app.downlink.register("ota.offer", offer, {"url": Arg("str", required=True)})

A handler raises CommandFailed (or agent.runtime.status_api.ActionError) to reply ok=false.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from agent import statefile
from agent.aio import cancel_all
from agent.remote.host import ActionError
from agent.wire import commands as C
from agent.wire.commands import Arg, Command, CommandError


class DownlinkStats(TypedDict):
    received: int
    accepted: int
    rejected: int
    replies: int
    replies_dropped: int
    failed: int
    by_reason: dict[str, int]  # rejections by reason


log = logging.getLogger("agent.downlink")

Handler = Callable[[Command], Awaitable[Any]]
MAX_CORRELATION = 64
LOG_SUMMARY_S = 60.0


class CommandFailed(Exception):
    """Raised by a handler: the command was valid but could not be carried out."""


@dataclass
class Kind:
    handler: Handler
    schema: dict[str, Arg] | None
    clock_free: bool = False  # read-only: accepted while the clock is unknown (docs/commands.md)


class Downlink:
    def __init__(
        self,
        *,
        cabinet: str,
        prefix: str,
        tags: tuple[str, ...],
        trust: C.Trust,
        signing_key: Any,
        clock: Any,
        clock_trusted: Callable[[], bool],
        data_dir: Path,
        max_running: int = 8,
        reject_replies_per_s: float = 5.0,
        reject_burst: int = 20,
    ) -> None:
        self.cabinet, self.prefix, self.tags = cabinet, prefix, tuple(tags)
        self.trust = trust
        self.key = signing_key
        self.clock = clock
        self.clock_trusted = clock_trusted
        self.path = Path(data_dir) / "state" / "commands.json"
        self.filter = C.topic_filter(prefix, cabinet)
        self.kinds: dict[str, Kind] = {}
        self.max_running = max_running
        self._running: set[asyncio.Task] = set()
        self._rate, self._burst = reject_replies_per_s, reject_burst
        self._tokens, self._refill = float(reject_burst), time.monotonic()
        self._log_counts: dict[str, int] = {}
        self._log_next = 0.0
        self.stats: DownlinkStats = {
            "received": 0,
            "accepted": 0,
            "rejected": 0,
            "replies": 0,
            "replies_dropped": 0,
            "failed": 0,
            "by_reason": {},
        }
        self.replay = self._load()

    # ---------------------------------------------------------------- registry
    def register(
        self, kind: str, handler: Handler, args_schema: dict[str, Arg] | None, *, clock_free: bool = False
    ) -> None:
        C.check_kind(kind)
        if kind in self.kinds:
            raise ValueError(f"command kind {kind} is registered already")
        self.kinds[kind] = Kind(handler, dict(args_schema) if args_schema is not None else None, clock_free)

    # ---------------------------------------------------------------- persistence
    def _load(self) -> C.CommandReplay:
        data = statefile.load(self.path)
        now = self._now()
        if data is not None:
            try:
                return C.CommandReplay.from_dict(data, now, skew_s=self.trust.max_skew_s)
            except ValueError as e:
                log.error("command replay memory %s unusable (%s); starting empty", self.path, e)
        return C.CommandReplay(skew_s=self.trust.max_skew_s)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            statefile.save(self.path, self.replay.to_dict())
        except OSError as e:
            log.error("could not save the command replay memory: %s", e)

    def _now(self) -> float | None:
        return self.clock.now() if self.clock_trusted() else None

    # ---------------------------------------------------------------- receiving
    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats,
            "by_reason": dict(self.stats["by_reason"]),
            "running": len(self._running),
            "remembered": len(self.replay),
            "kinds": sorted(self.kinds),
        }

    async def handle(self, topic: str, payload: bytes, properties: Any, client: Any) -> None:
        """One message on a command topic (called by the uplink's receive loop; never blocks on a handler)."""
        self.stats["received"] += 1
        try:
            kind = C.topic_kind(topic, self.prefix, self.cabinet)
            if kind is None:
                return  # our own replies (cmd/<kind>/resp, no-local should hide them) or junk levels
            want = C.reply_topic(self.prefix, self.cabinet, kind)
            given = getattr(properties, "ResponseTopic", None) if properties is not None else None
            if given != want:  # none, or another topic: never publish where a message says
                why = f"response topic {given!r}" if given is not None else "no response topic"
                self._rejected("bad_reply_topic", f"{why}; only requests naming {want!r} are answered")
                return
            corr = getattr(properties, "CorrelationData", None) if properties is not None else None
            corr = bytes(corr) if isinstance(corr, (bytes, bytearray)) and len(corr) <= MAX_CORRELATION else None
            now = self._now()
            try:
                cmd = C.verify_command(
                    payload,
                    topic=topic,
                    cabinet=self.cabinet,
                    tags=self.tags,
                    trust=self.trust,
                    now=now,
                    replay=self.replay,
                    schema=self._schema,
                    clock_free=lambda k: k in self.kinds and self.kinds[k].clock_free,
                )
            except CommandError as e:
                self._rejected(e.reason, e.detail)
                if self._take_token():
                    self._spawn(self._reply(client, want, corr, e.cid, False, e.reason, e.detail))
                else:
                    self.stats["replies_dropped"] += 1
                return
            refusal = self._refusal(cmd)
            if refusal is not None:  # it does not run: its id is not spent, a re-send may run it
                self.replay.release(cmd.cid)
                self._rejected(*refusal)
                self._spawn(self._reply(client, want, corr, cmd.cid, False, *refusal))
                return
            self.save()  # the id is spent before the handler runs: at most once, even across a crash
            self.stats["accepted"] += 1
            log.info("command %s %s from operator %s", cmd.cid, cmd.kind, cmd.operator)
            self._spawn(self._run(cmd, client, want, corr))
        finally:
            await asyncio.sleep(0)  # a burst of queued messages must not starve polling and control

    def _refusal(self, cmd: Command) -> tuple[str, str] | None:
        """Why a verified command cannot run now: no handler for its kind, or too many running."""
        if cmd.kind not in self.kinds:
            return "unknown_kind", cmd.kind
        if len(self._running) >= self.max_running:
            return "busy", f"{len(self._running)} commands running; try again (the cid is not spent)"
        return None

    def _schema(self, kind: str) -> dict[str, Arg] | None:
        k = self.kinds.get(kind)
        return k.schema if k is not None else {}

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, cmd: Command, client: Any, topic: str, corr: bytes | None) -> None:

        try:
            result = await self.kinds[cmd.kind].handler(cmd)
        except (CommandFailed, ActionError) as e:
            self.stats["failed"] += 1
            await self._reply(client, topic, corr, cmd.cid, False, "failed", str(e))
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.stats["failed"] += 1
            log.exception("command %s (%s) failed", cmd.cid, cmd.kind)
            await self._reply(client, topic, corr, cmd.cid, False, "failed", f"{type(e).__name__}: {e}")
            return
        await self._reply(client, topic, corr, cmd.cid, True, None, None, result)

    async def _reply(
        self,
        client: Any,
        topic: str,
        corr: bytes | None,
        cid: str | None,
        ok: bool,
        reason: str | None,
        detail: str | None,
        result: Any = None,
    ) -> None:
        from paho.mqtt.packettypes import PacketTypes  # deferred: heavy, only once a command is answered
        from paho.mqtt.properties import Properties

        payload = C.seal_reply(
            cabinet=self.cabinet,
            cid=cid,
            ok=ok,
            topic=topic,
            key=self.key,
            reason=reason,
            detail=detail,
            result=result,
            t=self.clock.now(),
        )
        props = Properties(PacketTypes.PUBLISH)
        if corr is not None:
            props.CorrelationData = corr
        try:
            await client.publish(topic, payload, qos=1, properties=props)
            self.stats["replies"] += 1
        except Exception as e:  # noqa: BLE001 - the session may be gone; the operator times out
            self.stats["replies_dropped"] += 1
            log.warning("reply to %s not sent: %s", cid, e)

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._refill) * self._rate)
        self._refill = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _rejected(self, reason: str, detail: str) -> None:
        self.stats["rejected"] += 1
        by = self.stats["by_reason"]
        by[reason] = by.get(reason, 0) + 1
        first = by[reason] == 1
        self._log_counts[reason] = self._log_counts.get(reason, 0) + 1
        now = time.monotonic()
        if first:
            log.warning("rejected a command: %s (%s); further rejections are summarised", reason, detail)
            self._log_counts[reason] -= 1
            self._log_next = max(self._log_next, now + LOG_SUMMARY_S)
        elif now >= self._log_next and any(self._log_counts.values()):
            log.warning(
                "rejected commands in the last %.0f s: %s",
                LOG_SUMMARY_S,
                ", ".join(f"{r} {n}" for r, n in sorted(self._log_counts.items()) if n),
            )
            self._log_counts.clear()
            self._log_next = now + LOG_SUMMARY_S

    async def close(self) -> None:
        await cancel_all(list(self._running))
