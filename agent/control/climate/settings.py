"""The climate controller's settings as plain frozen dataclasses, with the defaults
(docs/climate.md explains each). `agent.config.climate` fills them from `[climate]`;
tests and tools build them directly. Points are process-image names
("climate.temperature", "dio.fan", "relays.relay_8"). No parsing, no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TRIP_C = 50.0  # °C (None in ClimateSettings.trip_c: no trip)


@dataclass(frozen=True)
class FanSettings:
    """One fan (or fan stage): a thermostat with hysteresis on the cabinet temperature."""

    name: str
    output: str
    on_c: float = 35.0
    off_c: float = 30.0
    min_on_s: float | None = None  # None: ClimateSettings.min_on_s
    min_off_s: float | None = None
    monitor: str | None = None  # optional tachometer (rpm, Hz) or current (A) point
    monitor_min: float | None = None  # window the monitor must be in while the fan runs
    monitor_max: float | None = None
    monitor_spinup_s: float = 10.0  # not judged this long after switching on
    monitor_confirm_s: float = 10.0  # out of the window this long = failed


@dataclass(frozen=True)
class HeaterSettings:
    """Anti-condensation heater: dew-point margin and RH rules, plus a minimum temperature."""

    output: str
    on_margin_k: float = 3.0  # on when T - Td < this ...
    off_margin_k: float = 5.0  # ... off when T - Td > this and RH < off_rh
    on_rh: float = 70.0  # on when RH > this
    off_rh: float = 60.0
    min_c: float = 5.0  # on at or below (electronics, batteries) ...
    min_band_k: float = 3.0  # ... off again at min_c + this
    max_c: float = 30.0  # never on at or above (the fans' range) ...
    max_band_k: float = 2.0  # ... allowed again at max_c - this
    min_on_s: float | None = None
    min_off_s: float | None = None


@dataclass(frozen=True)
class Limits:
    """Two-level over/under temperature and humidity alarms: (warning, critical)."""

    temperature_high: tuple[float, float] | None = (45.0, 55.0)
    temperature_low: tuple[float, float] | None = (0.0, -10.0)
    humidity_high: tuple[float, float] | None = (80.0, 90.0)
    humidity_low: tuple[float, float] | None = (10.0, 5.0)
    temperature_band_k: float = 2.0  # cleared this far back inside
    humidity_band: float = 5.0
    raise_delay_s: float = 60.0
    clear_delay_s: float = 60.0


@dataclass(frozen=True)
class SensorSettings:
    """When the T/RH sensor counts as failed."""

    max_age_s: float = 60.0  # a value older than this is stale
    confirm_s: float = 30.0  # a fault must last this long (the last good value bridges it)
    stuck_s: float = 14_400.0  # the same value for this long = stuck (0: off)
    temperature_range: tuple[float, float] = (-40.0, 80.0)
    humidity_range: tuple[float, float] = (0.0, 100.0)
    hold_s: float = 3_600.0  # heater by the last good reading for at most this long


@dataclass(frozen=True)
class FanCheck:
    """Indirect fan-failure detection: the temperature must fall while the fans run."""

    after_s: float = 1_200.0  # verdict this long after the fans started (0: off)
    drop_k: float = 0.5  # by at least this much below the start temperature
    ambient_margin_k: float = 2.0  # no verdict when T - ambient is below this (fans cannot cool)


@dataclass(frozen=True)
class DoorSettings:
    input: str
    debounce_s: float = 1.0
    open_too_long_s: float = 900.0
    stops_fans: bool = False  # fans off while the door is open (dust); not during a trip


@dataclass(frozen=True)
class FloodSettings:
    input: str
    shed: tuple[str, ...] = ()  # output points switched off while flooded (any output, not only climate's)
    release_s: float = 300.0  # loads stay shed this long after the flood input clears


@dataclass(frozen=True)
class UpsSettings:
    on_battery: str | None = None
    battery_low: str | None = None
    replace_battery: str | None = None
    shed_on_battery: tuple[str, ...] | None = None  # None: the heater
    shed_on_battery_low: tuple[str, ...] = ()  # shed in addition once the battery is low
    on_battery_delay_s: float = 5.0  # alarm delay (mains blips)


@dataclass(frozen=True)
class ClimateSettings:
    temperature: str
    humidity: str | None = None
    ambient: str | None = None  # optional outdoor temperature point (fan check)
    fans: tuple[FanSettings, ...] = ()
    heater: HeaterSettings | None = None
    min_on_s: float = 60.0
    min_off_s: float = 60.0
    trip_c: float | None = DEFAULT_TRIP_C  # over-temperature trip: all fans on, heater off, min times bypassed
    trip_band_k: float = 5.0
    limits: Limits = field(default_factory=Limits)
    sensor: SensorSettings = field(default_factory=SensorSettings)
    fan_check: FanCheck = field(default_factory=FanCheck)
    door: DoorSettings | None = None
    flood: FloodSettings | None = None
    ups: UpsSettings | None = None

    def input_points(self) -> tuple[str, ...]:
        """Every point the controller reads (what the wrapper puts in the snapshot)."""
        pts = [self.temperature, self.humidity, self.ambient]
        pts += [f.monitor for f in self.fans]
        if self.door:
            pts.append(self.door.input)
        if self.flood:
            pts.append(self.flood.input)
        if self.ups:
            pts += [self.ups.on_battery, self.ups.battery_low, self.ups.replace_battery]
        return tuple(dict.fromkeys(p for p in pts if p))

    def output_points(self) -> tuple[str, ...]:
        """Outputs the controller switches (fans, heater)."""
        pts = [f.output for f in self.fans] + ([self.heater.output] if self.heater else [])
        return tuple(dict.fromkeys(pts))
