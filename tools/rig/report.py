"""The report of one run: a self-contained HTML file (plots as embedded PNG, no network).

Sections: the verdict and the run's facts; the expectation table (pass/fail, message,
evidence); the plots, all on one time axis in the site's local time with the injected
actions as dashed vertical markers:

1. sun elevation and lux (log scale) with the photocell's on/off thresholds;
2. one panel per segment: commanded on/off and level, measured power;
3. the agent's energy per segment;
4. cabinet temperature, humidity and dew point, with fan and heater running as bands;
5. alarms as bars from raised to cleared (red critical, orange warning), acknowledgement ticks;

then the timeline of actions and, when the agent crashed or hung, its log tail.
matplotlib (the optional extra `rig`) is imported when a report is drawn, with the Agg
backend (no display). Pure apart from that: `render(record, verdicts) -> str`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from tools.rig.expect import Verdict, local
from tools.rig.junit import evidence_text
from tools.rig.record import (
    DEW_POINT,
    FAN,
    HEATER,
    HUMIDITY,
    LUX,
    SUN,
    TEMPERATURE,
    RunRecord,
    Sample,
    segment_series,
)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#176317;font-weight:600}.fail{color:#b00020;font-weight:600}
.verdict{font-size:1.2em;padding:.4em .8em;display:inline-block;border-radius:4px}
.verdict.pass{background:#e3f4e3}.verdict.fail{background:#fde2e6}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:12px}img{max-width:100%}
code{font-size:12px}
"""


class ReportError(RuntimeError):
    """The report cannot be drawn (matplotlib missing)."""


