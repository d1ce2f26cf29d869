"""The alarm framework: one way for every part of the agent to raise, debounce,
clear, latch, acknowledge and persist alarms. Pure: no I/O, no asyncio, no clock;
times come in as arguments.

Owns:

* `Condition` — what a controller emits each step for each alarm it watches:
  `(alarm_id, source, severity, active, message, value)`. `severity` is "warning"
  or "critical". `value` is optional: when the alarm's definition has a
  `Hysteresis` and `value` is a number, the manager derives `active` from the value
  (raise at one level, clear at another) and ignores the `active` field.
  The climate and lighting controllers emit `Condition` itself. `AlarmManager.update`
  also accepts plain 4..6-tuples in that order, mappings with those keys (`id` or
  `alarm_id`), or any object with those attributes (`id` or `alarm_id`; without
  `source`, its `segment` or else the id's first part is the source), so a source
  outside agent/control need not import this class.
* `Hysteresis(raise_at, clear_at)` — an analogue switch: a high alarm when
  raise_at > clear_at (raised once value >= raise_at, cleared once value <=
  clear_at), a low alarm when raise_at < clear_at (raised at value <= raise_at,
  cleared at value >= clear_at). Controllers use it for thermostats too.
* `AlarmDef` — an alarm's definition: id, source, severity, raise and clear delays
  (the condition must hold that long, continuously, before the alarm is raised or
  cleared: a debounce), optional hysteresis, optional latching.
  `AlarmOverride` — per-alarm changes from the `[alarms]` config section (severity,
  delays, latching, enabled); it applies to defined alarms and to alarms first seen
  in a condition alike.
* `AlarmManager` — the states and transitions:

      cleared --condition held raise_delay_s--> active                 event "raised"
      active --acknowledge--> acknowledged                             event "acknowledged"
      active|acknowledged --condition gone clear_delay_s-->
          cleared (not latching, or already acknowledged)              event "cleared"
          latched (latching and not acknowledged)                      event "cleared", state "latched"
      latched --acknowledge--> cleared                                 event "acknowledged", state "cleared"
      latched --condition held raise_delay_s--> active                 event "raised" (a new occurrence)

  An alarm id reported in no condition of a step keeps its last condition (a
  source may report only changes; a controller with a failed sensor holds the
  alarms that depend on it). Delays keep running for held conditions.
  An id with no definition gets a default one from its first condition: the
  condition's source and severity, no delays, no latching (then overrides).
* `AlarmEvent` — one transition, all the outbox needs: alarm id, source, severity,
  transition ("raised", "acknowledged", "cleared"), resulting state ("active",
  "acknowledged", "latched", "cleared"), message, wall time `t`, value, count
  (how often it has been raised). `to_dict()` is JSON-safe; `to_reading()` makes a
  Reading for the outbox (point "alarm.<id>", value: the event as compact JSON),
  to be put with `Priority.ALARM`.

The value types live in agent/control/alarms/model.py and are re-exported here.

Time: `update(now, ...)` and `acknowledge(id, now, ...)` take `now` as monotonic
seconds (delays; `next_due()` says when the next one ends); `wall=` gives the
wall time stamped on events and shown as "since" (default: `now`). Persistence:
`to_dict()` / `AlarmManager.from_dict(data, definitions, overrides)`, JSON-safe.
Restored alarms keep their state, "since", acknowledgement, count and last
condition; a restored active alarm is not raised again. Running delays are not
persisted: an alarm that was waiting to be raised or cleared waits its full delay
again after a restart (never shorter).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from agent.control.alarms.model import (
    SEVERITIES,
    SHOWN,
    STATE_VERSION,
    STATES,
    AlarmDef,
    AlarmEvent,
    AlarmOverride,
    Condition,
    Hysteresis,
    Severity,
    as_condition,
    json_num,
)

__all__ = [
    "SEVERITIES",
    "AlarmDef",
    "AlarmEvent",
    "AlarmManager",
    "AlarmOverride",
    "Condition",
    "Hysteresis",
    "Severity",
    "as_condition",
]


class _Alarm:
    __slots__ = (
        "acked_at",
        "acked_by",
        "changed",
        "count",
        "defined",
        "defn",
        "message",
        "pending_since",
        "raw",
        "severity",
        "since",
        "source",
        "state",
        "value",
    )

    def __init__(self, defn: AlarmDef, defined: bool) -> None:
        self.defn = defn
        self.defined = defined  # False: the definition was made from a condition
        self.raw = False
        self.state = "cleared"
        self.pending_since: float | None = None
        self.since: float | None = None
        self.acked_at: float | None = None
        self.acked_by: str | None = None
        self.message = defn.description
        self.value: float | None = None
        self.count = 0
        self.changed: float | None = None
        self.source = defn.source
        self.severity = defn.severity

    def wants_change(self) -> bool:
        if not self.defn.enabled:
            return self.state != "cleared"
        if self.raw:
            return self.state in ("cleared", "latched")
        return self.state in ("active", "acknowledged")


class AlarmManager:
    """Alarm states and their transitions; see the module docstring."""

    def __init__(
        self, definitions: Iterable[AlarmDef] = (), overrides: Mapping[str, AlarmOverride] | None = None
    ) -> None:
        self.overrides: dict[str, AlarmOverride] = dict(overrides or {})
        self._alarms: dict[str, _Alarm] = {}
        self._pending: set[str] = set()
        for d in definitions:
            self.define(d)

    # ---- definitions -----------------------------------------------------------------

    def define(self, d: AlarmDef) -> None:
        """Add or replace a definition (overrides are applied on top)."""
        eff = self._effective(d)
        a = self._alarms.get(d.id)
        if a is None:
            self._alarms[d.id] = _Alarm(eff, True)
        else:
            a.defn, a.defined, a.source, a.severity = eff, True, eff.source or a.source, eff.severity
            self._recheck(a)

    def definition(self, alarm_id: str) -> AlarmDef | None:
        a = self._alarms.get(alarm_id)
        return a.defn if a is not None else None

    def _effective(self, d: AlarmDef) -> AlarmDef:
        o = self.overrides.get(d.id)
        return o.apply(d) if o is not None else d

    def _recheck(self, a: _Alarm) -> None:
        if a.wants_change():
            self._pending.add(a.defn.id)
        else:
            self._pending.discard(a.defn.id)
            a.pending_since = None

    # ---- the step --------------------------------------------------------------------

    def update(self, now: float, conditions: Iterable[Any] = (), *, wall: float | None = None) -> list[AlarmEvent]:
        """Take this step's conditions, run the delays, return the transitions."""
        for raw_c in conditions:
            c = (
                raw_c
                if type(raw_c) is Condition and type(raw_c.active) is bool and raw_c.severity in SEVERITIES
                else as_condition(raw_c)
            )
            self._take(now, c)
        if not self._pending:
            return []
        return self._transitions(now, now if wall is None else wall)

    def _take(self, now: float, c: Condition) -> None:
        """One condition: the alarm's raw state (from the value through its hysteresis, else
        `active`), message and value; a changed raw state starts its delay."""
        a = self._alarms.get(c.alarm_id)
        if a is None:
            a = self._alarms[c.alarm_id] = _Alarm(
                self._effective(AlarmDef(c.alarm_id, source=c.source, severity=c.severity)), False
            )
        if not a.defined:  # severity and source follow the condition unless overridden
            o = self.overrides.get(c.alarm_id)
            sev = o.severity if o is not None and o.severity is not None else c.severity
            if sev != a.defn.severity or c.source != a.defn.source:
                a.defn = dataclasses.replace(a.defn, severity=sev, source=c.source)
                a.severity, a.source = sev, c.source
        h = a.defn.hysteresis
        v = c.value
        if (
            h is not None
            and v is not None
            and not isinstance(v, bool)
            and isinstance(v, (int, float))
            and math.isfinite(v)
        ):
            raw = h.next(a.raw, v)
        else:
            raw = c.active
        if c.message:
            a.message = c.message
        a.value = v
        if raw != a.raw:
            a.raw = raw
            a.pending_since = now
            self._recheck(a)

    def _transitions(self, now: float, wall: float) -> list[AlarmEvent]:
        """The alarms whose delay ran out change state (in id order)."""
        events: list[AlarmEvent] = []
        for aid in sorted(self._pending):
            a = self._alarms[aid]
            if not a.wants_change():
                self._recheck(a)
                continue
            if a.pending_since is None:
                a.pending_since = now
            d = a.defn
            if not d.enabled:
                events.append(self._set(a, "cleared", "cleared", wall))
            elif a.raw:
                if now - a.pending_since >= d.raise_delay_s:
                    a.count += 1
                    a.since, a.acked_at, a.acked_by = wall, None, None
                    events.append(self._set(a, "raised", "active", wall))
            elif now - a.pending_since >= d.clear_delay_s:
                if d.latching and a.state == "active":
                    events.append(self._set(a, "cleared", "latched", wall))
                else:
                    events.append(self._set(a, "cleared", "cleared", wall))
            self._recheck(a)
        return events

    def next_due(self) -> float | None:
        """Monotonic time at which a running delay ends (call `update` by then), None if none runs."""
        due = None
        for aid in self._pending:
            a = self._alarms[aid]
            if a.pending_since is None or not a.wants_change():
                continue
            d = a.defn
            t = a.pending_since + (0.0 if not d.enabled else d.raise_delay_s if a.raw else d.clear_delay_s)
            due = t if due is None or t < due else due
        return due

    def _set(self, a: _Alarm, transition: str, state: str, wall: float, by: str | None = None) -> AlarmEvent:
        a.state = state
        a.changed = wall
        if state == "cleared":
            a.since = None
        return AlarmEvent(a.defn.id, a.source, a.severity, transition, state, a.message, wall, a.value, a.count, by)

    def acknowledge(
        self, alarm_id: str, now: float, *, wall: float | None = None, by: str | None = None
    ) -> AlarmEvent | None:
        """Acknowledge an active or latched alarm; None when there is nothing to acknowledge."""
        a = self._alarms.get(alarm_id)
        if a is None or a.state not in ("active", "latched"):
            return None
        wall = now if wall is None else wall
        a.acked_at, a.acked_by = wall, by
        ev = self._set(a, "acknowledged", "acknowledged" if a.state == "active" else "cleared", wall, by)
        self._recheck(a)
        return ev

    # ---- what is shown ---------------------------------------------------------------

    def state(self, alarm_id: str) -> str:
        a = self._alarms.get(alarm_id)
        return a.state if a is not None else "cleared"

    def is_active(self, alarm_id: str) -> bool:
        return self.state(alarm_id) in SHOWN

    def active(self) -> list[dict[str, Any]]:
        """Alarms not cleared (active, acknowledged, latched): critical first, then oldest."""
        out = [self._show(a) for a in self._alarms.values() if a.state in SHOWN]
        out.sort(
            key=lambda x: (x["severity"] != "critical", x["since"] if x["since"] is not None else math.inf, x["id"])
        )
        return out

    def _show(self, a: _Alarm) -> dict[str, Any]:
        return {
            "id": a.defn.id,
            "source": a.source,
            "severity": a.severity,
            "state": a.state,
            "since": a.since,
            "acknowledged": a.state == "acknowledged",
            "condition": a.raw,
            "message": a.message,
            "value": json_num(a.value),
            "count": a.count,
        }

    # ---- persistence -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state of every alarm that was ever seen or is not at rest."""
        out = {}
        for aid, a in self._alarms.items():
            if a.state == "cleared" and not a.raw and a.count == 0:
                continue
            out[aid] = {
                "state": a.state,
                "condition": a.raw,
                "source": a.source,
                "severity": a.severity,
                "message": a.message,
                "value": json_num(a.value),
                "since": a.since,
                "acked_at": a.acked_at,
                "acked_by": a.acked_by,
                "count": a.count,
                "changed": a.changed,
            }
        return {"version": STATE_VERSION, "alarms": out}

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        definitions: Iterable[AlarmDef] = (),
        overrides: Mapping[str, AlarmOverride] | None = None,
    ) -> AlarmManager:
        """A manager with `definitions` and the states saved by `to_dict`. Raises
        ValueError naming the first malformed entry (the caller decides to start fresh)."""
        m = cls(definitions, overrides)
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise ValueError(f"alarm state: expected a table with version {STATE_VERSION}")
        alarms = data.get("alarms")
        if not isinstance(alarms, Mapping):
            raise ValueError("alarm state: 'alarms' must be a table")
        for aid, s in alarms.items():
            if not isinstance(aid, str) or not aid or not isinstance(s, Mapping):
                raise ValueError(f"alarm state: bad entry {aid!r}")
            state, raw, sev = s.get("state"), s.get("condition"), s.get("severity")
            if state not in STATES or not isinstance(raw, bool) or sev not in SEVERITIES:
                raise ValueError(f"alarm state {aid}: bad state/condition/severity {state!r}/{raw!r}/{sev!r}")
            count = s.get("count", 0)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"alarm state {aid}: bad count {count!r}")
            for key in ("since", "acked_at", "changed", "value"):
                v = s.get(key)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                    raise ValueError(f"alarm state {aid}: bad {key} {v!r}")
            for key in ("source", "message"):
                if not isinstance(s.get(key, ""), str):
                    raise ValueError(f"alarm state {aid}: bad {key} {s.get(key)!r}")
            by = s.get("acked_by")
            if by is not None and not isinstance(by, str):
                raise ValueError(f"alarm state {aid}: bad acked_by {by!r}")
            a = m._alarms.get(aid)
            if a is None:
                a = m._alarms[aid] = _Alarm(
                    m._effective(AlarmDef(aid, source=s.get("source", ""), severity=sev)), False
                )
            a.state, a.raw, a.count = state, raw, count
            a.since, a.acked_at, a.acked_by, a.changed = s.get("since"), s.get("acked_at"), by, s.get("changed")
            a.message, a.value = s.get("message", ""), s.get("value")
            if not a.defined:
                a.source, a.severity = s.get("source", ""), sev
            a.pending_since = None  # a running delay starts again
            m._recheck(a)
        return m
