"""Parsers for `[climate]` (the climate controller) and `[alarms]` (per-alarm overrides).

`parse_climate(section, points)` returns an `agent.control.climate.settings.ClimateSettings`
(or None when the section is absent or disabled); `parse_alarms(issues, raw,
known)` returns {alarm id: AlarmOverride}. Every problem is recorded in the shared
Issues (file, section, key, value, what is allowed), and references are checked:
sensor and contact points must exist, outputs and loads to shed must be writable
points. docs/climate.md is the reference for both sections.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from agent.config.schema import MISSING, NAME_RE, F, Issues, Section, key_name, number_pair, or_default
from agent.control.alarms.manager import SEVERITIES, AlarmOverride
from agent.control.climate.settings import (
    DEFAULT_TRIP_C,
    ClimateSettings,
    DoorSettings,
    FanCheck,
    FanSettings,
    FloodSettings,
    HeaterSettings,
    Limits,
    SensorSettings,
    UpsSettings,
)
from agent.model import Point

ALARM_ID_RE = r"[a-z][a-z0-9_-]*(\.[A-Za-z0-9_-]+)+"
TEMPERATURES = (-100.0, 200.0)  # °C: bounds of every temperature pair (limits, plausible range)
HUMIDITIES = (0.0, 100.0)  # %RH
_DEF = ClimateSettings("t")  # defaults


def _point_check(points: Mapping[str, Point], writable: bool = False) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        p = points.get(v)
        if p is None:
            return "no such point (a <device>.<point> of an enabled device, or dio.<input/output>)"
        if writable and not p.writable:
            return "not a writable point (an output or a relay coil)"
        return None

    return check


def _points_field(points: Mapping[str, Point], writable: bool, help_: str, default: Any = MISSING) -> F:
    kind = "writable points" if writable else "points"
    return F("str", default=default, check=_point_check(points, writable), help=f"{help_}; one of the config's {kind}")


def _range(
    s: Section, key: str, default: tuple[float, float], bounds: tuple[float, float], help_: str
) -> tuple[float, float]:
    """A (low, high) pair that cannot be turned off: the default when given badly."""
    v = number_pair(s, key, default, bounds, help_, "a < b")
    return default if v is None else v


def _points_list(
    s: Section, key: str, points: Mapping[str, Point], default: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    allowed = "a list of writable points (outputs or relay coils)"
    v = s.get(key, F("list", default=None if default is None else list(default), items="str", help=allowed))
    if v is None:
        return default
    check = _point_check(points, writable=True)
    for i, p in enumerate(v):
        msg = check(p)
        if msg:
            s.error(f"{key}[{i}]", p, allowed, msg)
    return tuple(dict.fromkeys(v))


def _delay(s: Section, key: str, default: float, max_s: float = 86_400.0, help_: str = "seconds") -> float:
    v = s.get(key, F("float", default=default, min=0, max=max_s, help=help_))
    return default if v is None else v


def _num(s: Section, key: str, default: float, lo: float, hi: float, help_: str = "") -> float:
    v = s.get(key, F("float", default=default, min=lo, max=hi, help=help_))
    return default if v is None else v


def _parse_fan(i: int, fs: Section, points: Mapping[str, Point]) -> FanSettings | None:
    d = FanSettings("", "")
    name = fs.get(
        "name", F("str", default=f"fan{i + 1}", pattern=NAME_RE, help="a letter, then letters, digits, _ or -")
    )
    out = fs.get("output", _points_field(points, True, "the fan's output"))
    on_c = _num(fs, "on_c", d.on_c, -40, 80, "°C, switched on at or above")
    off_c = _num(fs, "off_c", d.off_c, -40, 80, "°C, switched off at or below; below on_c")
    if off_c >= on_c:
        fs.error("off_c", off_c, f"a temperature below on_c ({on_c:g})", "off_c must be below on_c (the hysteresis)")
    min_on = fs.get("min_on_s", F("float", default=None, min=0, max=3600))
    min_off = fs.get("min_off_s", F("float", default=None, min=0, max=3600))
    mon = fs.get("monitor", _points_field(points, False, "tachometer or current point", default=None))
    mon_min = fs.get("monitor_min", F("float", default=None, help="lowest good monitor value while running"))
    mon_max = fs.get("monitor_max", F("float", default=None, help="highest good monitor value while running"))
    if (
        "monitor" in fs.data
        and mon_min is None
        and mon_max is None
        and "monitor_min" not in fs.data
        and "monitor_max" not in fs.data
    ):
        fs.error("monitor", fs.data["monitor"], "monitor_min and/or monitor_max with it", "a monitor needs its window")
    if "monitor" not in fs.data:
        for k in ("monitor_min", "monitor_max"):
            if k in fs.data:
                fs.error(k, fs.data[k], "only with monitor", "set monitor (the point) too")
    if mon_min is not None and mon_max is not None and mon_min >= mon_max:
        fs.error("monitor_max", mon_max, f"above monitor_min ({mon_min:g})", "empty window")
    spin = _delay(fs, "monitor_spinup_s", d.monitor_spinup_s, 600)
    confirm = _delay(fs, "monitor_confirm_s", d.monitor_confirm_s, 3600)
    fs.finish()
    if not out or not name:
        return None
    return FanSettings(name, out, on_c, off_c, min_on, min_off, mon, mon_min, mon_max, spin, confirm)


def _parse_heater(hs: Section, points: Mapping[str, Point]) -> HeaterSettings | None:
    d = HeaterSettings("")
    out = hs.get("output", _points_field(points, True, "the heater's output"))
    on_m = _num(hs, "on_margin_k", d.on_margin_k, 0, 30, "K: on when T - dew point is below")
    off_m = _num(hs, "off_margin_k", d.off_margin_k, 0, 30, "K: off when T - dew point is above (and RH < off_rh)")
    on_rh = _num(hs, "on_rh", d.on_rh, 0, 100, "%RH: on above")
    off_rh = _num(hs, "off_rh", d.off_rh, 0, 100, "%RH: off below (and margin > off_margin_k)")
    min_c = _num(hs, "min_c", d.min_c, -40, 40, "°C: on at or below")
    min_band = _num(hs, "min_band_k", d.min_band_k, 0.1, 20, "K: off again at min_c + this")
    max_c = _num(hs, "max_c", d.max_c, -20, 80, "°C: never on at or above")
    max_band = _num(hs, "max_band_k", d.max_band_k, 0.1, 20, "K: allowed again at max_c - this")
    if off_m <= on_m:
        hs.error("off_margin_k", off_m, f"more than on_margin_k ({on_m:g})", "the margins need a hysteresis")
    if off_rh >= on_rh:
        hs.error("off_rh", off_rh, f"less than on_rh ({on_rh:g})", "the RH limits need a hysteresis")
    if max_c - max_band <= min_c + min_band:
        hs.error(
            "max_c",
            max_c,
            f"above min_c + min_band_k + max_band_k ({min_c + min_band + max_band:g})",
            "the heater's blocking band overlaps its minimum-temperature band",
        )
    min_on = hs.get("min_on_s", F("float", default=None, min=0, max=3600))
    min_off = hs.get("min_off_s", F("float", default=None, min=0, max=3600))
    hs.finish()
    if not out:
        return None
    return HeaterSettings(out, on_m, off_m, on_rh, off_rh, min_c, min_band, max_c, max_band, min_on, min_off)


def _parse_limits(ls: Section) -> Limits:
    d = Limits()
    lim = Limits(
        temperature_high=number_pair(
            ls, "temperature_high", d.temperature_high, TEMPERATURES, "°C (warning, critical)", "a < b", True
        ),
        temperature_low=number_pair(
            ls, "temperature_low", d.temperature_low, TEMPERATURES, "°C (warning, critical)", "a > b", True
        ),
        humidity_high=number_pair(
            ls, "humidity_high", d.humidity_high, HUMIDITIES, "%RH (warning, critical)", "a < b", True
        ),
        humidity_low=number_pair(
            ls, "humidity_low", d.humidity_low, HUMIDITIES, "%RH (warning, critical)", "a > b", True
        ),
        temperature_band_k=_num(ls, "temperature_band_k", d.temperature_band_k, 0.1, 20, "K: cleared this far inside"),
        humidity_band=_num(ls, "humidity_band", d.humidity_band, 0.1, 50, "%RH: cleared this far inside"),
        raise_delay_s=_delay(ls, "raise_delay_s", d.raise_delay_s),
        clear_delay_s=_delay(ls, "clear_delay_s", d.clear_delay_s),
    )
    ls.finish()
    return lim


def _parse_sensor(ss: Section) -> SensorSettings:
    d = SensorSettings()
    sen = SensorSettings(
        max_age_s=_num(ss, "max_age_s", d.max_age_s, 1, 86_400, "seconds; older values are stale"),
        confirm_s=_delay(ss, "confirm_s", d.confirm_s, 3600, "seconds a fault must last"),
        stuck_s=_delay(ss, "stuck_s", d.stuck_s, 7 * 86_400, "seconds of one unchanged value; 0 = off"),
        temperature_range=_range(ss, "temperature_range", d.temperature_range, TEMPERATURES, "°C"),
        humidity_range=_range(ss, "humidity_range", d.humidity_range, HUMIDITIES, "%RH"),
        hold_s=_delay(ss, "hold_s", d.hold_s, 7 * 86_400, "seconds the last good reading drives the heater"),
    )
    ss.finish()
    return sen


def parse_climate(s: Section, points: Mapping[str, Point]) -> ClimateSettings | None:
    d = _DEF
    enabled = s.get("enabled", F("bool", default=True))
    temp = s.get("temperature", _points_field(points, False, "the cabinet temperature (°C)"))
    hum = s.get("humidity", _points_field(points, False, "the cabinet relative humidity (%)", default=None))
    amb = s.get("ambient", _points_field(points, False, "outdoor temperature (°C), for the fan check", default=None))
    min_on = _num(s, "min_on_s", d.min_on_s, 0, 3600, "seconds an output stays on at least")
    min_off = _num(s, "min_off_s", d.min_off_s, 0, 3600, "seconds an output stays off at least")
    trip_on = s.get("trip", F("bool", default=True, help="over-temperature trip"))
    trip_c = _num(s, "trip_c", DEFAULT_TRIP_C, 0, 100, "°C: all fans on, heater off, minimum times bypassed")
    trip_band = _num(s, "trip_band_k", d.trip_band_k, 0.1, 30, "K: the trip ends this far below trip_c")

    fans = _parse_fans(s, points)
    heater = _parse_heater(s.sub("heater"), points) if "heater" in s.data else None
    s.used.add("heater")
    limits = _parse_limits(s.sub("limits"))
    sensor = _parse_sensor(s.sub("sensor"))
    fc = _parse_fan_check(s.sub("fan_check"))
    door = _parse_door(s.sub("door"), points) if "door" in s.data else None
    s.used.add("door")
    flood = _parse_flood(s.sub("flood"), points) if "flood" in s.data else None
    s.used.add("flood")
    ups = _parse_ups(s.sub("ups"), points) if "ups" in s.data else None
    s.used.add("ups")
    _check_outputs(s, fans, heater)
    if heater and trip_on and trip_c <= heater.max_c:
        s.error(
            "trip_c", trip_c, f"above heater.max_c ({heater.max_c:g})", "the trip would sit inside the heater's range"
        )
    s.finish()
    if enabled is False:
        return None
    return ClimateSettings(
        temp or "",
        hum,
        amb,
        tuple(fans),
        heater,
        min_on,
        min_off,
        trip_c if trip_on else None,
        trip_band,
        limits,
        sensor,
        fc,
        door,
        flood,
        ups,
    )


def _parse_fans(s: Section, points: Mapping[str, Point]) -> list[FanSettings]:
    """[[climate.fans]] tables."""
    fans: list[FanSettings] = []
    raw_fans = s.get("fans", F("list", default=[], help="[[climate.fans]] tables"))
    for i, t in enumerate(raw_fans or []):
        if not isinstance(t, Mapping):
            s.error(f"fans[{i}]", t, "a table ([[climate.fans]])", "must be a table")
            continue
        fan = _parse_fan(i, Section(s.issues, f"{s.name}.fans[{i}]", t), points)
        if fan is not None:
            fans.append(fan)
    return fans


def _parse_fan_check(fcs: Section) -> FanCheck:
    d = _DEF.fan_check
    fc = FanCheck(
        after_s=_delay(fcs, "after_s", d.after_s, 86_400, "seconds; 0 = off"),
        drop_k=_num(fcs, "drop_k", d.drop_k, 0, 20, "K the temperature must fall"),
        ambient_margin_k=_num(fcs, "ambient_margin_k", d.ambient_margin_k, 0, 20),
    )
    fcs.finish()
    return fc


def _check_outputs(s: Section, fans: list[FanSettings], heater: HeaterSettings | None) -> None:
    """Fan names unique; each output driven by one fan or the heater."""
    names: dict[str, str] = {}
    outs: dict[str, str] = {}
    for i, f in enumerate(fans):
        if f.name in names:
            s.error(f"fans[{i}].name", f.name, "a name not used by another fan", f"used by {names[f.name]}")
        names[f.name] = f"fans[{i}]"
    for key, out in [(f"fans[{i}].output", f.output) for i, f in enumerate(fans)] + (
        [("heater.output", heater.output)] if heater else []
    ):
        if out in outs:
            s.error(key, out, "an output not used by another fan or the heater", f"already used by {outs[out]}")
        outs[out] = key


def _parse_door(ds: Section, points: Mapping[str, Point]) -> DoorSettings | None:
    d = DoorSettings("")
    inp = ds.get("input", _points_field(points, False, "the door contact (true = open)"))
    door = DoorSettings(
        inp or "",
        _delay(ds, "debounce_s", d.debounce_s, 60),
        _delay(ds, "open_too_long_s", d.open_too_long_s, 7 * 86_400),
        or_default(ds.get("stops_fans", F("bool", default=False, help="fans off while the door is open")), False),
    )
    ds.finish()
    return door if inp else None


def _parse_flood(fs: Section, points: Mapping[str, Point]) -> FloodSettings | None:
    inp = fs.get("input", _points_field(points, False, "the flood/leak contact (true = water)"))
    flood = FloodSettings(
        inp or "",
        _points_list(fs, "shed", points, ()) or (),
        _delay(
            fs, "release_s", FloodSettings("").release_s, 86_400, "seconds the loads stay shed after the water is gone"
        ),
    )
    fs.finish()
    return flood if inp else None


def _parse_ups(us: Section, points: Mapping[str, Point]) -> UpsSettings:
    d = UpsSettings()
    ups = UpsSettings(
        on_battery=us.get("on_battery", _points_field(points, False, "UPS 'on battery' contact", default=None)),
        battery_low=us.get("battery_low", _points_field(points, False, "UPS 'battery low' contact", default=None)),
        replace_battery=us.get(
            "replace_battery", _points_field(points, False, "UPS 'replace battery' contact", default=None)
        ),
        shed_on_battery=_points_list(us, "shed_on_battery", points, None),
        shed_on_battery_low=_points_list(us, "shed_on_battery_low", points, ()) or (),
        on_battery_delay_s=_delay(us, "on_battery_delay_s", d.on_battery_delay_s, 3600),
    )
    if not any(k in us.data for k in ("on_battery", "battery_low", "replace_battery")):
        us.error("on_battery", MISSING, "on_battery, battery_low and/or replace_battery", "no UPS contact given")
    us.finish()
    return ups


def parse_alarms(issues: Issues, data: Any, known: Mapping[str, str]) -> dict[str, AlarmOverride]:
    """[alarms."<id>"] tables. `known`: alarm ids of configured controllers -> what they are.
    An id under a known controller prefix (e.g. "climate.") must be one of its alarms;
    others (e.g. lighting's, defined at run time) are accepted as written."""
    out: dict[str, AlarmOverride] = {}
    if data is MISSING or data is None:
        return out
    if not isinstance(data, Mapping):
        issues.add("", "alarms", data, 'a table of [alarms."<alarm id>"] tables', "[alarms] must be a table")
        return out
    prefixes = {k.split(".", 1)[0] + "." for k in known}
    for aid, table in data.items():
        if not re.fullmatch(ALARM_ID_RE, aid):
            issues.add(
                "alarms",
                key_name(aid),
                MISSING,
                'an alarm id such as "climate.door_open" (quote it in the table name)',
                "bad alarm id",
            )
            continue
        if aid not in known and any(aid.startswith(p) for p in prefixes):
            close = difflib.get_close_matches(aid, sorted(known), n=1)
            issues.add(
                "alarms",
                aid,
                MISSING,
                ", ".join(sorted(k for k in known if aid.split(".")[0] in k)),
                f"no such alarm{f'; did you mean {close[0]!r}?' if close else ''}",
            )
            continue
        s = Section(issues, f'alarms."{aid}"', table if isinstance(table, Mapping) else {})
        if not isinstance(table, Mapping):
            issues.add("alarms", aid, table, "a table", f'[alarms."{aid}"] must be a table')
            continue
        out[aid] = AlarmOverride(
            severity=s.get("severity", F("str", default=None, choices=SEVERITIES)),
            raise_delay_s=s.get(
                "raise_delay_s", F("float", default=None, min=0, max=7 * 86_400, help="seconds the condition must hold")
            ),
            clear_delay_s=s.get(
                "clear_delay_s",
                F("float", default=None, min=0, max=7 * 86_400, help="seconds the condition must be gone"),
            ),
            latching=s.get("latching", F("bool", default=None, help="stays until acknowledged")),
            enabled=s.get("enabled", F("bool", default=None)),
        )
        s.finish()
    return out