def render(r: RunRecord, verdicts: Sequence[Verdict]) -> str:
    """The whole HTML page of run `r` judged by `verdicts`."""
    plots = _plots(r)
    ok = not r.exit.crashed and all(v.passed for v in verdicts)
    e = html.escape
    speed = "as fast as possible" if r.speed is None else f"{r.speed:g}×"
    facts = [
        ("scenario", f"{r.scenario} ({r.scenario_file})"),
        ("cabinet config", r.config_id),
        ("site", f"{r.site.latitude:.4f}, {r.site.longitude:.4f}, {r.site.timezone}"),
        ("simulated", f"{local(r, r.start)} .. {local(r, r.end)} ({(r.end - r.start) / 3600:.1f} h)"),
        ("speed", speed + ("" if r.wall_s is None else f", {r.wall_s:.1f} s wall")),
        ("agent", _exit_text(r)),
    ]
    passed = sum(1 for v in verdicts if v.passed)
    verdict = "PASS" if ok else "FAIL"
    crash = "" if not r.exit.crashed else f"; the agent {e(r.exit.status)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rig: {e(r.scenario)} — {verdict}</title><style>{CSS}</style></head><body>",
        f"<h1>Scenario {e(r.scenario)}</h1>",
        f'<p class="verdict {verdict.lower()}">{verdict}: {passed} of {len(verdicts)} expectations met{crash}</p>',
        "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts) + "</table>",
        "<h2>Expectations</h2>",
        '<table class="expectations"><tr>'
        + "".join(f"<th>{h}</th>" for h in ("expectation", "kind", "result", "what decided it", "evidence"))
        + "</tr>",
    ]
    for v in verdicts:
        cls, word = ("pass", "PASS") if v.passed else ("fail", "FAIL")
        cells = [e(v.name), e(v.kind), word, e(v.message), f"<code>{e(evidence_text(r, v))}</code>"]
        cells[2] = f'<span class="{cls}">{word}</span>'
        parts.append(f'<tr class="{cls}-row">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    if r.exit.crashed:
        parts.append(f"<h2>Agent log (last {len(r.exit.log_tail)} lines)</h2>")
        parts.append(f'<pre class="log">{e(chr(10).join(r.exit.log_tail) or "(no log)")}</pre>')
    parts.append("<h2>Timelines</h2>")
    for title, png in plots:
        img = f'<img alt="{e(title)}" src="data:image/png;base64,{png}">'
        parts.append(f"<figure>{img}<figcaption>{e(title)}</figcaption></figure>")
    parts.append("<h2>Actions</h2>")
    parts.append("<table><tr><th>time</th><th>action</th><th>arguments</th><th>outcome</th></tr>")
    for a in r.actions:
        args = json.dumps(dict(a.args), ensure_ascii=False, sort_keys=True, default=str)
        outcome = a.outcome if a.ok else f"FAILED: {a.outcome}"
        cells = [e(local(r, a.t)), e(a.action), f"<code>{e(args)}</code>", e(outcome)]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    if r.deliveries is not None:
        produced = sum(d.produced for d in r.deliveries.values())
        missing = sum(d.missing for d in r.deliveries.values())
        dups = sum(d.duplicates for d in r.deliveries.values())
        parts.append(
            f"<h2>Readings</h2><p>{produced} produced, {produced - missing} delivered, {missing} missing, "
            f"{dups} duplicate(s) over {len(r.deliveries)} points.</p>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _exit_text(r: RunRecord) -> str:
    if not r.exit.crashed:
        return "ran the whole scenario"
    code = "no exit code" if r.exit.code is None else f"exit code {r.exit.code}"
    return f"{r.exit.status} ({code}) {r.exit.message}".strip()


def _plots(r: RunRecord) -> list[tuple[str, str]]:
    try:
        import matplotlib  # deferred: heavy, and an optional extra (`pip install -e '.[rig]'`)
    except ImportError:
        raise ReportError("the report needs matplotlib: pip install -e '.[rig]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # deferred: see above

    tz = ZoneInfo(r.site.timezone)
    draw = _Draw(r, plt, tz)
    out = [("Sun elevation and daylight", draw.sun())]
    for seg in r.segments:
        out.append((f"Segment {seg}: commanded and measured", draw.segment(seg)))
    out.append(("Energy per segment (the agent's accounting)", draw.energy()))
    out.append(("Cabinet climate, fan and heater", draw.climate()))
    out.append(("Alarms", draw.alarms()))
    return out


class _Draw:
    """One figure per method; each returns the PNG as base64 text."""

    def __init__(self, r: RunRecord, plt: Any, tz: ZoneInfo) -> None:
        self.r, self.plt, self.tz = r, plt, tz
        from matplotlib import dates  # deferred: see _plots

        self.dates = dates

    def _t(self, ts: Sequence[float]) -> list[dt.datetime]:
        return [dt.datetime.fromtimestamp(t, self.tz) for t in ts]

    def _xy(self, name: str) -> tuple[list[dt.datetime], list[float]]:
        pts: list[Sample] = self.r.series.get(name, [])
        return self._t([t for t, _ in pts]), [float("nan") if v is None else v for _, v in pts]

    def _figure(self, height: float = 2.6) -> tuple[Any, Any]:
        fig, ax = self.plt.subplots(figsize=(11, height), dpi=80)
        ax.set_xlim(*self._t([self.r.start, self.r.end]))
        ax.grid(True, alpha=0.3)
        return fig, ax

    def _finish(self, fig: Any, ax: Any) -> str:
        for a in self.r.actions:
            ax.axvline(self._t([a.t])[0], color="purple", linestyle="--", linewidth=0.9, alpha=0.7)
            ax.annotate(a.action, (self._t([a.t])[0], 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=7, color="purple", va="top", ha="right")  # fmt: skip
        ax.xaxis.set_major_formatter(self.dates.DateFormatter("%d %H:%M", tz=self.tz))
        ax.set_xlabel(f"local time ({self.r.site.timezone})", fontsize=8)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def sun(self) -> str:
        fig, ax = self._figure()
        # readings are reported by exception: a value holds until the next (steps); the sun is computed
        ax.plot(*self._xy(SUN), color="goldenrod", label="sun elevation (deg)")
        ax.axhline(0, color="goldenrod", linewidth=0.6)
        ax.set_ylabel("deg")
        lux = ax.twinx()
        lux.plot(*self._xy(LUX), color="steelblue", label="lux", drawstyle="steps-post")
        lux.set_yscale("symlog", linthresh=1.0)
        lux.set_ylabel("lx")
        if self.r.photocell:
            on, off = self.r.photocell
            lux.axhline(on, color="navy", linestyle=":", label=f"on at {on:g} lx")
            lux.axhline(off, color="teal", linestyle=":", label=f"off at {off:g} lx")
        lux.legend(loc="upper right", fontsize=7)
        return self._finish(fig, ax)

    def segment(self, seg: str) -> str:
        fig, ax = self._figure()
        t, on = self._xy(segment_series(seg, "on"))
        ax.step(t, [v * 100 for v in on], where="post", color="black", label="commanded on (100) / off (0)")
        t, level = self._xy(segment_series(seg, "level"))
        if t:
            ax.step(t, level, where="post", color="darkorange", label="commanded level (%)")
        ax.set_ylim(-5, 110)
        ax.set_ylabel("%")
        power = ax.twinx()
        power.plot(
            *self._xy(segment_series(seg, "power_w")),
            color="crimson",
            alpha=0.7,
            label="measured power (W)",
            drawstyle="steps-post",
        )
        power.set_ylabel("W")
        power.legend(loc="upper right", fontsize=7)
        return self._finish(fig, ax)

    def energy(self) -> str:
        fig, ax = self._figure()
        for seg in self.r.segments:
            ax.plot(*self._xy(segment_series(seg, "energy_kwh")), label=f"{seg} (kWh)", drawstyle="steps-post")
        ax.set_ylabel("kWh")
        return self._finish(fig, ax)

    def climate(self) -> str:
        fig, ax = self._figure(3.0)
        ax.plot(*self._xy(TEMPERATURE), color="firebrick", label="temperature (°C)", drawstyle="steps-post")
        ax.plot(*self._xy(DEW_POINT), color="royalblue", label="dew point (°C)", drawstyle="steps-post")
        ax.set_ylabel("°C")
        for name, color in ((FAN, "lightskyblue"), (HEATER, "lightsalmon")):
            for a, b in _on_spans(self.r.series.get(name, []), self.r.end):
                ax.axvspan(*self._t([a, b]), color=color, alpha=0.35, label=f"{name} on")
        hum = ax.twinx()
        hum.plot(*self._xy(HUMIDITY), color="seagreen", label="humidity (%RH)", drawstyle="steps-post")
        hum.set_ylabel("%RH")
        hum.set_ylim(0, 100)
        hum.legend(loc="upper right", fontsize=7)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=7)
        return self._finish(fig, ax)

    def alarms(self) -> str:
        ids = sorted({a.id for a in self.r.alarms})
        fig, ax = self._figure(max(1.6, 0.35 * len(ids) + 1.0))
        num = self.dates.date2num
        for row, aid in enumerate(ids):
            for a in (x for x in self.r.alarms if x.id == aid):
                start, end = self._t([a.raised, a.cleared if a.cleared is not None else self.r.end])
                color = "crimson" if a.severity == "critical" else "orange"
                ax.broken_barh([(num(start), num(end) - num(start))], (row - 0.35, 0.7), color=color)
                if a.acked is not None:
                    ax.plot(self._t([a.acked]), [row], marker="|", markersize=14, color="black")
        ax.set_yticks(range(len(ids)), ids, fontsize=7)
        ax.set_ylim(-0.8, max(len(ids), 1) - 0.2)
        if not ids:
            ax.text(0.5, 0.5, "no alarms", transform=ax.transAxes, ha="center", va="center")
        return self._finish(fig, ax)


def _on_spans(samples: Sequence[Sample], end: float) -> list[tuple[float, float]]:
    """Intervals where a 0/1 series is on."""
    spans, since = [], None
    for t, v in samples:
        if v and since is None:
            since = t
        elif not v and since is not None:
            spans.append((since, t))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans
