"""`cabinet ota rollout`: walk a staged rollout (tools/ota/rollout.py) over MQTT.

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
Exit 0 done, 3 halted, 1 error (broker, keys), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from tools.operator.commands import cabinet_keys, signing_and_broker_args, duration
from tools.ota.rollout import Plan, Rollout

KIND = "ota.offer"


def add_rollout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="the TUF target name of the release bundle")
    p.add_argument("--version", required=True, help="the release version (shown; cabinets report it)")
    p.add_argument("--deployment", help="deployment id, 1..64 characters (default: TARGET@VERSION)")
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


# ---------------------------------------------------------------------- inputs


def load_fleet(path: str) -> dict[str, dict[str, Any]]:
    from agent.wire.cose import check_cabinet

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, list):
        raise ValueError(f'{path}: a JSON list of {{"id", "tags"}}')
    out: dict[str, dict[str, Any]] = {}
    for item in doc:
        if not isinstance(item, dict):
            raise ValueError(f"{path}: {item!r} is not an object")
        out[check_cabinet(item.get("id"))] = {"tags": item.get("tags") or [], "version": item.get("version")}
    return out


def parse_birth(topic: str, payload: bytes) -> tuple[str, dict[str, Any]] | None:
    """(cabinet id, birth map) of a retained `<prefix>/cab/<id>/state` message, or None if junk."""
    from agent.wire.cose import topic_cabinet

    try:
        cab = topic_cabinet(topic, "state")
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    tags = doc.get("tags")
    tags = [t for t in tags if isinstance(t, str) and t] if isinstance(tags, list) else []
    version = doc.get("version") if isinstance(doc.get("version"), str) else None
    return cab, {"tags": tags, "version": version, "online": doc.get("online") is not False}


def key_lookup(a: argparse.Namespace) -> dict[bytes, tuple[str | None, Any]]:
    """kid -> (cabinet or None for any, public key): tools.operator.commands's keys plus --cabinet-keys."""
    from agent.runtime.keys import parse_public_key
    from agent.wire import cose

    found = cabinet_keys(a)
    if a.cabinet_keys:
        doc = json.loads(Path(a.cabinet_keys).read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"{a.cabinet_keys}: a JSON object {{cabinet id: public key hex}}")
        for cab, text in doc.items():
            if not isinstance(text, str) or len(text) != 64:
                raise ValueError(f"{a.cabinet_keys}: {cab}: 64 hex characters")
            k = parse_public_key(text)
            found[cose.key_id(k)] = (cose.check_cabinet(cab), k)
    return found


def save(path: str, ro: Rollout) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ro.to_dict(), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------- display


def _when(t: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.gmtime(t)) if t is not None else "-"


