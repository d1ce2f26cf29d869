"""`cabinet status`: ask the running agent for its live points and bus health.

Talks to the agent's read-only status socket in the data dir; prints a table, or
with --json one snapshot as JSON ({"points": [...], "buses": [...], ...}).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agent.runtime.status_api import SOCKET_NAME, fetch


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


def render(doc: dict[str, Any]) -> str:
    cab, ag = doc.get("cabinet", {}), doc.get("agent", {})
    lines = [
        (
            f"cabinet {cab.get('id')} ({cab.get('name') or 'unnamed'}) - agent {ag.get('version')}, "
            f"up {_dur(ag.get('uptime_s'))}, board {ag.get('board')}, clock {ag.get('wall_time_iso')}"
        )
    ]
    lines += _points(doc.get("points", []))
    lines.append("")
    lines += _buses(doc.get("buses", []))
    lines += _outbox_uplink(doc)
    lines += _controls(doc.get("controls"))
    lines += _gps(doc.get("gps"))
    return "\n".join(lines)


def _points(pts: list[dict[str, Any]]) -> list[str]:
    w = max([len(p["name"]) for p in pts] + [5])
    out = [f"{'POINT':<{w}}  {'VALUE':>12}  {'UNIT':<5}  {'QUALITY':<11}  {'AGE':>7}  REASON"]
    for p in pts:
        out.append(
            f"{p['name']:<{w}}  {_fmt_value(p['value']):>12}  {p.get('unit') or '':<5}  "
            f"{p['quality']:<11}  {_dur(p.get('age_s')):>7}  {p.get('reason') or ''}"
        )
    good = sum(1 for p in pts if p["quality"] == "good")
    out.append(f"{good}/{len(pts)} points good")
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


def _controls(c: dict | None) -> list[str]:
    if not c:
        return []
    out: list[str] = []
    li = c.get("lighting")
    if li:
        night = li.get("night") or {}
        out.append(
            f"lighting: mode {li.get('mode')}"
            + ("" if c.get("clock_trusted") else " (clock not trusted)")
            + (
                f"; tonight {night.get('kind')}, dark {str(night.get('dark_from'))[11:16]}Z-"
                f"{str(night.get('dark_until'))[11:16]}Z"
                if night.get("dark_from")
                else ""
            )
        )
        for name, seg in (li.get("segments") or {}).items():
            state = "ON " if seg.get("on") else "off"
            level = f" {seg['level']:.0f}%" if seg.get("level") is not None else ""
            power = f", {seg['power_w']:.0f} W" if seg.get("power_w") is not None else ""
            out.append(
                f"  {name:<10} {state}{level:<5} {seg.get('reason', '')} {seg.get('detail', '')}{power}, "
                f"{seg.get('burning_h', 0):.1f} h, {seg.get('energy_kwh', 0):.2f} kWh"
            )
        for seg, ov in (li.get("overrides") or {}).items():
            out.append(f"  override {seg}: {ov}")
    cl = c.get("climate")
    if cl:
        outs = ", ".join(
            f"{p} {'on' if o['on'] else 'off'} ({o['reason']})" for p, o in (cl.get("outputs") or {}).items()
        )
        out.append(
            f"climate: {cl.get('mode')}, {cl.get('temperature')} °C, {cl.get('humidity')} %RH, "
            f"dew point {cl.get('dew_point')} °C; {outs}"
        )
    alarms = c.get("alarms") or []
    out.append(f"alarms: {len(alarms)} active" if alarms else "alarms: none")
    for a in alarms:
        out.append(f"  {a['severity']:<8} {a['id']} [{a['state']}] {a.get('message') or ''}")
    for point, reason in (c.get("output_failures") or {}).items():
        out.append(f"  output {point}: {reason}")
    return out


def main(data_dir: Path, as_json: bool) -> int:
    sock = Path(data_dir) / SOCKET_NAME
    try:
        doc = asyncio.run(fetch(sock))
    except (TimeoutError, OSError) as e:
        print(f"cabinet status: no agent answering at {sock} ({e}); start one with `cabinet run`", file=sys.stderr)
        return 1
    if as_json:
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(render(doc))
    return 0
