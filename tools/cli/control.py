"""Part of the `cabinet` command table: local control through the running agent's socket.

    cabinet light override --on|--off [--level N] [--segment S]... [--minutes M | --until ISO | --forever]
    cabinet light cancel [--segment S]...
    cabinet alarms ack ID

The agent validates and persists the request and answers with what it did; a refusal
(e.g. an unknown segment) prints the agent's reason and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.runtime.status_api import SOCKET_NAME, AgentRefused, fetch


def _call(data_dir: Path, target: str, body: dict[str, Any]) -> int:
    sock = Path(data_dir) / SOCKET_NAME
    try:
        doc = asyncio.run(fetch(sock, target, post=body))
    except AgentRefused as e:
        print(f"cabinet: {e}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError) as e:
        print(f"cabinet: no agent answering at {sock} ({e}); is `cabinet run` running?", file=sys.stderr)
        return 1
    try:
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    except BrokenPipeError:  # `| head`
        pass
    return 0


def _until(text: str) -> float:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time such as 2026-11-23T06:00+01:00") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. +01:00 or Z)")
    return t.timestamp()


def add_parsers(sub: Any, data_dir: Callable[[argparse.Namespace], Path], common: Callable) -> None:
    light = sub.add_parser("light", help="lighting overrides on the running agent")
    lsub = light.add_subparsers(dest="light_command", required=True, metavar="SUBCOMMAND")
    ov = lsub.add_parser("override", help="switch segments on/off or to a level until an expiry")
    common(ov, config=False)
    onoff = ov.add_mutually_exclusive_group(required=True)
    onoff.add_argument("--on", dest="on", action="store_true")
    onoff.add_argument("--off", dest="on", action="store_false")
    ov.add_argument("--level", type=float, help="dimming level 0..100 (with --on)")
    ov.add_argument("--segment", action="append", help="a segment (repeat for several; default: all)")
    until = ov.add_mutually_exclusive_group()
    until.add_argument("--minutes", type=float, help="expire after this many minutes (default: the config's expiry)")
    until.add_argument("--until", type=_until, help="expire at this ISO time with offset")
    until.add_argument("--forever", action="store_true", help="no expiry: stays until `cabinet light cancel`")
    ov.add_argument("--note", default="", help="why (kept with the override)")
    ov.set_defaults(
        func=lambda a: _call(
            data_dir(a),
            "/lighting/override",
            {
                "on": a.on,
                "level": a.level,
                "segments": a.segment,
                "minutes": a.minutes,
                "until": a.until,
                "forever": a.forever,
                "note": a.note,
                "source": "local",
            },
        )
    )
    cancel = lsub.add_parser("cancel", help="cancel overrides (default: all segments)")
    common(cancel, config=False)
    cancel.add_argument("--segment", action="append")
    cancel.set_defaults(func=lambda a: _call(data_dir(a), "/lighting/cancel", {"segments": a.segment}))

    alarms = sub.add_parser("alarms", help="alarms of the running agent")
    asub = alarms.add_subparsers(dest="alarms_command", required=True, metavar="SUBCOMMAND")
    ack = asub.add_parser("ack", help="acknowledge an active or latched alarm")
    common(ack, config=False)
    ack.add_argument("id")
    ack.set_defaults(func=lambda a: _call(data_dir(a), "/alarms/ack", {"id": a.id, "by": "local"}))
