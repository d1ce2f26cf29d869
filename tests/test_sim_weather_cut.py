"""Weather curves and a cut cable in the simulated cabinet (boards/sim/plant.py, commands.py,
cabinet.py; the config's [sim.weather] and `circuit ... cut`), and the rig's clock that boots
unset (boards/sim/unset_clock.py)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import SimClock, clock_trusted
from agent.config.schema import ConfigError
from agent.runtime.entry import board_infos
from boards.sim.cabinet import SimCabinet
from boards.sim.commands import CommandError, run
from boards.sim.plant import Circuit, Plant, Site, Weather, cloud_factor, curve_at
from boards.sim.unset_clock import UnsetUntil, parse_until

BERLIN = Site(52.52, 13.405, 34.0, "Europe/Berlin")
NIGHT = 1_789_596_000.0  # 2026-09-17T00:00:00+02:00
NOON = NIGHT + 12 * 3600 + 1800


def test_curve_is_straight_lines_flat_outside():
    pts = ((10.0, 1.0), (20.0, 3.0), (40.0, -1.0))
    assert [curve_at(pts, t) for t in (0, 10, 15, 20, 30, 40, 99)] == [1.0, 1.0, 2.0, 3.0, 1.0, -1.0, -1.0]


def test_temperature_and_humidity_curves_replace_the_day_curve():
    w = Weather(temperature=((NIGHT, -5.0), (NIGHT + 3600, 5.0)), humidity=((NIGHT, 95.0),))
    p = Plant(BERLIN, start=NIGHT, weather=w)
    assert p.ambient_c == -5.0 and p.ambient_rh == 95.0
    p.step(NIGHT + 1800)
    assert p.ambient_c == pytest.approx(0.0) and p.ambient_rh == 95.0
    p.step(NIGHT + 7200)
    assert p.ambient_c == 5.0
    day = Plant(BERLIN, start=NIGHT)  # without curves: the day curve (12 +- 5 degC)
    assert 7.0 <= day.ambient_c <= 17.0 and day.ambient_c != -5.0


def test_cloud_curve_dims_the_daylight_and_the_sun_on_the_cabinet():
    clear = Plant(BERLIN, start=NOON)
    cover = Plant(BERLIN, start=NOON, weather=Weather(cloud_cover=((NOON, 0.0), (NOON + 3600, 1.0))))
    assert cover.lux == pytest.approx(clear.lux)
    for p in (clear, cover):
        p.step(NOON + 3600)
    assert cover.lux == pytest.approx(clear.lux * cloud_factor(1.0), rel=1e-6)
    for p in (clear, cover):
        p.step(NOON + 4 * 3600)
    assert cover.cabinet_c < clear.cabinet_c - 1.0  # less sun on the cabinet under cloud


def test_bad_curves_are_refused_with_their_name():
    with pytest.raises(ValueError, match="humidity"):
        Weather(humidity=((0.0, 120.0),))
    with pytest.raises(ValueError, match=r"temperature\[1\]"):
        Weather(temperature=((10.0, 1.0), (10.0, 2.0)))


def test_a_cut_cable_draws_nothing_with_the_supply_present_and_keeps_the_lamp_failures():
    p = Plant(BERLIN, [Circuit("seg", 1000.0)], start=NIGHT)
    p.set_circuit("seg", True)
    p.fail_lamps("seg", 0.25)
    p.step(NIGHT + 1)
    assert p.circuit_power_w("seg") == pytest.approx(750.0)
    p.cut_cable("seg", True)
    p.step(NIGHT + 2)
    m = p.meter("seg")
    assert p.circuit_on("seg") and p.cable_cut("seg")
    assert m.current == [0.0] and m.power == [0.0] and m.voltage[0] > 200.0  # no current, the supply there
    assert p.failed_share("seg") == 0.25 and p.stuck("seg") is None  # not a lamp failure, not a contactor
    kwh = p.meter("seg").import_energy_kwh
    p.step(NIGHT + 3602)
    assert p.meter("seg").import_energy_kwh == kwh
    p.cut_cable("seg", False)
    assert p.circuit_power_w("seg") == pytest.approx(750.0)


def example(tmp_path: Path, extra: str = "") -> cfg.Config:
    text = cfg.EXAMPLE.read_text().replace("[sim.contacts]", extra + "\n[sim.contacts]")
    path = tmp_path / "cabinet.toml"
    path.write_text(text)
    return cfg.load(path, board_infos())


async def test_sim_weather_in_the_config_reaches_the_plant(tmp_path):
    config = example(tmp_path, "[sim.weather]\ntemperature = [[0, 30.0], [3600, 40.0]]\ncloud = 0.5\n")
    assert config.sim.weather is not None and config.sim.weather.cloud == ((0.0, 0.5),)
    clock = SimClock(start=NOON)
    cab = SimCabinet(config, tmp_path / "sim", clock)
    assert cab.plant.ambient_c == 30.0 and cab.plant.cloud == 0.5
    await clock.advance(1800)
    cab.refresh()
    assert cab.plant.ambient_c == pytest.approx(35.0)


def test_sim_weather_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        example(tmp_path, "[sim.weather]\ntemperature = [[0, 30.0], [0, 40.0]]\nhumidity = 5\nwind = 3\n")
    text = str(e.value)
    assert "weather.temperature[1]" in text and "weather.humidity" in text and "weather.wind" in text


async def test_the_circuit_message_cuts_and_mends_a_cable(tmp_path):
    config = example(tmp_path, "")
    cab = SimCabinet(config, tmp_path / "sim", SimClock(start=NIGHT))
    reply = await run(cab, {"cmd": "circuit", "circuit": "segment1", "cut": True})
    assert "cable cut" in reply["done"] and cab.plant.cable_cut("segment1")
    assert cab.state()["circuit_faults"]["segment1"]["cut"] is True
    with pytest.raises(CommandError, match="'cut' must be true or false"):
        await run(cab, {"cmd": "circuit", "circuit": "segment1", "cut": "yes"})
    await run(cab, {"cmd": "circuit", "circuit": "segment1", "cut": False})
    assert not cab.plant.cable_cut("segment1")


def test_a_script_step_may_cut_a_cable(tmp_path):
    config = example(tmp_path, '[[sim.script]]\nat_s = 5\ncmd = "circuit"\ncircuit = "segment1"\ncut = true\n')
    assert config.sim.script[-1] == (5.0, {"cmd": "circuit", "circuit": "segment1", "cut": True})


async def test_the_unset_clock_is_untrusted_until_its_sync_time():
    inner = SimClock(start=NIGHT)
    clock = UnsetUntil(inner, NIGHT + 60)
    assert clock.synced is False and not clock_trusted(clock) and clock.now() == NIGHT  # the time reads right
    await inner.advance(59)
    assert not clock_trusted(clock)
    await inner.advance(1)
    assert clock.synced is True and clock_trusted(clock)
    never = UnsetUntil(SimClock(start=NIGHT), parse_until("never"))
    assert never.until == math.inf and never.synced is False
    never.synced = True  # the agent's own sync wins
    assert clock_trusted(never)
    with pytest.raises(ValueError):
        parse_until("soon")


async def test_the_unset_clock_sleeps_on_the_inner_clock():
    inner = SimClock(start=NIGHT)
    clock = UnsetUntil(inner, math.inf)
    task = asyncio.ensure_future(clock.sleep(5))
    await asyncio.sleep(0)
    await inner.advance(5)
    await asyncio.wait_for(task, 1)
    assert clock.monotonic() == 5
