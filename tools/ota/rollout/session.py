"""`cabinet ota rollout`: walk a staged rollout (tools/ota/rollout/plan.py) over MQTT.

    cabinet ota rollout --target NAME --version V [--deployment ID] [--repository URL]
        --key operator.key --broker HOST[:PORT] [--tls --ca F --cert F --tls-key F]
        [--cabinet-key HEX|FILE | --ingest-db DSN | --cabinet-keys FILE] [--prefix city/v1]
        [--waves 1,10,50,100] [--success 95] [--max-failures 10] [--min-cabinets 5]
        [--cabinet-timeout 1h] [--soak 0] [--batch N] [--tag T]... [--exclude-tag T]...
        [--canary-tag canary] [--fleet FILE | --id ID ...] [--include-offline] [--discover 3]
        [--state FILE] [--poll 1]

The fleet comes from the retained birth messages on `<prefix>/cab/+/state` (online cabinets
only, unless --include-offline), or --fleet FILE (JSON list of {"id", "tags"}), or --id.
Each offer is a signed `ota.offer` command (QoS 1); statuses on `<prefix>/cab/+/ota/status`
are verified with the cabinet's key (agent.wire.ota_status.open_status) and fed to the Rollout;
an unverifiable or malformed message is counted and ignored. A refused offer (the cabinet's
signed reply says not ok) counts as a failure. --state FILE is written after every change and
resumes the rollout when it exists (unanswered offers are sent again: offers are idempotent).
Exit 0 done, 3 halted, 1 error (broker, keys), 2 bad arguments. `RolloutSession` is the
MQTT side of one run (discovery, offers, statuses and refusals in); the inputs (fleet file,
births, keys, options, saved state) are tools/ota/rollout/inputs.py.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from agent.uplink.keys import KeyFileError
from tools.operator.commands import KeyLookup, duration, key_lookup_for, signing_and_broker_args
from tools.operator.mqtt import BrokerRefused, Connection, describe_error, mqtt_client, reply_properties, tls_context
from tools.ota.rollout.inputs import key_lookup, parse_birth, plan_options, resume, save
from tools.ota.rollout.plan import Plan, Rollout

KIND = "ota.offer"


def add_rollout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="the TUF target name of the release bundle")
    p.add_argument("--version", required=True, help="the release version (shown; cabinets report it)")
    p.add_argument(
        "--deployment",
        help="deployment id: 1..64 letters, digits, '.', '_', '-' (default: the target's name with its version)",
    )
    p.add_argument("--repository", help="repository URL sent with the offer (default: the cabinet's [ota])")
    signing_and_broker_args(p)
    p.add_argument("--cabinet-keys", help='JSON file {"CAB-ID": "public key hex", ...} to verify statuses')
    p.add_argument("--waves", default="1,10,50,100", help="cumulative percents (default 1,10,50,100)")
    p.add_argument("--success", type=float, default=95.0, help="percent of a wave that must succeed (95)")
    p.add_argument("--max-failures", type=float, default=10.0, help="halt above this failure percent (10)")
    p.add_argument("--min-cabinets", type=int, default=5, help="finished cabinets before the abort rule (5)")
    p.add_argument("--cabinet-timeout", default="1h", help="offer to terminal state, e.g. 45m (1h)")
    p.add_argument("--soak", default="0", help="wait after a wave's last result, e.g. 30m (0)")
    p.add_argument("--batch", type=int, help="at most N offers in flight in a wave (default: the whole wave)")
    p.add_argument("--tag", action="append", default=[], help="only cabinets with one of these tags")
    p.add_argument("--exclude-tag", action="append", default=[], help="leave out cabinets with this tag")
    p.add_argument("--canary-tag", default="canary", help="cabinets with this tag go in wave 1")
    p.add_argument("--fleet", help='JSON file: [{"id": ..., "tags": [...]}, ...] instead of discovery')
    p.add_argument("--id", action="append", default=[], dest="ids", help="cabinet id instead of discovery")
    p.add_argument("--include-offline", action="store_true", help="offer to cabinets whose birth says offline")
    p.add_argument("--discover", type=float, default=3.0, help="seconds to collect birth messages (3)")
    p.add_argument("--state", help="save the rollout here after every change; resume from it")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between decisions (1)")


# ---------------------------------------------------------------------- display


def _when(t: float | None) -> str:
    """This machine's local time (the operator's), as the header says."""
    return time.strftime("%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"


def progress_line(s: dict[str, Any]) -> str:
    w = s["waves"][s["wave"] - 1] if s["waves"] else {"pct": 0, "cabinets": 0, "success": 0, "failure": 0}
    return (
        f"{s['state']} wave {s['wave']}/{len(s['waves'])} ({w['pct']}%): {w['success']}+{w['failure']}"
        f"/{w['cabinets']} | fleet ok {s['success']} failed {s['failure']} (timeout {s['timeout']}) "
        f"in progress {s['in_progress']} pending {s['pending']}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    zone = time.strftime("%Z") or "local"
    head = ("id", "wave", "bucket", "state", "version", f"offered ({zone})", f"finished ({zone})", "reason")
    body = [
        (
            r["id"],
            str(r["wave"]),
            str(r["bucket"]),
            r["state"],
            r["version"] or "-",
            _when(r["offered_at"]),
            _when(r["finished_at"]),
            r["reason"] or "",
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(wd) for c, wd in zip(line, widths, strict=True)).rstrip() for line in [head, *body]
    )


class Display:
    """A redrawn progress line on a TTY, else one line per status change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def change(self, cab: str, ro: Rollout) -> None:
        if not self.tty:
            r = ro.cab[cab]
            pct = f" {r['percent']}%" if r["percent"] is not None else ""
            why = f" ({r['reason']})" if r["reason"] else ""
            print(f"{cab} wave {ro.plan.wave_of[cab] + 1}: {r['state']}{pct}{why}", file=self.out, flush=True)

    def progress(self, ro: Rollout, final: bool = False) -> None:
        line = progress_line(ro.summary())
        if self.tty:
            self.out.write("\r\x1b[K" + line + ("\n" if final else ""))
            self.out.flush()
        elif line != self.last and (final or line.split(":")[0] != self.last.split(":")[0]):
            print(line, file=self.out, flush=True)  # once per wave change, and at the end
        self.last = line


