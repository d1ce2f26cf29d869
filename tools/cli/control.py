"""Part of the `cabinet` command table: local control through the running agent's socket.

    cabinet light override --on|--off [--level N] [--segment S]... [--minutes M | --until ISO | --forever] [--json]
    cabinet light cancel [--segment S]... [--json]
    cabinet alarms list [--json]
    cabinet alarms ack ID [--json]

The agent validates and persists the request and answers with what it did; the command
prints a short summary in the site's local time (`--json`: the agent's whole answer). A
refusal (e.g. an unknown segment) prints the agent's reason and exits 1; no agent
answering exits 1 too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.runtime.status_api import SOCKET_NAME, AgentRefused, request
from tools.status import ask, describe_override, local, site_zone


def _post(data_dir: Path, target: str, body: dict[str, Any]) -> dict[str, Any]:
    sock = Path(data_dir) / SOCKET_NAME
    try:
        return request(sock, target, post=body, timeout=15.0)
    except AgentRefused as e:
        raise SystemExit(f"cabinet: {e}") from None
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise SystemExit(f"cabinet: no agent answering at {sock} ({why}); start one with `cabinet run`") from None


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _zone(data_dir: Path, lighting: dict[str, Any] | None = None) -> dt.tzinfo:
    if lighting and (lighting.get("site") or {}).get("timezone"):
        return site_zone({"controls": {"lighting": lighting}})
    return site_zone(ask(data_dir))


def override(args: argparse.Namespace, data_dir: Path) -> int:
    body = {
        "on": args.on,
        "level": args.level,
        "segments": args.segment,
        "minutes": args.minutes,
        "until": args.until,
        "forever": args.forever,
        "note": args.note,
        "source": "local",
    }
    doc = _post(data_dir, "/lighting/override", body)
    if args.json:
        _print_json(doc)
        return 0
    lighting = doc.get("lighting") or {}
    zone = _zone(data_dir, lighting)
    segments = args.segment or list(lighting.get("segments") or {})
    overrides = lighting.get("overrides") or {}
    for seg in segments:
        ov = overrides.get(seg) or doc.get("override") or {}
        st = (lighting.get("segments") or {}).get(seg) or {}
        level = f" {st['level']:.0f} %" if st.get("level") is not None else ""
        now = f"; now {'ON' if st.get('on') else 'off'}{level}" if st else ""
        print(describe_override(seg, ov, zone) + now)
    return 0


def cancel(args: argparse.Namespace, data_dir: Path) -> int:
    doc = _post(data_dir, "/lighting/cancel", {"segments": args.segment, "source": "local"})
    if args.json:
        _print_json(doc)
        return 0
    gone = doc.get("cancelled") or []
    if gone:
        print(f"override cancelled: {', '.join(gone)} (back to the program)")
    else:
        print("no override was set" + (f" on {', '.join(args.segment)}" if args.segment else ""))
    return 0


def _listed(doc: dict[str, Any], alarm_id: str) -> bool:
    return any(a.get("id") == alarm_id for a in ((doc.get("controls") or {}).get("alarms") or []))


def alarms_list(args: argparse.Namespace, data_dir: Path) -> int:
    doc = ask(data_dir)
    if args.wait_for:  # a commissioning test: open the door, the alarm must show within the timeout
        deadline = time.monotonic() + args.timeout
        while not _listed(doc, args.wait_for):
            if time.monotonic() >= deadline:
                print(f"cabinet alarms list: {args.wait_for} not listed within {args.timeout:g} s", file=sys.stderr)
                return 1
            time.sleep(0.25)
            doc = ask(data_dir)
    controls = doc.get("controls")
    alarms = (controls or {}).get("alarms") or []
    if args.json:
        _print_json(alarms)
        return 0
    if controls is None:
        print("no alarms: this cabinet has no [climate] or [lighting] control")
        return 0
    if not alarms:
        print("no active or latched alarms")
        return 0
    zone = site_zone(doc)
    w = max([len(a["id"]) for a in alarms] + [2])
    print(f"{'ID':<{w}}  {'SEVERITY':<8}  {'STATE':<12}  {'SINCE':<23}  {'ACKED':<5}  MESSAGE")
    for a in alarms:
        acked = "yes" if a.get("acknowledged") else "no"
        since = local(a.get("since"), zone, "%Y-%m-%d %H:%M:%S %Z")
        message = a.get("message") or ""
        print(f"{a['id']:<{w}}  {a['severity']:<8}  {a['state']:<12}  {since:<23}  {acked:<5}  {message}".rstrip())
    return 0


def alarms_ack(args: argparse.Namespace, data_dir: Path) -> int:
    doc = _post(data_dir, "/alarms/ack", {"id": args.id, "by": "local"})
    if args.json:
        _print_json(doc)
        return 0
    ev = doc.get("event") or {}
    after = "and cleared" if ev.get("state") == "cleared" else "(listed until its condition is gone)"
    print(f"alarm {ev.get('alarm', args.id)} acknowledged {after}")
    return 0


def _until(text: str) -> float:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time such as 2026-11-23T06:00+01:00") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. +01:00 or Z)")
    return t.timestamp()


def _level(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v <= 100:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..100")
    return v


def add_parsers(sub: Any, data_dir: Callable[[argparse.Namespace], Path], common: Callable) -> None:
    json_help = "print the agent's whole answer as JSON (for machines)"
    light = sub.add_parser("light", help="lighting overrides on the running agent")
    lsub = light.add_subparsers(dest="light_command", required=True, metavar="SUBCOMMAND")
    ov = lsub.add_parser("override", help="switch segments on/off or to a level until an expiry")
    common(ov, config=False)
    onoff = ov.add_mutually_exclusive_group(required=True)
    onoff.add_argument("--on", dest="on", action="store_true", help="switch on (at --level, default 100 %%)")
    onoff.add_argument("--off", dest="on", action="store_false", help="switch off")
    ov.add_argument("--level", type=_level, help="dimming level 0..100 %% (with --on, dimmable segments)")
    ov.add_argument("--segment", action="append", help="a segment (repeat for several; default: all)")
    until = ov.add_mutually_exclusive_group()
    until.add_argument("--minutes", type=float, help="expire after this many minutes (default: the config's expiry)")
    until.add_argument("--until", type=_until, help="expire at this ISO time with offset")
    until.add_argument("--forever", action="store_true", help="no expiry: stays until `cabinet light cancel`")
    ov.add_argument("--note", default="", help="why (kept with the override)")
    ov.add_argument("--json", action="store_true", help=json_help)
    ov.set_defaults(func=lambda a: override(a, data_dir(a)))

    cancel_p = lsub.add_parser("cancel", help="cancel overrides (default: all segments)")
    common(cancel_p, config=False)
    cancel_p.add_argument("--segment", action="append", help="a segment (repeat for several; default: all)")
    cancel_p.add_argument("--json", action="store_true", help=json_help)
    cancel_p.set_defaults(func=lambda a: cancel(a, data_dir(a)))

    alarms = sub.add_parser("alarms", help="alarms of the running agent")
    asub = alarms.add_subparsers(dest="alarms_command", required=True, metavar="SUBCOMMAND")
    ls = asub.add_parser("list", help="active, acknowledged and latched alarms (since: the site's local time)")
    common(ls, config=False)
    ls.add_argument("--json", action="store_true", help="print the alarms as a JSON list (for machines)")
    ls.add_argument(
        "--wait-for",
        metavar="ID",
        help="wait until alarm ID is listed (e.g. after opening the door), then list; exit 1 if it is not in time",
    )
    ls.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="how long --wait-for waits (default 30 s)",
    )
    ls.set_defaults(func=lambda a: alarms_list(a, data_dir(a)))
    ack = asub.add_parser("ack", help="acknowledge an active or latched alarm")
    common(ack, config=False)
    ack.add_argument("id", help="the alarm id, as `cabinet alarms list` shows it (e.g. climate.door_open)")
    ack.add_argument("--json", action="store_true", help=json_help)
    ack.set_defaults(func=lambda a: alarms_ack(a, data_dir(a)))
