"""The climate controller in a closed loop with the plant model (boards/sim/plant.py,
stepped directly in simulated time): a hot summer day, a cold humid night, a fan
that fails, a power cut. Each scenario is also run without control (or with the
fault) to show that the figures asserted are the controller's doing."""

from __future__ import annotations

from agent.control.climate.settings import FanCheck
from boards.sim.plant import Cabinet, Weather
from tools.bench.climate import FAN, HEATER, ClosedLoop, example_settings

HOT_DAY = Weather(mean_c=26.0, swing_c=7.0, mean_rh=50.0, swing_rh=15.0)  # 19..33 °C outside, clear sky
COLD_NIGHT = Weather(mean_c=3.0, swing_c=2.0, mean_rh=92.0, swing_rh=5.0, cloud=1.0)  # 1..5 °C, 87..97 %RH
SMALL = Cabinet(electronics_w=10.0)  # little heat of its own: condenses without a heater


def test_hot_summer_day_temperature_held_in_band_without_short_cycling():
    loop = ClosedLoop(HOT_DAY, "2026-07-15T00:00:00+02:00").run(86_400)
    sealed = ClosedLoop(HOT_DAY, "2026-07-15T00:00:00+02:00", control=False).run(86_400)
    assert sealed.t_max > 44.0  # without the fan the cabinet bakes
    assert loop.t_max < 38.0  # with it: the fan's 35 °C plus what one fan can do at 33 °C outside
    fan = loop.switches[FAN]
    assert 2 <= len(fan) - 1 <= 24  # it cycles, but not often
    shortest_on, shortest_off = loop.shortest_runs()[FAN]
    assert shortest_on is not None and shortest_off is not None
    assert shortest_on >= 60 and shortest_off >= 60
    assert not any(trip for _, _, trip in fan)
    assert not any(on for _, on, _ in loop.switches[HEATER])  # no heating on a summer day
    assert loop.raised() == []  # no temperature alarm, no fan-failure false alarm


def test_cold_humid_night_cabinet_kept_above_dew_point_with_margin():
    start = "2026-11-15T18:00:00+01:00"
    loop = ClosedLoop(COLD_NIGHT, start, cabinet=SMALL, measure_from_s=3600).run(14 * 3600)
    unheated = ClosedLoop(COLD_NIGHT, start, cabinet=SMALL, control=False, measure_from_s=3600).run(14 * 3600)
    assert unheated.margin_min < 1.5  # the cabinet air gets close to condensing on its own
    assert loop.margin_min >= 3.0 + 1.0  # the heater keeps its on-margin (3 K) with room to spare
    assert loop.t_min >= 5.0  # and the minimum temperature
    heater = loop.switches[HEATER]
    assert len(heater) > 3
    shortest_on, shortest_off = loop.shortest_runs()[HEATER]
    assert shortest_on is not None and shortest_off is not None
    assert shortest_on >= 60 and shortest_off >= 60
    assert not any(on for _, on, _ in loop.switches[FAN])
    # the cabinet starts as damp as the night air (83 %RH): warned once, cleared as the heater dries it
    assert [(e.alarm_id, e.transition) for e in loop.events] == [
        ("climate.humidity_high.warning", "raised"),
        ("climate.humidity_high.warning", "cleared"),
    ]
    assert loop.events[-1].t - loop.t0 < 3600


def test_failed_fan_raises_its_alarm_within_the_configured_time():
    s = example_settings(fan_check=FanCheck(after_s=1200.0, drop_k=0.5))
    loop = ClosedLoop(HOT_DAY, "2026-07-15T06:00:00+02:00", s, fan_broken=True).run(12 * 3600)
    first_on = next(t for t, on, _ in loop.switches[FAN] if on)
    raised = {a: t for t, a in reversed(loop.raised())}
    assert "climate.fan_failed" in raised
    assert 1200 <= raised["climate.fan_failed"] - first_on <= 1200 + 2 * loop.poll_s
    healthy = ClosedLoop(HOT_DAY, "2026-07-15T06:00:00+02:00", s).run(12 * 3600)
    assert "climate.fan_failed" not in [a for _, a in healthy.raised()]


def test_power_cut_on_a_cold_night_sheds_the_heater_and_reports_the_battery():
    cut, back = 2700.0, 2700.0 + 2400.0  # the heater is on at the cut (it runs from 0 to ~2630 s + again)
    sched = [(cut, "mains_ok", False), (back, "mains_ok", True)]
    loop = ClosedLoop(COLD_NIGHT, "2026-11-15T18:00:00+01:00", cabinet=SMALL, schedule=sched).run(3 * 3600)
    raised = loop.raised()
    t_batt = next(t for t, a in raised if a == "climate.ups_on_battery")
    t_low = next(t for t, a in raised if a == "climate.ups_battery_low")
    assert cut + 5 <= t_batt <= cut + 5 + loop.poll_s + 1  # contacts read each poll, then the 5 s delay
    assert cut + 1800 <= t_low <= cut + 1800 + loop.poll_s + 1  # the plant's UPS: low after 30 min
    heater = loop.switches[HEATER]
    before = [on for t, on, _ in heater if t < cut][-1]
    during = [(t, on, trip) for t, on, trip in heater if cut <= t < back]
    if before:
        assert during[0][1:] == (False, True) and during[0][0] <= cut + loop.poll_s  # shed at once, as a trip
    assert not any(on for _, on, _ in during)  # and not switched on while on battery
    assert any(on for t, on, _ in heater if t >= back)  # heating again once the mains is back
    cleared = [e for e in loop.events if e.transition == "cleared"]
    assert {e.alarm_id for e in cleared} >= {"climate.ups_on_battery", "climate.ups_battery_low"}


def test_flood_sheds_the_heater_at_once_and_the_alarm_latches():
    s = example_settings(min_on_s=600.0)
    sched = [(1800.0, "flood", True), (1900.0, "flood", False)]
    loop = ClosedLoop(COLD_NIGHT, "2026-11-15T18:00:00+01:00", s, cabinet=SMALL, schedule=sched).run(3 * 3600)
    assert loop.alarms.state("climate.flood") == "latched"
    ev = next(e for e in loop.events if e.alarm_id == "climate.flood")
    assert ev.severity == "critical" and ev.t - loop.t0 <= 1800 + loop.poll_s
    heater = loop.switches[HEATER]
    assert [on for t, on, _ in heater if t < 1800][-1]  # heating when the water came (min on 600 s)
    shed = next((t, on, trip) for t, on, trip in heater if t >= 1800)
    assert shed[1:] == (False, True) and shed[0] <= 1800 + loop.poll_s
    back_on = next(t for t, on, _ in heater if t > shed[0] and on)
    assert back_on >= 1900 - loop.poll_s + 300  # shed until release_s after the last poll that saw water