def progress_line(s: dict[str, Any]) -> str:
    w = s["waves"][s["wave"] - 1] if s["waves"] else {"pct": 0, "cabinets": 0, "success": 0, "failure": 0}
    return (
        f"{s['state']} wave {s['wave']}/{len(s['waves'])} ({w['pct']}%): {w['success']}+{w['failure']}"
        f"/{w['cabinets']} | fleet ok {s['success']} failed {s['failure']} (timeout {s['timeout']}) "
        f"in progress {s['in_progress']} pending {s['pending']}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    head = ("id", "wave", "bucket", "state", "version", "offered", "finished", "reason")
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
    return "\n".join("  ".join(c.ljust(wd) for c, wd in zip(line, widths)).rstrip() for line in [head, *body])


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


# ---------------------------------------------------------------------- the MQTT loop


async def run(a: argparse.Namespace, ro: Rollout | None, plan_kw: dict[str, Any], out: TextIO) -> int:
    import asyncio

    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from agent.wire import commands as C
    from agent.wire import cose
    from agent.wire.ota_status import open_status
    from tools.provision import pki

    key = pki.load_signing_key(a.key)
    keys = key_lookup(a)
    ttl = int(duration(a.ttl))
    host, _, port = a.broker.rpartition(":") if ":" in a.broker else (a.broker, "", "")
    tls = None
    if a.tls or a.ca:
        import ssl

        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
        if a.cert and a.tls_key:
            tls.load_cert_chain(a.cert, a.tls_key)
    births: dict[str, dict[str, Any]] = {}
    sent_cid: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    disp = Display(out)
    dirty = [False]

    def lookup_for(cab: str) -> Any:
        def lookup(kid: bytes) -> Any:
            hit = keys.get(kid)
            return hit[1] if hit and hit[0] in (None, cab) else None

        return lookup

    def on_message(msg: Any) -> None:
        topic = str(msg.topic)
        data = bytes(msg.payload) if isinstance(msg.payload, (bytes, bytearray)) else b""
        if topic.endswith("/state"):
            hit = parse_birth(topic, data)
            if hit:
                births[hit[0]] = hit[1]
            else:
                dropped["bad_birth"] += 1
            return
        head = f"{a.prefix}/cab/"
        cab, _, tail = topic[len(head) :].partition("/") if topic.startswith(head) else ("", "", "")
        is_status = tail == "ota/status"
        try:
            if not is_status and tail != f"cmd/{KIND}/resp":
                raise ValueError(f"unexpected topic {topic!r}")
            cose.check_cabinet(cab)
            if is_status:
                doc = open_status(data, topic=topic, keys=lookup_for(cab))
            else:
                rep = C.open_reply(data, topic=topic, keys=lookup_for(cab))
        except (cose.VerifyError, ValueError) as e:
            dropped[getattr(e, "reason", "bad_topic")] += 1
            return
        now = time.time()
        if not is_status:
            if ro is not None and not rep.ok and rep.cid == sent_cid.get(cab) and rep.reason != "busy":
                if ro.on_refused(cab, f"offer refused: {rep.reason}" + (f" ({rep.detail})" if rep.detail else ""), now):
                    dirty[0] = True
                    disp.change(cab, ro)
            return
        if ro is not None and ro.on_status(cab, doc, now):
            dirty[0] = True
            disp.change(cab, ro)

    async def offer(client: Any, cab: str) -> None:
        now = int(time.time())
        topic = C.command_topic(a.prefix, cab, KIND)
        args = {"deployment": ro.deployment, "target": ro.target}
        if a.repository:
            args["repository"] = a.repository
        cid = sent_cid[cab] = f"ota-{secrets.token_hex(8)}"
        env = C.sign_command(KIND, args, key=key, cid=cid, iat=now, exp=now + ttl, to=cab, topic=topic)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = C.reply_topic(a.prefix, cab, KIND)
        props.CorrelationData = cid.encode()
        await client.publish(topic, env, qos=1, properties=props)

    async with aiomqtt.Client(
        host or a.broker,
        int(port) if port else (8883 if tls else 1883),
        tls_context=tls,
        protocol=aiomqtt.ProtocolVersion.V5,
        identifier=f"rollout-{secrets.token_hex(6)}",
        timeout=a.timeout,
    ) as client:

        async def reader() -> None:
            async for m in client.messages:
                try:
                    on_message(m)
                except Exception as e:  # noqa: BLE001 - one odd message must not end the rollout
                    dropped[f"unhandled_{type(e).__name__}"] += 1

        task = asyncio.create_task(reader())
        try:
            if ro is None:
                if not plan_kw["cabinets"]:
                    await client.subscribe(f"{a.prefix}/cab/+/state", qos=1)
                    await asyncio.sleep(a.discover)
                    offline = sorted(c for c, b in births.items() if not b["online"])
                    plan_kw["cabinets"] = {
                        c: {"tags": b["tags"], "version": b["version"]}
                        for c, b in births.items()
                        if b["online"] or a.include_offline
                    }
                    if offline and not a.include_offline:
                        print(
                            f"left out {len(offline)} offline cabinet(s): {', '.join(offline[:10])}"
                            f"{' ...' if len(offline) > 10 else ''}",
                            file=out,
                            flush=True,
                        )
                plan = Plan(plan_kw.pop("cabinets"), **plan_kw.pop("plan"))
                if not plan.wave_of:
                    print("cabinet ota rollout: no cabinets to offer to", file=sys.stderr)
                    return 1
                ro = Rollout(plan, **plan_kw)
                print(
                    f"deployment {ro.deployment}: {len(plan.wave_of)} cabinet(s) in waves "
                    f"{[len(w) for w in plan.waves]} ({len(plan.excluded)} left out)",
                    file=out,
                    flush=True,
                )
            await client.subscribe(f"{a.prefix}/cab/+/ota/status", qos=1)
            await client.subscribe(f"{a.prefix}/cab/+/cmd/{KIND}/resp", qos=1)
            await asyncio.sleep(min(0.5, a.poll))  # retained statuses of this deployment first
            for cab in ro.unanswered():
                await offer(client, cab)
            while True:
                now = time.time()
                dirty[0] |= ro.tick(now)
                for cab in ro.offers(now):
                    await offer(client, cab)
                    dirty[0] = True
                if dirty[0] and a.state:
                    save(a.state, ro)
                dirty[0] = False
                disp.progress(ro, final=ro.state != "running")
                if ro.state != "running":
                    break
                await asyncio.sleep(a.poll)
        finally:
            task.cancel()
            if ro is not None and a.state:
                save(a.state, ro)
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
            ro = Rollout.from_dict(json.loads(Path(a.state).read_text(encoding="utf-8")))
            want = a.deployment or f"{a.target}@{a.version}"
            if (ro.deployment, ro.target, ro.version) != (want, a.target, a.version):
                raise ValueError(
                    f"{a.state} is deployment {ro.deployment} ({ro.target} {ro.version}), "
                    f"not {want} ({a.target} {a.version})"
                )
            print(f"resuming {ro.deployment} from {a.state}: {ro.state}", file=out, flush=True)
            if ro.state != "running":
                print(table(ro.rows()), file=out)
                return 0 if ro.state == "done" else 3
        else:
            deployment = a.deployment or f"{a.target}@{a.version}"
            if not 1 <= len(deployment) <= 64:
                raise ValueError(f"deployment {deployment!r}: 1..64 characters (give --deployment)")
            cabinets = load_fleet(a.fleet) if a.fleet else {}
            for cab in a.ids:
                from agent.wire.cose import check_cabinet

                cabinets.setdefault(check_cabinet(cab), {"tags": [], "version": None})
            waves = [int(x) for x in a.waves.split(",") if x.strip()]
            plan_kw = {
                "cabinets": cabinets,
                "plan": {
                    "waves": waves,
                    "canary_tag": a.canary_tag,
                    "include_tags": a.tag,
                    "exclude_tags": a.exclude_tag,
                },
                "deployment": deployment,
                "target": a.target,
                "version": a.version,
                "success_pct": a.success,
                "max_failure_pct": a.max_failures,
                "min_cabinets": a.min_cabinets,
                "cabinet_timeout_s": duration(a.cabinet_timeout),
                "soak_s": duration(a.soak),
                "batch": a.batch,
            }
            Plan({}, **plan_kw["plan"])  # the options are checked before connecting
            Rollout(Plan({}), **{k: v for k, v in plan_kw.items() if k not in ("cabinets", "plan")})
        duration(a.ttl)
        if a.poll <= 0 or a.discover < 0:
            raise ValueError("--poll must be > 0 and --discover >= 0")
    except (OSError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    try:
        import asyncio

        return asyncio.run(run(a, ro, plan_kw, out))
    except KeyboardInterrupt:
        print(f"{name}: interrupted" + (f"; resume with --state {a.state}" if a.state else ""), file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # aiomqtt.MqttError and friends: the broker is unreachable or went away
        print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
