"""`cabinet status`: the running agent's state, for people.

Asks the agent's status socket in the data dir (blocking, no event loop: it answers in a
few milliseconds) and prints the summary first - buses and devices, outbox and uplink,
lighting, climate, alarms, GPS, a count of good points - then the points. Times are the
site's local time (the config's `[site] timezone`). `--summary` leaves the points out,
`--points GLOB` prints only the points whose names match (repeatable), `--json` prints the
snapshot as JSON (filtered the same way), `--wait SECONDS` waits for an agent that is
still starting. Exit codes: 0 ok, 1 no agent answered (or no point matched), 2 usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import sys
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.runtime.status_api import SOCKET_NAME, AgentRefused, request, wait_for_agent

UTC = dt.UTC


# ------------------------------------------------------------------------------------- local time


def site_zone(doc: dict[str, Any]) -> dt.tzinfo:
    """The site's time zone from a status snapshot (UTC when the agent does not say)."""
    name = (doc.get("cabinet") or {}).get("timezone")
    if not name:
        lighting = ((doc.get("controls") or {}).get("lighting") or {}).get("site") or {}
        name = lighting.get("timezone")
    try:
        return zoneinfo.ZoneInfo(name) if name else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def local(t: float | str | None, zone: dt.tzinfo, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A UTC time (epoch seconds or ISO 8601) in the site's local time; "-" when unknown."""
    if t is None or t == "":
        return "-"
    try:
        when = dt.datetime.fromtimestamp(t, UTC) if isinstance(t, (int, float)) else dt.datetime.fromisoformat(t)
    except (ValueError, OverflowError, OSError):
        return str(t)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone).strftime(fmt)


def describe_override(seg: str, ov: dict[str, Any], zone: dt.tzinfo) -> str:
    """One line for a lighting override: what, until when (local time), by whom, why."""
    if not ov.get("on"):
        what = "off"
    else:
        what = f"on {ov['level']:g} %" if ov.get("level") is not None else "on"
    if ov.get("forever"):
        until = "until cancelled"
    elif ov.get("expires"):
        until = f"until {local(ov['expires'], zone)}"
    else:
        until = "until (clock unknown)"
    note = f": {ov['note']}" if ov.get("note") else ""
    return f"override {seg}: {what} {until}, by {ov.get('source') or '?'}{note}"


# ------------------------------------------------------------------------------------- rendering


def _fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def render(doc: dict[str, Any], *, points: bool = True) -> str:
    """The summary, then (unless `points` is False) a table of `doc`'s points."""
    zone = site_zone(doc)
    cab, ag = doc.get("cabinet", {}), doc.get("agent", {})
    lines = [
        (
            f"cabinet {cab.get('id')} ({cab.get('name') or 'unnamed'}) - agent {ag.get('version')}, "
            f"up {_dur(ag.get('uptime_s'))}, board {ag.get('board')}, "
            f"clock {local(ag.get('wall_time'), zone, '%Y-%m-%d %H:%M:%S %Z')}"
        )
    ]
    lines += _buses(doc.get("buses", []))
    lines += _outbox_uplink(doc)
    lines += _controls(doc.get("controls"), zone)
    lines += _gps(doc.get("gps"))
    lines.append(_points_count(doc.get("points", [])))
    if points:
        lines += ["", *point_table(doc.get("points", []))]
    return "\n".join(lines)


def _points_count(pts: list[dict[str, Any]]) -> str:
    bad = [p["name"] for p in pts if p.get("quality") != "good"]
    text = f"{len(pts) - len(bad)}/{len(pts)} points good"
    if bad:
        text += f"; not good: {', '.join(bad[:5])}" + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return text


def point_table(pts: list[dict[str, Any]]) -> list[str]:
    w = max([len(p["name"]) for p in pts] + [5])
    out = [f"{'POINT':<{w}}  {'VALUE':>12}  {'UNIT':<5}  {'QUALITY':<11}  {'AGE':>7}  REASON"]
    for p in pts:
        out.append(
            f"{p['name']:<{w}}  {_fmt_value(p['value']):>12}  {p.get('unit') or '':<5}  "
            f"{p['quality']:<11}  {_dur(p.get('age_s')):>7}  {p.get('reason') or ''}".rstrip()
        )
    return out