# ---------------------------------------------------------------------- the MQTT side


class RolloutSession:
    """One run over MQTT: collects births, offers (signed `ota.offer` commands) and feeds the
    verified statuses and refusals to the Rollout; counts what it cannot use in `dropped`."""

    def __init__(self, a: argparse.Namespace, key: Any, keys: KeyLookup, out: TextIO) -> None:
        self.a, self.key, self.keys, self.out = a, key, keys, out
        self.ttl = int(duration(a.ttl))
        self.ro: Rollout | None = None
        self.births: dict[str, dict[str, Any]] = {}
        self.sent_cid: dict[str, str] = {}
        self.dropped: Counter[str] = Counter()
        self.disp = Display(out)
        self.dirty = False

    # ---- messages in

    async def read(self, client: Connection) -> None:
        async for m in client.messages:
            try:
                self.on_message(m)
            except Exception as e:  # noqa: BLE001 - one odd message must not end the rollout
                self.dropped[f"unhandled_{type(e).__name__}"] += 1

    def on_message(self, msg: Any) -> None:
        topic = str(msg.topic)
        data = bytes(msg.payload) if isinstance(msg.payload, (bytes, bytearray)) else b""
        if topic.endswith("/state"):
            hit = parse_birth(topic, data)
            if hit:
                self.births[hit[0]] = hit[1]
            else:
                self.dropped["bad_birth"] += 1
            return
        self.on_cabinet_message(topic, data)

    def on_cabinet_message(self, topic: str, data: bytes) -> None:
        """A status message or a reply to an offer: verified with the cabinet's key, then fed."""
        # deferred: heavy (cryptography)
        from agent.wire import commands as C
        from agent.wire import cose
        from agent.wire.ota_status import open_status

        head = f"{self.a.prefix}/cab/"
        cab, _, tail = topic[len(head) :].partition("/") if topic.startswith(head) else ("", "", "")
        is_status = tail == "ota/status"
        try:
            if not is_status and tail != f"cmd/{KIND}/resp":
                raise ValueError(f"unexpected topic {topic!r}")
            cose.check_cabinet(cab)
            if is_status:
                doc = open_status(data, topic=topic, keys=key_lookup_for(self.keys, cab))
            else:
                rep = C.open_reply(data, topic=topic, keys=key_lookup_for(self.keys, cab))
        except (cose.VerifyError, ValueError) as e:
            self.dropped[getattr(e, "reason", "bad_topic")] += 1
            return
        now = time.time()
        ro = self.ro
        if not is_status:
            if ro is not None and not rep.ok and rep.cid == self.sent_cid.get(cab) and rep.reason != "busy":
                why = f"offer refused: {rep.reason}" + (f" ({rep.detail})" if rep.detail else "")
                if ro.on_refused(cab, why, now):
                    self.dirty = True
                    self.disp.change(cab, ro)
            return
        if ro is not None and ro.on_status(cab, doc, now):
            self.dirty = True
            self.disp.change(cab, ro)

    # ---- the walk

    async def discover(self, client: Connection) -> dict[str, dict[str, Any]]:
        """The cabinets whose retained births arrived within --discover seconds (online ones
        unless --include-offline)."""
        a = self.a
        await client.subscribe(f"{a.prefix}/cab/+/state", qos=1)
        await asyncio.sleep(a.discover)
        offline = sorted(c for c, b in self.births.items() if not b["online"])
        cabinets = {
            c: {"tags": b["tags"], "version": b["version"]}
            for c, b in self.births.items()
            if b["online"] or a.include_offline
        }
        if offline and not a.include_offline:
            print(
                f"left out {len(offline)} offline cabinet(s): {', '.join(offline[:10])}"
                f"{' ...' if len(offline) > 10 else ''}",
                file=self.out,
                flush=True,
            )
        return cabinets

    async def start(self, client: Connection, plan_kw: dict[str, Any]) -> Rollout | None:
        """The new Rollout (the fleet discovered when none was given); None: nobody to offer to."""
        if not plan_kw["cabinets"]:
            plan_kw["cabinets"] = await self.discover(client)
        plan = Plan(plan_kw.pop("cabinets"), **plan_kw.pop("plan"))
        if not plan.wave_of:
            print("cabinet ota rollout: no cabinets to offer to", file=sys.stderr)
            return None
        ro = self.ro = Rollout(plan, **plan_kw)
        print(
            f"deployment {ro.deployment}: {len(plan.wave_of)} cabinet(s) in waves "
            f"{[len(w) for w in plan.waves]} ({len(plan.excluded)} left out)",
            file=self.out,
            flush=True,
        )
        return ro

    async def offer(self, client: Connection, ro: Rollout, cab: str) -> None:
        from agent.wire import commands as C  # deferred: heavy (cryptography)

        a, now = self.a, int(time.time())
        topic = C.command_topic(a.prefix, cab, KIND)
        args = {"deployment": ro.deployment, "target": ro.target}
        if a.repository:
            args["repository"] = a.repository
        cid = self.sent_cid[cab] = f"ota-{secrets.token_hex(8)}"
        env = C.sign_command(KIND, args, key=self.key, cid=cid, iat=now, exp=now + self.ttl, to=cab, topic=topic)
        await client.publish(
            topic, env, qos=1, properties=reply_properties(C.reply_topic(a.prefix, cab, KIND), cid.encode())
        )

    async def walk(self, client: Connection, ro: Rollout) -> None:
        """Offer wave after wave and decide every --poll seconds until the rollout is done or halted."""
        a = self.a
        await client.subscribe(f"{a.prefix}/cab/+/ota/status", qos=1)
        await client.subscribe(f"{a.prefix}/cab/+/cmd/{KIND}/resp", qos=1)
        await asyncio.sleep(min(0.5, a.poll))  # retained statuses of this deployment first
        for cab in ro.unanswered():
            await self.offer(client, ro, cab)
        while True:
            now = time.time()
            self.dirty |= ro.tick(now)
            for cab in ro.offers(now):
                await self.offer(client, ro, cab)
                self.dirty = True
            if self.dirty and a.state:
                save(a.state, ro)
            self.dirty = False
            self.disp.progress(ro, final=ro.state != "running")
            if ro.state != "running":
                break
            await asyncio.sleep(a.poll)


