"""The plant model (boards/sim/plant.py): daylight, weather, cabinet climate, meters, UPS."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
from zoneinfo import ZoneInfo

import pytest
from astral.sun import sunrise, sunset
from hypothesis import given
from hypothesis import strategies as st

from boards.sim.plant import (
    Cabinet,
    Circuit,
    Plant,
    Site,
    Weather,
    clear_sky_lux,
    cloud_factor,
    dew_point_c,
)

BERLIN = Site(52.52, 13.405, 34.0, "Europe/Berlin")
TROMSO = Site(69.65, 18.96, 0.0, "Europe/Oslo")
SINGAPORE = Site(1.35, 103.82, 15.0, "Asia/Singapore")


def local(site: Site, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(site.timezone)).timestamp()


def plant_at(site: Site, t: float, **kw) -> Plant:
    return Plant(site, start=t, **kw)


def run(plant: Plant, until: float, step: float = 10.0) -> None:
    t = plant.now
    while t < until:
        t = min(until, t + step)
        plant.step(t)


# ---- daylight --------------------------------------------------------------------------


def test_berlin_summer_noon_bright_midnight_dark():
    assert plant_at(BERLIN, local(BERLIN, 2024, 6, 21, 13, 15)).lux > 20_000
    assert plant_at(BERLIN, local(BERLIN, 2024, 6, 21, 1, 15)).lux < 1
    assert plant_at(BERLIN, local(BERLIN, 2024, 12, 21, 0, 0)).lux < 1
    assert plant_at(BERLIN, local(BERLIN, 2024, 12, 21, 12, 15)).lux > 10_000


def test_lux_falls_monotonically_through_sunset():
    tz = ZoneInfo(BERLIN.timezone)
    t_set = sunset(BERLIN.observer, dt.date(2024, 3, 20), tzinfo=tz).timestamp()
    values = [plant_at(BERLIN, t_set + m * 60).lux for m in range(-90, 91)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    at_sunset = values[90]
    assert 100 < at_sunset < 1000  # ~400 lx at sunset
    assert values[0] > 5_000 and values[-1] < 1  # bright 1.5 h before, night 1.5 h after
    # the German switching window (40 lx .. 10 lx) lies a few minutes after sunset
    first_below_40 = next(m for m, v in zip(range(-90, 91), values, strict=True) if v < 40)
    assert 5 <= first_below_40 <= 40


def test_tromso_midnight_sun_and_polar_night_do_not_raise():
    summer = plant_at(TROMSO, local(TROMSO, 2024, 6, 21, 0, 30))
    assert summer.solar_elevation > 0 and summer.lux > 400  # the sun is up at midnight
    winter = plant_at(TROMSO, local(TROMSO, 2024, 12, 21, 12, 0))
    assert winter.solar_elevation < 0 and 0.1 <= winter.lux < 400  # twilight at noon
    for p in (summer, winter):  # two days through the days without sunrise/sunset
        run(p, p.now + 2 * 86_400, step=60)
        assert math.isfinite(p.ambient_c) and math.isfinite(p.cabinet_rh)


@pytest.mark.parametrize("lat", [-90.0, -78.2, 0.0, 69.65, 71.9, 78.2, 90.0])
@pytest.mark.parametrize("month", [3, 6, 12])
def test_any_latitude_any_season_never_raises(lat, month):
    p = Plant(Site(lat, 15.6), start=dt.datetime(2024, month, 21, tzinfo=dt.UTC).timestamp())
    run(p, p.now + 86_400, step=600)
    assert p.lux >= 0.1 and -60 < p.ambient_c < 60 and 0 < p.cabinet_rh <= 100


def test_singapore_uses_its_time_zone():
    assert plant_at(SINGAPORE, local(SINGAPORE, 2024, 3, 1, 13, 0)).lux > 50_000
    assert plant_at(SINGAPORE, local(SINGAPORE, 2024, 3, 1, 1, 0)).lux < 1
    # warmest mid-afternoon and coldest around sunrise, in *local* time
    p = plant_at(SINGAPORE, local(SINGAPORE, 2024, 3, 1, 0, 0), weather=Weather(mean_c=28, swing_c=4))
    temps = []
    for _ in range(24 * 12):
        p.step(p.now + 300)
        temps.append((p.ambient_c, p.now))
    warmest = dt.datetime.fromtimestamp(max(temps)[1], ZoneInfo(SINGAPORE.timezone))
    coldest = min(temps)[1]
    rise = sunrise(SINGAPORE.observer, dt.date(2024, 3, 1), tzinfo=ZoneInfo(SINGAPORE.timezone)).timestamp()
    assert 14 <= warmest.hour < 17
    assert abs(coldest - rise) <= 600
    assert max(temps)[0] == pytest.approx(32, abs=0.1) and min(temps)[0] == pytest.approx(24, abs=0.1)


def test_clouds_dim_daylight():
    t = local(BERLIN, 2024, 6, 21, 13, 15)
    clear = plant_at(BERLIN, t).lux
    overcast = plant_at(BERLIN, t, weather=Weather(cloud=1.0)).lux
    assert overcast == pytest.approx(clear * 0.25, rel=1e-9)
    assert cloud_factor(0.5) > 0.9  # Kasten-Czeplak: half cover barely dims


@given(st.floats(-90, 90), st.floats(-90, 90))
def test_clear_sky_lux_monotone_in_elevation(a, b):
    lo, hi = sorted((a, b))
    assert 0.1 <= clear_sky_lux(lo) <= clear_sky_lux(hi) <= 110_400


def test_lux_anchor_values():
    assert clear_sky_lux(0.0) == pytest.approx(400)
    assert clear_sky_lux(-6.0) == pytest.approx(3)
    assert clear_sky_lux(-18.0) == 0.1
    assert 90_000 < clear_sky_lux(60.0) < 100_000


# ---- ambient ---------------------------------------------------------------------------


def test_ambient_day_shape_berlin():
    p = plant_at(
        BERLIN, local(BERLIN, 2024, 4, 10, 0, 0), weather=Weather(mean_c=10, swing_c=6, mean_rh=70, swing_rh=20)
    )
    rows = []
    for _ in range(24 * 12):
        p.step(p.now + 300)
        rows.append((p.now, p.ambient_c, p.ambient_rh))
    (t_cold, t_min, _), (t_warm, t_max, _) = min(rows, key=lambda r: r[1]), max(rows, key=lambda r: r[1])
    rise = sunrise(BERLIN.observer, dt.date(2024, 4, 10), tzinfo=ZoneInfo(BERLIN.timezone)).timestamp()
    assert abs(t_cold - rise) <= 600
    assert 14 <= dt.datetime.fromtimestamp(t_warm, ZoneInfo("Europe/Berlin")).hour < 17
    assert t_min == pytest.approx(4, abs=0.05) and t_max == pytest.approx(16, abs=0.05)
    # RH is anti-correlated with temperature
    n = len(rows)
    mt, mr = sum(r[1] for r in rows) / n, sum(r[2] for r in rows) / n
    cov = sum((r[1] - mt) * (r[2] - mr) for r in rows)
    assert cov < 0
    assert max(r[2] for r in rows) == pytest.approx(90, abs=0.1)
    # continuous: no jumps between 5-minute samples (also across midnight)
    assert all(abs(a[1] - b[1]) < 0.3 for a, b in itertools.pairwise(rows))


def test_day_to_day_variation_is_seeded():
    w = Weather(day_to_day_c=3.0)
    t = local(BERLIN, 2024, 4, 10, 12, 0)
    a, b, c = (
        plant_at(BERLIN, t, weather=w, seed=1),
        plant_at(BERLIN, t, weather=w, seed=1),
        plant_at(BERLIN, t, weather=w, seed=2),
    )
    assert a.ambient_c == b.ambient_c != c.ambient_c


# ---- cabinet climate -------------------------------------------------------------------


def night_plant(**kw) -> Plant:
    """Berlin at night in April: no sun for hours."""
    kw.setdefault("weather", Weather(mean_c=10, swing_c=0))
    return plant_at(BERLIN, local(BERLIN, 2024, 4, 10, 22, 0), **kw)


def test_electronics_heat_warms_the_cabinet():
    quiet, busy = night_plant(cabinet=Cabinet(electronics_w=20)), night_plant(cabinet=Cabinet(electronics_w=120))
    for p in (quiet, busy):
        run(p, p.now + 4 * 3600)
    assert quiet.cabinet_c - quiet.ambient_c == pytest.approx(20 / 16, abs=0.05)  # P / G_wall
    assert busy.cabinet_c - busy.ambient_c == pytest.approx(120 / 16, abs=0.05)


def test_sun_warms_the_cabinet():
    t = local(BERLIN, 2024, 6, 21, 6, 0)
    shaded, sunny = plant_at(BERLIN, t, cabinet=Cabinet(solar_gain_w=0)), plant_at(BERLIN, t)
    for p in (shaded, sunny):
        run(p, local(BERLIN, 2024, 6, 21, 14, 0))
    assert sunny.cabinet_c - shaded.cabinet_c > 8
    assert sunny.ambient_c == shaded.ambient_c


def test_fan_cools_toward_ambient():
    t = local(BERLIN, 2024, 6, 21, 12, 0)
    still, fanned = plant_at(BERLIN, t), plant_at(BERLIN, t)
    fanned.fan_on = True
    for p in (still, fanned):
        run(p, t + 3600)
    assert still.cabinet_c - fanned.cabinet_c > 5
    assert fanned.cabinet_c > fanned.ambient_c


def test_heater_lowers_rh_and_widens_dew_point_margin():
    cold, heated = night_plant(), night_plant()
    heated.heater_on = True
    for p in (cold, heated):
        run(p, p.now + 2 * 3600)
    assert heated.cabinet_c > cold.cabinet_c + 5
    assert heated.cabinet_rh < cold.cabinet_rh * 0.75  # Es(T) / Es(T + 6.25 K) ~ 0.67
    margin = lambda p: p.cabinet_c - p.cabinet_dew_point_c  # noqa: E731
    assert margin(heated) > margin(cold) + 5
    assert heated.cabinet_dew_point_c == pytest.approx(cold.cabinet_dew_point_c, abs=0.5)  # same water
    assert heated.cabinet_dew_point_c == pytest.approx(dew_point_c(heated.cabinet_c, heated.cabinet_rh), abs=1e-6)


def test_door_open_pulls_cabinet_to_ambient():
    closed, opened = night_plant(), night_plant()
    for p in (closed, opened):
        p.heater_on = True
        run(p, p.now + 3 * 3600)
    opened.door_open = True
    for p in (closed, opened):
        run(p, p.now + 15 * 60)
    assert closed.cabinet_c - closed.ambient_c > 7
    assert opened.cabinet_c - opened.ambient_c < 1.2  # (40 + 100) W / 166 W/K = 0.84 K
    assert abs(opened.cabinet_rh - opened.ambient_rh) < abs(closed.cabinet_rh - closed.ambient_rh)


def test_one_hour_jump_matches_fine_steps():
    t = local(BERLIN, 2024, 6, 21, 9, 0)
    fine, coarse = plant_at(BERLIN, t), plant_at(BERLIN, t)
    for p in (fine, coarse):
        p.fan_on = True
    run(fine, t + 3600, step=1)
    coarse.step(t + 3600)
    assert coarse.cabinet_c == pytest.approx(fine.cabinet_c, abs=0.05)
    assert coarse.cabinet_rh == pytest.approx(fine.cabinet_rh, abs=0.2)


def test_rh_never_exceeds_100_when_cabinet_cools_fast():
    p = night_plant(weather=Weather(mean_c=10, swing_c=0, mean_rh=98, swing_rh=0))
    p.heater_on = True
    run(p, p.now + 3600)
    p.heater_on, p.door_open = False, True
    run(p, p.now + 3600)
    assert p.cabinet_rh <= 100


def test_magnus_reference_values():
    assert dew_point_c(25, 10) == pytest.approx(-8.77, abs=0.01)
    assert dew_point_c(50, 90) == pytest.approx(47.90, abs=0.01)
    assert dew_point_c(35, 40) == pytest.approx(19.38, abs=0.01)


# ---- meters ----------------------------------------------------------------------------

START = local(BERLIN, 2024, 10, 1, 20, 0)


def lamps(*circuits: Circuit, seed: int = 0) -> Plant:
    return Plant(BERLIN, circuits or (Circuit("A", 1000.0),), start=START, seed=seed)


def test_energy_one_hour_at_one_second_steps():
    p = lamps()
    p.set_circuit("A", True)
    run(p, START + 3600, step=1)
    assert p.meter("A").import_energy_kwh == pytest.approx(1.0, rel=0.01)


def test_energy_one_hour_in_one_step():
    p = lamps()
    p.set_circuit("A", True)
    p.step(START + 3600)
    m = p.meter("A")
    assert m.import_energy_kwh == pytest.approx(1.0, rel=0.01)
    assert m.total_energy_kwh == m.import_energy_kwh and m.export_energy_kwh == 0.0


def test_no_energy_and_no_current_when_off():
    p = lamps()
    run(p, START + 3600, step=60)
    m = p.meter("A")
    assert m.import_energy_kwh == 0.0 and m.current == [0.0] and m.power == [0.0]
    assert m.voltage[0] == pytest.approx(230, abs=10)  # the supply is still there


def test_meter_values_are_consistent():
    p = lamps(Circuit("A", 1000.0), Circuit("B", 3000.0, phases=3, power_factor=0.9))
    for name in p.circuits:
        p.set_circuit(name, True)
    run(p, START + 600)
    a, b = p.meter("A"), p.meter("B")
    assert a.power == [1000.0] and len(a.voltage) == 1
    assert a.current[0] == pytest.approx(1000 / (a.voltage[0] * 0.95), rel=1e-9)
    assert 49.8 < a.frequency < 50.2 and 220 < a.voltage[0] < 240
    assert sum(b.power) == pytest.approx(3000) and len(b.current) == 3
    assert b.apparent_power == pytest.approx(3000 / 0.9)
    assert b.reactive_power == pytest.approx(math.sqrt(b.apparent_power**2 - 3000**2))
    assert a.voltage[0] == b.voltage[0]  # one supply per cabinet


def test_dimming_uses_less_energy():
    p = lamps(Circuit("full", 1000.0, dimmable=True), Circuit("half", 1000.0, dimmable=True))
    for name in p.circuits:
        p.set_circuit(name, True)
    p.set_dim("half", 50)
    run(p, START + 3600, step=30)
    full, half = p.meter("full"), p.meter("half")
    assert 0.4 < half.import_energy_kwh / full.import_energy_kwh < 0.7
    assert half.power_factor < full.power_factor
    p.set_dim("half", 0)
    assert p.circuit_power_w("half") == 0.0


def test_bad_inputs_are_named():
    p = lamps()
    with pytest.raises(KeyError, match="no circuit 'X'"):
        p.set_circuit("X", True)
    with pytest.raises(ValueError, match="not dimmable"):
        p.set_dim("A", 50)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        Plant(Site(0, 0, timezone="Mars/Olympus"), start=0.0)


def test_determinism_with_seed():
    def history(seed: int) -> list:
        p = lamps(seed=seed)
        p.set_circuit("A", True)
        out = []
        for i in range(1, 200):
            p.step(START + 7 * i)
            p.fan_on = i % 50 < 20
            out.append((p.meter("A"), p.cabinet_c, p.cabinet_rh, p.lux))
        return out

    assert history(7) == history(7)
    assert history(7) != history(8)


def test_step_backwards_is_ignored():
    p = lamps()
    p.set_circuit("A", True)
    p.step(START + 100)
    before = (p.now, p.meter("A"), p.cabinet_c, p.lux)
    p.step(START + 50)
    p.step(START + 100)
    p.step(float("nan"))
    assert (p.now, p.meter("A"), p.cabinet_c, p.lux) == before


def test_long_jump_counts_all_energy_quickly():
    p = lamps()
    p.set_circuit("A", True)
    t0 = time.perf_counter()
    p.step(START + 30 * 86_400)  # e.g. the wall clock set by GPS
    assert time.perf_counter() - t0 < 2
    assert p.meter("A").import_energy_kwh == pytest.approx(720.0, rel=1e-9)


# ---- UPS -------------------------------------------------------------------------------


def test_ups_battery_low_after_configured_time_and_loads_drop():
    p = Plant(BERLIN, [Circuit("A", 500.0)], start=START, cabinet=Cabinet(ups_low_after_s=600))
    p.set_circuit("A", True)
    p.heater_on = True
    p.mains_ok = False
    run(p, START + 590)
    assert p.ups_on_battery and not p.ups_battery_low
    assert p.meter("A").import_energy_kwh == 0.0 and p.meter("A").voltage == [0.0]
    run(p, START + 610)
    assert p.ups_battery_low
    p.mains_ok = True
    run(p, START + 620)
    assert not p.ups_on_battery and not p.ups_battery_low
    assert p.meter("A").import_energy_kwh > 0
    p.ups_replace_battery = True
    assert p.ups_replace_battery


# ---- speed -----------------------------------------------------------------------------


def test_one_day_at_ten_second_steps_is_fast(capsys):
    p = lamps()
    p.set_circuit("A", True)
    t0 = time.perf_counter()
    run(p, START + 86_400, step=10)
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[plant] one simulated day at 10 s steps (8640 steps): {elapsed * 1000:.0f} ms")
    assert p.meter("A").import_energy_kwh == pytest.approx(24.0)
