"""The climate controller's contacts: door, flood and UPS (docs/climate.md).

* door: debounced (`door.debounce_s`; the first value at once);
* flood: the contact itself, and loads stay shed `flood.release_s` after the water
  is gone (`flood_shed`);
* UPS: on battery, battery low, replace battery;
* a contact without a good value keeps its last value (initially False); after
  `sensor.confirm_s` without one it is `bad` (alarm climate.input_failed).

`ContactWatch.read` judges them each step, `conditions` makes their alarm
conditions. Pure: `now` is monotonic time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.control.alarms.model import Condition
from agent.control.climate.alarms import contact_points
from agent.control.climate.parts import Debounce, good_value
from agent.control.climate.settings import ClimateSettings


@dataclass(frozen=True, slots=True)
class Contacts:
    """The door, flood and UPS contacts as a step sees them."""

    door: bool = False  # debounced
    flood: bool = False
    flood_shed: bool = False  # flooded, or within release_s of it
    on_battery: bool = False
    battery_low: bool = False
    replace_battery: bool = False
    bad: tuple[str, ...] = ()  # contacts without a good value for sensor.confirm_s

    def condition_key(self) -> tuple[bool, bool, bool, bool, bool, tuple[str, ...]]:
        """What the contacts' conditions depend on (flood_shed is not one of them)."""
        return self.door, self.flood, self.on_battery, self.battery_low, self.replace_battery, self.bad


class ContactWatch:
    """See the module docstring."""

    def __init__(self, settings: ClimateSettings) -> None:
        self.settings = settings
        self.configured = bool(contact_points(settings))  # any contact at all (else no conditions)
        self._door = Debounce(settings.door.debounce_s) if settings.door else None
        self._last: dict[str, bool] = {}  # point -> its last good value
        self._bad_since: dict[str, float] = {}  # point -> since when it has had no good value
        self._flood_seen: float | None = None

    def read(self, now: float, snapshot: Mapping[str, Any], wake: list[float]) -> Contacts:
        """This step's contacts; the times their timers end go into `wake`."""
        s = self.settings
        bad: list[str] = []
        door = flood = flood_shed = on_batt = low = repl = False
        if s.door is not None and self._door is not None:
            door = self._door.update(now, self._contact(now, s.door.input, snapshot, bad))
            pending = self._door.pending_until()
            if pending is not None:
                wake.append(pending)
        if s.flood:
            flood = self._contact(now, s.flood.input, snapshot, bad)
            if flood:
                self._flood_seen = now
            if self._flood_seen is not None:
                end = self._flood_seen + s.flood.release_s
                flood_shed = flood or now < end
                if flood_shed and not flood:
                    wake.append(end)
        u = s.ups
        if u:
            on_batt = self._contact(now, u.on_battery, snapshot, bad)
            low = self._contact(now, u.battery_low, snapshot, bad)
            repl = self._contact(now, u.replace_battery, snapshot, bad)
        for since in self._bad_since.values():
            if now - since < s.sensor.confirm_s:
                wake.append(since + s.sensor.confirm_s)
        return Contacts(door, flood, flood_shed, on_batt, low, repl, tuple(bad))

    def _contact(self, now: float, point: str | None, snapshot: Mapping[str, Any], bad: list[str]) -> bool:
        """The contact's value; its last known value (initially False) while it has none."""
        if point is None:
            return False
        entry = snapshot.get(point)
        if entry is not None and entry[1] == "good" and entry[0].__class__ is bool:  # the common case
            if self._bad_since:
                self._bad_since.pop(point, None)
            self._last[point] = entry[0]
            return bool(entry[0])
        v = _bool_of(entry)
        if v is None:
            since = self._bad_since.setdefault(point, now)
            if now - since >= self.settings.sensor.confirm_s:
                bad.append(point)
            return self._last.get(point, False)
        self._bad_since.pop(point, None)
        self._last[point] = v
        return v

    def conditions(self, c: Contacts, messages: Mapping[str, str]) -> list[Condition]:
        """The contacts' alarm conditions (`messages`: alarm id -> its description)."""
        s, msg = self.settings, messages
        out = []
        if s.door:
            out.append(Condition("climate.door_open", s.door.input, "warning", c.door, msg["climate.door_open"]))
            out.append(
                Condition(
                    "climate.door_open_too_long", s.door.input, "warning", c.door, msg["climate.door_open_too_long"]
                )
            )
        if s.flood:
            out.append(Condition("climate.flood", s.flood.input, "critical", c.flood, msg["climate.flood"]))
        u = s.ups
        if u:
            for key, point, val in (
                ("on_battery", u.on_battery, c.on_battery),
                ("battery_low", u.battery_low, c.battery_low),
                ("replace_battery", u.replace_battery, c.replace_battery),
            ):
                if point:
                    aid = f"climate.ups_{key}"
                    out.append(Condition(aid, point, "critical" if key == "battery_low" else "warning", val, msg[aid]))
        out.append(
            Condition(
                "climate.input_failed",
                "climate",
                "warning",
                bool(c.bad),
                f"no good value from {', '.join(c.bad)}" if c.bad else msg["climate.input_failed"],
            )
        )
        return out


def _bool_of(entry: Any) -> bool | None:
    value, why = good_value(entry, math.inf)
    if why is not None or not isinstance(value, (bool, int)):
        return None
    return bool(value)