async def run(a: argparse.Namespace, ro: Rollout | None, plan_kw: dict[str, Any], out: TextIO) -> int:
    from tools.provision import pki  # deferred: heavy (cryptography)

    key = pki.load_signing_key(a.key)
    session = RolloutSession(a, key, key_lookup(a), out)
    session.ro = ro
    tls = tls_context(a)
    async with mqtt_client(a, tls, f"rollout-{secrets.token_hex(6)}") as client:
        task = asyncio.create_task(session.read(client))
        try:
            if ro is None:
                ro = await session.start(client, plan_kw)
                if ro is None:
                    return 1
            await session.walk(client, ro)
        finally:
            task.cancel()
            if session.ro is not None and a.state:
                save(a.state, session.ro)
    return final_report(ro, session.dropped, out)


def final_report(ro: Rollout, dropped: Counter[str], out: TextIO) -> int:
    """The per-cabinet table, why it stopped, the ignored messages; the exit code."""
    print(table(ro.rows()), file=out)
    if ro.reason:
        print(f"{ro.state}: {ro.reason}", file=out)
    ignored = {**ro.summary()["ignored"], **dropped}
    if ignored:
        print("ignored messages: " + ", ".join(f"{k} {v}" for k, v in sorted(ignored.items())), file=out)
    out.flush()
    return 0 if ro.state == "done" else 3


def rollout_main(a: argparse.Namespace, out: TextIO | None = None) -> int:
    name = "cabinet ota rollout"
    out = out or sys.stdout
    if not (a.cabinet_key or a.ingest_db or a.cabinet_keys):
        print(f"{name}: --cabinet-key, --cabinet-keys or --ingest-db is needed to verify statuses", file=sys.stderr)
        return 2
    ro: Rollout | None = None
    plan_kw: dict[str, Any] = {}
    try:
        if a.state and Path(a.state).exists():
            ro = resume(a)
            print(f"resuming {ro.deployment} from {a.state}: {ro.state}", file=out, flush=True)
            if ro.state != "running":
                print(table(ro.rows()), file=out)
                return 0 if ro.state == "done" else 3
        else:
            plan_kw = plan_options(a)
        duration(a.ttl)
        if a.poll <= 0 or a.discover < 0:
            raise ValueError("--poll must be > 0 and --discover >= 0")
    except (OSError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(a, ro, plan_kw, out))
    except KeyboardInterrupt:
        print(f"{name}: interrupted" + (f"; resume with --state {a.state}" if a.state else ""), file=sys.stderr)
        return 1
    except (ValueError, OSError, KeyFileError, BrokerRefused) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - aiomqtt.MqttError and friends (aiomqtt loads lazily): no broker
        print(f"{name}: {describe_error(e, a)}", file=sys.stderr)
        return 1
