"""The climate controller's alarms: ids, severities, default delays, hysteresis.

| id | severity | default delays / behaviour |
|---|---|---|
| climate.temperature_high.warning / .critical | warning / critical | limits (45 / 55 °C), cleared 2 K lower |
| climate.temperature_low.warning / .critical | warning / critical | limits (0 / -10 °C), cleared 2 K higher |
| climate.humidity_high.warning / .critical | warning / critical | limits (80 / 90 %RH), cleared 5 %RH lower |
| climate.humidity_low.warning / .critical | warning / critical | limits (10 / 5 %RH), cleared 5 %RH higher |
| climate.temperature_sensor_failed | critical | raised when the fault is confirmed; cleared 60 s after recovery |
| climate.humidity_sensor_failed | warning | as above |
| climate.fan_failed | warning | indirect check: temperature not falling while the fans run |
| climate.fan_failed.<fan> | warning | the fan's tachometer/current monitor out of its window |
| climate.door_open | warning | debounced door contact (the controller debounces) |
| climate.door_open_too_long | warning | raise delay = door.open_too_long_s |
| climate.flood | critical | immediate, latching until acknowledged |
| climate.ups_on_battery | warning | raise delay ups.on_battery_delay_s (5 s) |
| climate.ups_battery_low | critical | immediate |
| climate.ups_replace_battery | warning | immediate |
| climate.input_failed | warning | a door/flood/UPS contact has had no good value for sensor.confirm_s |

The limit alarms raise and clear after 60 s (limits.raise_delay_s, clear_delay_s). They
are value alarms: the controller sends the measured value and the AlarmManager applies
the hysteresis of the definition (so it survives a restart).
"""

from __future__ import annotations

from agent.control.alarms.manager import AlarmDef, Hysteresis
from agent.control.climate.settings import ClimateSettings


def limit_alarms(s: ClimateSettings) -> list[tuple[str, str, float, float, str, str]]:
    """(alarm id, point, raise at, clear at, severity, message) of the limit alarms."""
    lim = s.limits
    out = []
    for quantity, point, band, unit in (
        ("temperature", s.temperature, lim.temperature_band_k, "°C"),
        ("humidity", s.humidity, lim.humidity_band, "%RH"),
    ):
        if point is None:
            continue
        for side, sign in (("high", -1.0), ("low", 1.0)):
            levels = getattr(lim, f"{quantity}_{side}")
            if levels is None:
                continue
            for level, at in zip(("warning", "critical"), levels, strict=True):  # Limits: (warning, critical)
                word = "at or above" if side == "high" else "at or below"
                out.append(
                    (
                        f"climate.{quantity}_{side}.{level}",
                        point,
                        at,
                        at + sign * band,
                        level,
                        f"cabinet {quantity} {side}: {word} {at:g} {unit}",
                    )
                )
    return out


def contact_points(s: ClimateSettings) -> tuple[str, ...]:
    pts = [s.door.input if s.door else None, s.flood.input if s.flood else None]
    if s.ups:
        pts += [s.ups.on_battery, s.ups.battery_low, s.ups.replace_battery]
    return tuple(p for p in pts if p)


def alarm_definitions(s: ClimateSettings) -> list[AlarmDef]:
    """The alarms a controller with settings `s` raises, with their default delays."""
    return _limit_definitions(s) + _sensor_definitions(s) + _fan_definitions(s) + _contact_definitions(s)


def _limit_definitions(s: ClimateSettings) -> list[AlarmDef]:
    lim = s.limits
    return [
        AlarmDef(
            aid, point, sev, lim.raise_delay_s, lim.clear_delay_s, hysteresis=Hysteresis(at, clear), description=msg
        )
        for aid, point, at, clear, sev, msg in limit_alarms(s)
    ]


def _sensor_definitions(s: ClimateSettings) -> list[AlarmDef]:
    defs = [
        AlarmDef(
            "climate.temperature_sensor_failed",
            s.temperature,
            "critical",
            0.0,
            60.0,
            description="temperature sensor failed: fans on, heater by the last good reading",
        )
    ]
    if s.humidity:
        defs.append(
            AlarmDef(
                "climate.humidity_sensor_failed",
                s.humidity,
                "warning",
                0.0,
                60.0,
                description="humidity sensor failed: heater by the last dew point",
            )
        )
    return defs


def _fan_definitions(s: ClimateSettings) -> list[AlarmDef]:
    defs = []
    if s.fans and s.fan_check.after_s > 0:
        defs.append(
            AlarmDef(
                "climate.fan_failed", "climate", "warning", description="temperature not falling while the fans run"
            )
        )
    for f in s.fans:
        if f.monitor:
            defs.append(
                AlarmDef(
                    f"climate.fan_failed.{f.name}",
                    f.monitor,
                    "warning",
                    description=f"fan {f.name}: monitor out of its window",
                )
            )
    return defs


def _contact_definitions(s: ClimateSettings) -> list[AlarmDef]:
    defs = []
    if s.door:
        defs.append(AlarmDef("climate.door_open", s.door.input, "warning", description="cabinet door open"))
        defs.append(
            AlarmDef(
                "climate.door_open_too_long",
                s.door.input,
                "warning",
                s.door.open_too_long_s,
                description=f"cabinet door open longer than {s.door.open_too_long_s:g} s",
            )
        )
    if s.flood:
        defs.append(
            AlarmDef("climate.flood", s.flood.input, "critical", latching=True, description="water in the cabinet")
        )
    u = s.ups
    if u:
        for key, point, sev, delay, msg in (
            ("on_battery", u.on_battery, "warning", u.on_battery_delay_s, "mains lost: UPS on battery"),
            ("battery_low", u.battery_low, "critical", 0.0, "UPS battery low"),
            ("replace_battery", u.replace_battery, "warning", 0.0, "UPS battery needs replacing"),
        ):
            if point:
                defs.append(AlarmDef(f"climate.ups_{key}", point, sev, delay, description=msg))
    if contact_points(s):
        defs.append(
            AlarmDef(
                "climate.input_failed",
                "climate",
                "warning",
                0.0,
                30.0,
                description="a door/flood/UPS contact input has no good value",
            )
        )
    return defs
