"""The plant model: the physics of the simulated street cabinet.

Owns: daylight at the site (lux), outdoor weather (temperature, humidity), the
cabinet's air (temperature, humidity), the lighting segments' electrical values and
energy counters, and the UPS state. Pure code: no I/O, never reads a clock; the
simulator calls `step(now)` with wall time from its clock and reads the outputs.
Deterministic: the same seed, site, start and sequence of inputs and steps give the
same outputs.

The model, and what it simplifies:

* Sun: `astral.sun.elevation` (refraction included; never raises, also at polar
  latitudes). Ambient illuminance (`clear_sky_lux`), empirical clear-sky fit:
  sun up: 400 + 110 000 * sin(h)^1.15 lx (~95 klx at 60 deg, ~400 lx at the horizon);
  twilight: log10(lux) linear in h from 400 lx at 0 deg to 3 lx at -6 deg (civil
  twilight end), continued until the night floor of 0.1 lx (skyglow, ~-9.6 deg).
  Clouds (`Weather.cloud`, 0..1) scale daylight by Kasten-Czeplak 1 - 0.75 * c^3.4.
* Ambient: mean +- swing with a two-half-cosine day: coldest at sunrise (clamped to
  3..10 h before solar noon; polar days use noon - 10 h), warmest 2.5 h after solar
  noon (astral `noon`/`sunrise` per local date in the site's time zone). RH runs
  opposite: mean_rh + swing_rh when coldest, mean_rh - swing_rh when warmest.
  Optional day-to-day offset of the mean (gaussian, seeded per local date).
  Weather curves (`Weather.temperature`, `.humidity`, `.cloud_cover`: points (wall time,
  value) joined by straight lines, flat before the first and after the last) replace
  the day curve of what they give: a rig scenario's [weather] (docs/rig.md).
* Cabinet temperature, first order, solved exactly per sub-step (stable for any step):
  C dT/dt = P_elec + P_heater + P_solar - G (T - T_amb), G = G_wall (+ G_fan if the fan
  runs) (+ G_door if the door is open); P_solar = solar_gain_w * max(0, sin h) *
  cloud factor. Constants in `Cabinet` (C = 25 kJ/K, G_wall 16 W/K -> tau ~26 min,
  fan +40 W/K, door +150 W/K, electronics 40 W, heater 100 W, solar 200 W).
* Cabinet humidity: the water-vapour pressure e (what stays constant when air at
  constant pressure is heated) relaxes toward the ambient e with tau 2 h sealed, 10 min
  with the fan, 2 min with the door open; e is capped at saturation (condensation
  removes water). RH = 100 e / E_w(T), E_w Magnus 6.112 * exp(17.62 T / (243.12 + T)) hPa,
  so heating lowers RH. No ice-phase constants, no rain, no wind.
* Mains: the heater and the lighting need mains; the fan and the electronics run on
  the DC-UPS. `mains_ok = False` -> UPS on battery; battery-low after
  `Cabinet.ups_low_after_s` on battery (used time recharges at 1/5 of real time).
  `flood` and `ups_replace_battery` are plain flags for the simulated inputs.
* Meters: supply voltage per phase 230 V + a slow AR(1) wander and noise, 50 Hz +
  small wander (drawn once per `step`, so results depend on the seed and the step
  sequence). LED loads are constant-power: P = load_w * f(level), f = 0.1 + 0.9 *
  level/100 (driver losses give the floor), 0 at level 0; PF drops with dimming
  (pf - 0.15 * (1 - level/100)). Current = P_phase / (V * PF). Reactive power is
  reported positive. Energy integrates P exactly (inputs are constant within a step).
  Mains off -> 0 V, 0 Hz, no current. A cut cable (`cut_cable`) -> the supply voltage
  as before, no current. Counters start at 0 (`set_energy` for others).
* Sub-steps of at most `SUBSTEP_S` = 10 s; a jump longer than `MAX_CATCHUP_S` (2 days,
  e.g. a clock set by GPS) simulates only its last 2 days of weather and cabinet
  climate but counts energy and battery time over all of it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from astral import Observer
from astral.sun import elevation, noon, sunrise

SUBSTEP_S = 10.0
MAX_CATCHUP_S = 2 * 86_400.0
NIGHT_LUX = 0.1
SUNSET_LUX = 400.0
CIVIL_DUSK_LUX = 3.0
HIGH_SUN_LUX = 110_000.0
NOMINAL_V = 230.0
NOMINAL_HZ = 50.0
DIM_FLOOR = 0.1  # LED driver: power fraction at the lowest level above 0
UPS_RECHARGE_RATIO = 5.0  # seconds of mains to recharge one second on battery


@dataclass(frozen=True)
class Site:
    latitude: float
    longitude: float
    elevation: float = 0.0
    timezone: str = "UTC"

    @property
    def observer(self) -> Observer:
        return Observer(latitude=self.latitude, longitude=self.longitude, elevation=self.elevation)


@dataclass(frozen=True)
class Circuit:
    """A lighting segment behind one contactor (and one meter)."""

    name: str
    load_w: float
    phases: int = 1
    power_factor: float = 0.95
    dimmable: bool = False


Curve = tuple[tuple[float, float], ...]  # (wall time, value), times increasing


@dataclass(frozen=True)
class Weather:
    mean_c: float = 12.0
    swing_c: float = 5.0  # ambient = mean_c +- swing_c over the day
    mean_rh: float = 70.0
    swing_rh: float = 15.0  # RH = mean_rh -+ swing_rh (high when cold)
    cloud: float = 0.0  # cloud cover 0 (clear) .. 1 (overcast)
    day_to_day_c: float = 0.0  # std dev of a per-day offset of the mean (seeded)
    temperature: Curve = ()  # outdoor °C over time; () = the day curve above
    humidity: Curve = ()  # outdoor %RH over time; () = the day curve above
    cloud_cover: Curve = ()  # cloud cover over time; () = `cloud`

    def __post_init__(self) -> None:
        for name, lo, hi in (("temperature", -90.0, 90.0), ("humidity", 0.0, 100.0), ("cloud_cover", 0.0, 1.0)):
            pts = getattr(self, name)
            for i, (t, v) in enumerate(pts):
                if not (math.isfinite(t) and math.isfinite(v) and lo <= v <= hi):
                    raise ValueError(f"weather {name}[{i}] = ({t}, {v}): a finite time and a value {lo:g}..{hi:g}")
                if i and t <= pts[i - 1][0]:
                    raise ValueError(f"weather {name}[{i}]: time {t} not after the previous point's")


def curve_at(points: Curve, t: float) -> float:
    """The value of a curve at t: straight lines between its points, flat outside them."""
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


@dataclass(frozen=True)
class Cabinet:
    """Thermal and UPS constants of the simulated cabinet."""

    heat_capacity_j_per_k: float = 25_000.0
    wall_w_per_k: float = 16.0
    fan_w_per_k: float = 40.0
    door_w_per_k: float = 150.0
    electronics_w: float = 40.0
    heater_w: float = 100.0
    solar_gain_w: float = 200.0  # with the sun overhead, clear sky
    humidity_tau_s: float = 7_200.0
    humidity_tau_fan_s: float = 600.0
    humidity_tau_door_s: float = 120.0
    ups_low_after_s: float = 1_800.0


@dataclass
class MeterValues:
    """What an energy meter on one segment reads (keys map to meter registers)."""

    voltage: list[float]
    current: list[float]
    power: list[float]
    apparent_power: float
    reactive_power: float
    power_factor: float
    frequency: float
    import_energy_kwh: float
    export_energy_kwh: float
    total_energy_kwh: float


# ---- pure helpers ----------------------------------------------------------------------


def clear_sky_lux(elevation_deg: float) -> float:
    """Ambient illuminance (lx) under a clear sky for a solar elevation in degrees."""
    if elevation_deg >= 0.0:
        return SUNSET_LUX + HIGH_SUN_LUX * math.sin(math.radians(elevation_deg)) ** 1.15
    slope = (math.log10(SUNSET_LUX) - math.log10(CIVIL_DUSK_LUX)) / 6.0
    return max(NIGHT_LUX, SUNSET_LUX * 10.0 ** (slope * elevation_deg))


def cloud_factor(cloud: float) -> float:
    """Kasten-Czeplak: share of clear-sky daylight left under cloud cover 0..1."""
    return 1.0 - 0.75 * min(1.0, max(0.0, cloud)) ** 3.4


def saturation_vp_hpa(t_c: float) -> float:
    """Magnus (Sonntag 1990 constants) saturation vapour pressure over water, hPa."""
    return 6.112 * math.exp(17.62 * t_c / (243.12 + t_c))


def dew_point_from_vp(e_hpa: float) -> float:
    g = math.log(max(e_hpa, 1e-6) / 6.112)
    return 243.12 * g / (17.62 - g)


def dew_point_c(t_c: float, rh: float) -> float:
    return dew_point_from_vp(max(rh, 0.01) / 100.0 * saturation_vp_hpa(t_c))


def _cos_ramp(x: float) -> float:
    """0 -> 0, 1 -> 1, smooth (half cosine)."""
    return (1.0 - math.cos(math.pi * min(1.0, max(0.0, x)))) / 2.0


class Plant:
    """The simulated cabinet and its surroundings; see the module docstring."""

    def __init__(
        self,
        site: Site,
        circuits: Sequence[Circuit] = (),
        *,
        seed: int = 0,
        start: float,
        weather: Weather | None = None,
        cabinet: Cabinet | None = None,
    ) -> None:
        try:
            self._tz = ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"site timezone {site.timezone!r} is not a known IANA zone") from exc
        if not -90.0 <= site.latitude <= 90.0 or not -180.0 <= site.longitude <= 180.0:
            raise ValueError(f"site position {site.latitude}, {site.longitude} is out of range")
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite wall time, got {start}")
        self.site = site
        self.weather = weather or Weather()
        self.cabinet = cabinet or Cabinet()
        self.seed = seed
        self._obs = site.observer
        self._rng = random.Random(seed)
        self._days: dict[dt.date, tuple[float, float, float]] = {}
        self._circuits: dict[str, Circuit] = {}
        self._on: dict[str, bool] = {}
        self._level: dict[str, float] = {}
        self._kwh: dict[str, float] = {}
        self._failed: dict[str, float] = {}  # fraction of a circuit's lamps that are dead
        self._stuck: dict[str, bool] = {}  # contactor welded closed (True) or jammed open (False)
        self._cut: set[str] = set()  # the cable behind the meter cut: supply there, no current
        for c in circuits:
            if c.name in self._circuits:
                raise ValueError(f"circuit {c.name!r} is defined twice")
            if c.phases not in (1, 3) or c.load_w < 0 or not 0.0 < c.power_factor <= 1.0:
                raise ValueError(f"circuit {c.name!r}: phases must be 1 or 3, load_w >= 0, 0 < power_factor <= 1")
            self._circuits[c.name] = c
            self._on[c.name], self._level[c.name], self._kwh[c.name] = False, 100.0, 0.0
        # inputs
        self.fan_on = False
        self.fan_failed = False  # fault injection: the fan is switched but does not move air
        self.heater_on = False
        self.door_open = False
        self.flood = False
        self.mains_ok = True
        self.ups_replace_battery = False
        # state
        self.now = start
        self._wander_v = [0.0, 0.0, 0.0]
        self._wander_hz = 0.0
        self._noise_v = [0.0, 0.0, 0.0]
        self._battery_used_s = 0.0
        self._outdoor(start)
        p, g = self._heat_and_conductance()
        self.cabinet_c = self.ambient_c + p / g
        self._cab_vp = min(self._amb_vp, saturation_vp_hpa(self.cabinet_c))

    # ---- inputs --------------------------------------------------------------------

    def _circuit(self, name: str) -> Circuit:
        try:
            return self._circuits[name]
        except KeyError:
            raise KeyError(f"no circuit {name!r} (known: {', '.join(self._circuits) or 'none'})") from None

    def set_circuit(self, name: str, on: bool) -> None:
        self._circuit(name)
        self._on[name] = bool(on)

    def set_dim(self, name: str, level_pct: float) -> None:
        if not self._circuit(name).dimmable:
            raise ValueError(f"circuit {name!r} is not dimmable")
        if not math.isfinite(level_pct):
            raise ValueError(f"dim level for {name!r} must be a number 0..100, got {level_pct}")
        self._level[name] = min(100.0, max(0.0, float(level_pct)))

    def set_energy(self, name: str, kwh: float) -> None:
        """Set a meter's import counter (a meter that has run for years, a replaced one)."""
        self._circuit(name)
        self._kwh[name] = float(kwh)

    def fail_lamps(self, name: str, fraction: float) -> None:
        """Fault injection: `fraction` (0..1) of the circuit's lamps draw nothing."""
        self._circuit(name)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"failed fraction for {name!r} must be 0..1, got {fraction}")
        self._failed[name] = float(fraction)

    def stick_contactor(self, name: str, closed: bool | None) -> None:
        """Fault injection: the contactor stays closed (True) or open (False) whatever its
        relay does; None repairs it."""
        self._circuit(name)
        if closed is None:
            self._stuck.pop(name, None)
        else:
            self._stuck[name] = bool(closed)

    def cut_cable(self, name: str, cut: bool) -> None:
        """Fault injection: the circuit's cable is cut downstream of its meter (copper theft):
        the contactor and the supply voltage are as before, but no current flows, at any
        level. Unlike `fail_lamps(name, 1.0)` it keeps the lamp failures it had for after
        the repair (`cut=False`); unlike a contactor stuck open the relay still switches."""
        self._circuit(name)
        if cut:
            self._cut.add(name)
        else:
            self._cut.discard(name)

    def cable_cut(self, name: str) -> bool:
        """Is the circuit's cable cut (cut_cable)?"""
        self._circuit(name)
        return name in self._cut

    def failed_share(self, name: str) -> float:
        """The share of the circuit's lamps made to fail (fail_lamps), 0..1."""
        self._circuit(name)
        return self._failed.get(name, 0.0)

    def stuck(self, name: str) -> str | None:
        """ "closed" or "open" while the contactor is stuck (stick_contactor), else None."""
        self._circuit(name)
        stuck = self._stuck.get(name)
        return None if stuck is None else "closed" if stuck else "open"

    def circuit_on(self, name: str) -> bool:
        """Is the circuit energized (its contactor closed)?"""
        self._circuit(name)
        return self._stuck.get(name, self._on[name])

    def dim_level(self, name: str) -> float:
        self._circuit(name)
        return self._level[name]

    @property
    def circuits(self) -> tuple[str, ...]:
        return tuple(self._circuits)

    # ---- outputs -------------------------------------------------------------------

    @property
    def cabinet_rh(self) -> float:
        return min(100.0, 100.0 * self._cab_vp / saturation_vp_hpa(self.cabinet_c))

    @property
    def cabinet_dew_point_c(self) -> float:
        return dew_point_from_vp(self._cab_vp)

    @property
    def ups_on_battery(self) -> bool:
        return not self.mains_ok

    @property
    def ups_battery_low(self) -> bool:
        return not self.mains_ok and self._battery_used_s >= self.cabinet.ups_low_after_s

    def circuit_energy_kwh(self, name: str) -> float:
        """Energy a segment has drawn since the start (its meter's import counter)."""
        self._circuit(name)
        return self._kwh[name]

    def circuit_power_w(self, name: str) -> float:
        """Active power drawn by a segment now (0 when off or without mains)."""
        c = self._circuit(name)
        if not (self.circuit_on(name) and self.mains_ok) or name in self._cut:
            return 0.0
        load = c.load_w * (1.0 - self._failed.get(name, 0.0))
        if not c.dimmable:
            return load
        level = self._level[name]
        return 0.0 if level <= 0.0 else load * (DIM_FLOOR + (1.0 - DIM_FLOOR) * level / 100.0)

    def meter(self, circuit: str) -> MeterValues:
        c = self._circuit(circuit)
        kwh = self._kwh[circuit]
        if not self.mains_ok:
            zeros = [0.0] * c.phases
            return MeterValues(zeros, list(zeros), list(zeros), 0.0, 0.0, 1.0, 0.0, kwh, 0.0, kwh)
        volts = [NOMINAL_V + self._wander_v[i] + self._noise_v[i] for i in range(c.phases)]
        hz = NOMINAL_HZ + self._wander_hz
        p = self.circuit_power_w(circuit)
        if p <= 0.0:
            zeros = [0.0] * c.phases
            return MeterValues(volts, zeros, list(zeros), 0.0, 0.0, 1.0, hz, kwh, 0.0, kwh)
        level = self._level[circuit] if c.dimmable else 100.0
        pf = max(0.5, c.power_factor - 0.15 * (1.0 - level / 100.0))
        per_phase = p / c.phases
        s = p / pf
        return MeterValues(
            voltage=volts,
            current=[per_phase / (v * pf) for v in volts],
            power=[per_phase] * c.phases,
            apparent_power=s,
            reactive_power=math.sqrt(max(0.0, s * s - p * p)),
            power_factor=pf,
            frequency=hz,
            import_energy_kwh=kwh,
            export_energy_kwh=0.0,
            total_energy_kwh=kwh,
        )

    # ---- physics -------------------------------------------------------------------

    def step(self, now: float) -> None:
        """Advance to wall time `now`; times not after the last step are ignored."""
        if not math.isfinite(now) or now <= self.now:
            return
        span = now - self.now
        for name in self._circuits:  # inputs are constant within a step: exact integral
            self._kwh[name] += self.circuit_power_w(name) * span / 3.6e6
        if self.mains_ok:
            self._battery_used_s = max(0.0, self._battery_used_s - span / UPS_RECHARGE_RATIO)
        else:
            self._battery_used_s += span
        t = max(self.now, now - MAX_CATCHUP_S)
        n = max(1, math.ceil((now - t) / SUBSTEP_S - 1e-9))
        dt_sub = (now - t) / n
        for i in range(1, n + 1):
            self._substep(t + i * dt_sub if i < n else now, dt_sub)
        self.now = now
        rng, k_v = self._rng, 0.98
        for i in range(3):
            self._wander_v[i] = max(-8.0, min(8.0, self._wander_v[i] * k_v + rng.gauss(0.0, 0.25)))
            self._noise_v[i] = rng.gauss(0.0, 0.3)
        self._wander_hz = max(-0.1, min(0.1, self._wander_hz * 0.95 + rng.gauss(0.0, 0.005)))

    def _substep(self, t: float, dt_s: float) -> None:
        self._outdoor(t)
        cab = self.cabinet
        p, g = self._heat_and_conductance()
        t_eq = self.ambient_c + p / g
        self.cabinet_c = t_eq + (self.cabinet_c - t_eq) * math.exp(-g * dt_s / cab.heat_capacity_j_per_k)
        fan = self.fan_on and not self.fan_failed
        tau = cab.humidity_tau_door_s if self.door_open else cab.humidity_tau_fan_s if fan else cab.humidity_tau_s
        vp = self._amb_vp + (self._cab_vp - self._amb_vp) * math.exp(-dt_s / tau)
        self._cab_vp = min(vp, saturation_vp_hpa(self.cabinet_c))

    def _heat_and_conductance(self) -> tuple[float, float]:
        cab = self.cabinet
        sun = max(0.0, math.sin(math.radians(self.solar_elevation))) * cloud_factor(self.cloud)
        p = cab.electronics_w + cab.solar_gain_w * sun + (cab.heater_w if self.heater_on and self.mains_ok else 0.0)
        fan = self.fan_on and not self.fan_failed
        g = cab.wall_w_per_k + (cab.fan_w_per_k if fan else 0.0) + (cab.door_w_per_k if self.door_open else 0.0)
        return p, g

    def _outdoor(self, t: float) -> None:
        """Sun, daylight and ambient air at wall time t."""
        when = dt.datetime.fromtimestamp(t, dt.UTC)
        self.solar_elevation = elevation(self._obs, when)
        w = self.weather
        self.cloud = curve_at(w.cloud_cover, t) if w.cloud_cover else w.cloud
        self.lux = max(NIGHT_LUX, clear_sky_lux(self.solar_elevation) * cloud_factor(self.cloud))
        warmth, offset = self._warmth(t, when.astimezone(self._tz).date())
        day_c = w.mean_c + offset + w.swing_c * (2.0 * warmth - 1.0)
        self.ambient_c = curve_at(w.temperature, t) if w.temperature else day_c
        day_rh = w.mean_rh + w.swing_rh * (1.0 - 2.0 * warmth)
        self.ambient_rh = min(100.0, max(3.0, curve_at(w.humidity, t) if w.humidity else day_rh))
        self._amb_vp = self.ambient_rh / 100.0 * saturation_vp_hpa(self.ambient_c)

    def _warmth(self, t: float, day: dt.date) -> tuple[float, float]:
        """Where in the daily temperature cycle t is (0 coldest .. 1 warmest), and the
        day-to-day offset of the mean, interpolated between the days' extremes."""
        one = dt.timedelta(days=1)
        t_min, t_max, off = self._day(day)
        if t < t_min:
            _, prev_max, prev_off = self._day(day - one)
            x = (t - prev_max) / (t_min - prev_max)
            return 1.0 - _cos_ramp(x), prev_off + (off - prev_off) * x
        if t < t_max:
            return _cos_ramp((t - t_min) / (t_max - t_min)), off
        next_min, _, next_off = self._day(day + one)
        x = (t - t_max) / (next_min - t_max)
        return 1.0 - _cos_ramp(x), off + (next_off - off) * x

    def _day(self, day: dt.date) -> tuple[float, float, float]:
        """(time of the day's minimum, time of its maximum, offset of the mean) for a
        local date; cached."""
        got = self._days.get(day)
        if got is None:
            solar_noon = noon(self._obs, day, tzinfo=self._tz).timestamp()
            try:
                rise = sunrise(self._obs, day, tzinfo=self._tz).timestamp()
            except ValueError:  # polar day or night: no sunrise on this date
                rise = solar_noon - 10 * 3600.0
            t_min = min(solar_noon - 3 * 3600.0, max(solar_noon - 10 * 3600.0, rise))
            sd = self.weather.day_to_day_c
            off = random.Random(f"{self.seed}:{day.toordinal()}").gauss(0.0, sd) if sd > 0 else 0.0
            got = (t_min, solar_noon + 2.5 * 3600.0, off)
            if len(self._days) > 16:
                self._days.clear()
            self._days[day] = got
        return got