def _buses(buses: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in buses:
        out.append(
            f"bus {b['name']} ({b['kind']} {b['target']}): {b['state']}"
            + (f" - {b['reason']}" if b.get("reason") else "")
            + f"; {b['transactions']} transactions, {b['failures']} failed, "
            f"{b['requests_per_cycle']} requests per cycle"
        )
        for d in b.get("devices", []):
            out.append(
                f"  unit {d['unit']:>3} {d['name']:<16} {d['profile']:<14} {d['state']:<8} "
                f"every {d['poll_s']:g}s, {d['requests_per_poll']} req, last {d['last_poll_ms']} ms"
                + (f" - {d['reason']}, retry in {d['retry_in_s']}s" if d.get("reason") else "")
            )
    return out


def _outbox_uplink(doc: dict[str, Any]) -> list[str]:
    out = []
    ob = doc.get("outbox")
    if ob:
        oldest = ob.get("oldest_unsent_t")
        age = f", oldest unsent {_dur(doc['agent']['wall_time'] - oldest)} old" if oldest else ""
        evicted = sum((ob.get("evicted_rows") or {}).values())
        out.append(
            f"outbox: {ob['rows_pending']} readings waiting, {ob['rows_sealed']} in "
            f"{ob['batches_unacked']} sealed batches, {ob['bytes'] / 2**20:.1f} of {ob['max_bytes'] / 2**20:.0f} MiB"
            f"{age}" + (f", {evicted} evicted" if evicted else "")
        )
    up = doc.get("uplink")
    if up:
        out.append(
            f"uplink {up['broker']}: {up['state']}"
            + (f" - {up['reason']}" if up.get("reason") else "")
            + f"; {up['batches_sent']} batches sent ({up['batches_resent']} again), "
            f"{up['batches_acked']} acknowledged, {up['acks_rejected']} acks rejected, "
            f"{up['reconnects']} reconnects"
        )
    elif ob:
        out.append("uplink: none configured ([uplink] or --broker); readings are kept in the outbox")
    return out


def _gps(gps: dict[str, Any] | None) -> list[str]:
    if not gps:
        return []
    return [
        f"gps {gps['port']}: {'open' if gps['open'] else 'closed'}, time {gps['time_quality']}, "
        f"position {'valid' if gps['position_valid'] else 'invalid'}, "
        f"{gps['lines_ok']} lines ok, {gps['lines_bad']} bad"
        + (f" - {gps['last_error']}" if gps.get("last_error") else "")
    ]


def _lighting(li: dict[str, Any], trusted: bool, zone: dt.tzinfo) -> list[str]:
    night = li.get("night") or {}
    dark = ""
    if night.get("dark_from"):
        dark = (
            f"; tonight {night.get('kind')}, dark {local(night['dark_from'], zone, '%H:%M')}-"
            f"{local(night.get('dark_until'), zone, '%H:%M %Z')}"
        )
    out = [f"lighting: mode {li.get('mode')}" + ("" if trusted else " (clock not trusted)") + dark]
    for name, seg in (li.get("segments") or {}).items():
        state = "ON " if seg.get("on") else "off"
        level = f" {seg['level']:.0f}%" if seg.get("level") is not None else ""
        power = f", {seg['power_w']:.0f} W" if seg.get("power_w") is not None else ""
        out.append(
            f"  {name:<10} {state}{level:<5} {seg.get('reason', '')} {seg.get('detail', '')}{power}, "
            f"{seg.get('burning_h', 0):.1f} h, {seg.get('energy_kwh', 0):.2f} kWh"
        )
    for seg, ov in (li.get("overrides") or {}).items():
        out.append("  " + describe_override(seg, ov, zone))
    return out


def _controls(c: dict | None, zone: dt.tzinfo) -> list[str]:
    if not c:
        return []
    out: list[str] = []
    if c.get("lighting"):
        out += _lighting(c["lighting"], bool(c.get("clock_trusted")), zone)
    cl = c.get("climate")
    if cl:
        outs = ", ".join(
            f"{p} {'on' if o['on'] else 'off'} ({o['reason']})" for p, o in (cl.get("outputs") or {}).items()
        )
        out.append(
            f"climate: {cl.get('mode')}, {_fmt_value(cl.get('temperature'))} °C, {_fmt_value(cl.get('humidity'))} %RH, "
            f"dew point {_fmt_value(cl.get('dew_point'))} °C; {outs}"
        )
    alarms = c.get("alarms") or []
    out.append(f"alarms: {len(alarms)} (`cabinet alarms list`)" if alarms else "alarms: none")
    for a in alarms:
        out.append(
            f"  {a['severity']:<8} {a['id']} {a['state']} since {local(a.get('since'), zone)}"
            + (f" - {a['message']}" if a.get("message") else "")
        )
    for point, reason in (c.get("output_failures") or {}).items():
        out.append(f"  output {point}: {reason}")
    return out


# ------------------------------------------------------------------------------------- the command


def ask(data_dir: Path, wait_s: float = 0.0, target: str = "/status") -> dict[str, Any]:
    """The agent's answer to `target`, waiting up to `wait_s` for it to answer. Raises
    SystemExit(1) with a one-line message when no agent answered."""
    sock = Path(data_dir) / SOCKET_NAME
    try:
        return wait_for_agent(sock, wait_s, target) if wait_s > 0 else request(sock, target)
    except AgentRefused as e:
        raise SystemExit(f"cabinet: {e}") from None
    except OSError as e:
        within = f" within {wait_s:g} s" if wait_s > 0 else ""
        why = e.strerror or str(e) or type(e).__name__
        raise SystemExit(
            f"cabinet: no agent answering at {sock}{within} ({why}); start one with `cabinet run`"
        ) from None


def main(args: argparse.Namespace, data_dir: Path) -> int:
    doc = ask(data_dir, args.wait)
    if args.points:
        pts = [p for p in doc.get("points", []) if any(fnmatch.fnmatchcase(p["name"], g) for g in args.points)]
        if not pts:
            print(f"cabinet status: no point matches {' '.join(args.points)}", file=sys.stderr)
            return 1
        doc["points"] = pts
    if args.json:
        if args.summary:
            doc.pop("points", None)
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif args.points:
        print("\n".join(point_table(doc["points"])))
    else:
        print(render(doc, points=not args.summary))
    return 0


def add_parser(sub: Any, common: Callable[..., None], data_dir_of: Callable[[argparse.Namespace], Path]) -> None:
    """`cabinet status [--data-dir DIR] [--json] [--summary | --points GLOB] [--wait SECONDS]`."""
    s = sub.add_parser("status", help="the running agent's buses, outbox, lighting, climate, alarms and points")
    common(s, config=False)
    s.add_argument("--json", action="store_true", help="print the snapshot as JSON (for machines)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--summary", action="store_true", help="the summary only, no point lines")
    which.add_argument(
        "--points",
        metavar="GLOB",
        nargs="+",
        action="extend",
        help="only the points whose names match, e.g. 'meter_main.*' 'lux.*' (no summary)",
    )
    s.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="wait up to SECONDS for a starting agent to answer (default: ask once); exit 1 if it never does",
    )
    s.set_defaults(func=lambda a: main(a, data_dir_of(a)))
