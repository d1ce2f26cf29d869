"""Folding what a runner observes into the parts of a `RunRecord` (pure; reading the
agent's outbox is tools.rig.collect).

* `alarm_intervals`: the agent's alarm transitions (`AlarmEvent.to_dict()`, the JSON
  value of its `alarm.<id>` readings: `alarm`, `severity`, `transition` raised /
  acknowledged / cleared, `state` after it, `t`, `message`) -> one interval per raise,
  ending when the state is "cleared" (a latching alarm: at its acknowledgement);
* `quality_changes`: readings (point, t, quality) -> the changes only, per point;
* `deliveries`: readings produced by the agent (point, t) and rows at the ingest
  (point, t) -> per point produced, delivered and duplicates (a row seen twice);
* `Series`: samples added as they come, kept only when the value changes (a day at 1 s
  of a value that changes a few times stays a few samples).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tools.rig.record import AlarmInterval, Delivery, Sample


def alarm_intervals(transitions: Iterable[Mapping[str, Any]]) -> list[AlarmInterval]:
    """Intervals from transitions in time order. A raise while the same alarm is open is not a
    new interval; an acknowledgement or clear without a raise seen (the run started with the
    alarm restored from the agent's state) opens one at that time."""
    open_: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for tr in sorted(transitions, key=lambda x: float(x["t"])):
        aid, t, kind = str(tr["alarm"]), float(tr["t"]), tr["transition"]
        cur = open_.get(aid)
        if cur is None:
            cur = {"id": aid, "severity": tr.get("severity", "warning"), "raised": t, "message": tr.get("message", "")}
            cur |= {"cleared": None, "acked": None}
            open_[aid] = cur
        if kind == "acknowledged" and cur["acked"] is None:
            cur["acked"] = t
        # the alarm ends when its state is "cleared": a latching alarm whose condition went
        # away is "cleared" with state "latched" and ends at its acknowledgement
        ends = tr["state"] == "cleared" if "state" in tr else kind == "cleared"
        if ends:
            cur["cleared"] = t
            done.append(open_.pop(aid))
    done.extend(open_.values())
    return [
        AlarmInterval(d["id"], d["severity"], d["raised"], d["cleared"], d["acked"], d["message"])
        for d in sorted(done, key=lambda d: (d["raised"], d["id"]))
    ]


def quality_changes(readings: Iterable[tuple[str, float, str]]) -> dict[str, list[tuple[float, str]]]:
    """point -> [(t, quality)] where the quality changed (the first reading of each point counts)."""
    out: dict[str, list[tuple[float, str]]] = {}
    for point, t, quality in sorted(readings, key=lambda r: r[1]):
        changes = out.setdefault(point, [])
        if not changes or changes[-1][1] != quality:
            changes.append((t, str(quality)))
    return out


def deliveries(produced: Iterable[tuple[str, float]], rows: Iterable[tuple[str, float]]) -> dict[str, Delivery]:
    """Per point: readings produced, rows delivered (duplicates included) and duplicate rows.
    A reading is (point, t); the ingest's dedupe key is the same pair."""
    made = Counter(p for p, _ in produced)
    seen = Counter(rows)
    got = Counter(p for p, _ in seen.elements())
    dups: Counter[str] = Counter()
    for (p, _), n in seen.items():
        dups[p] += n - 1
    return {p: Delivery(made.get(p, 0), got.get(p, 0), dups.get(p, 0)) for p in sorted(set(made) | set(got))}


class Series:
    """Samples of one value; `add` keeps a sample only when the value changed."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def add(self, t: float, value: float | None) -> None:
        if self.samples and self.samples[-1][1] == value:
            return
        self.samples.append((t, value))
