"""Test vectors of the pole node's lamp side: fail-safe, detection, metering, counters.

Run under CPython (tests/test_pole_vectors.py) and under a real MicroPython (run_vectors.mjs,
the WebAssembly port): the same functions, plain asserts, only what MicroPython runs (no
pytest, no typing at run time)."""

from boards.pole_node import detect, failsafe, metering, regmap
from boards.pole_node.node import PoleNode
from tests.micropython.common import DAY, NIGHT, UNIT, MemFlash, lamp, read_req, write1, write_n

# ---------------------------------------------------------------- fail-safe


def test_cabinet_stops_polling_failsafe_at_night() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    n.request(write_n(0, [0, 60]), 0)  # cabinet: lamp off, fail-safe after 60 s of silence
    t = 0
    while t <= 59000:
        assert lamp(n, t, lux=NIGHT) == 0  # cabinet in charge (its command is off)
        assert not n.status(t) & regmap.CABINET_SILENT
        t += 1000
    assert lamp(n, 61000, lux=NIGHT) == 100  # silent: own dusk/dawn, default level at night
    assert n.status(61000) & regmap.CABINET_SILENT
    assert n.inputs[16] & regmap.CABINET_SILENT and n.inputs[17] == 61
    n.request(read_req(4, 0, 1), 62000)  # the cabinet is back: its command again
    assert lamp(n, 62000, lux=NIGHT) == 0


def test_failsafe_dawn_and_dusk_with_hysteresis() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)  # never polled: fail-safe from boot
    assert lamp(n, 0, lux=NIGHT) == 100
    t = 1000
    for lux in (45, 59, 45, 59):  # between dusk (30) and dawn (60): no change
        assert lamp(n, t, lux=lux) == 100
        t += 100000
    assert lamp(n, t, lux=DAY) == 100  # above dawn, but not yet for lux_hold (120 s)
    assert lamp(n, t + 60000, lux=DAY) == 100
    assert lamp(n, t + 90000, lux=40) == 100  # a dip resets the hold
    assert lamp(n, t + 100000, lux=DAY) == 100
    assert lamp(n, t + 219000, lux=DAY) == 100
    assert lamp(n, t + 220000, lux=DAY) == 0  # day
    assert lamp(n, t + 300000, lux=50) == 0  # between the thresholds: stays off
    assert lamp(n, t + 400000, lux=NIGHT) == 0
    assert lamp(n, t + 520000, lux=NIGHT) == 100  # dusk after lux_hold


def test_failsafe_lux_sensor_dead_means_on() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    assert lamp(n, 0, lux=DAY) == 0  # boots in daylight: off
    assert lamp(n, 1000, lux=None) == 100  # sensor gone: on, never off in the dark
    assert n.status(1000) & regmap.LUX_FAULT


def test_failsafe_default_level_is_a_setting() -> None:
    f = failsafe.FailSafe(0)
    f.see_lux(0, NIGHT, 30, 60, 120)
    assert f.level(0, 0, 600, 40) == 40
    f.polled_at(1000)
    assert f.level(2000, 75, 600, 40) == 40  # polled, but never commanded: still its own
    f.commanded = True
    assert f.level(2000, 75, 600, 40) == 75
    assert f.level(601000, 75, 600, 40) == 40


def test_a_cabinet_that_only_reads_leaves_the_lamp_to_the_node() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    for t in range(0, 30000, 1000):
        assert n.request(read_req(4, 0, 4), t) is not None
        assert lamp(n, t, lux=NIGHT) == 100  # polled, never commanded: own dusk/dawn, on at night
        assert not n.status(t) & regmap.CABINET_SILENT
    n.request(write1(0, 0), 30000)  # the first command, even of the default value, takes over
    assert lamp(n, 30000, lux=NIGHT) == 0
    assert n.store.writes == 0  # a level command is not a setting: nothing written to flash
    lamp(n, 40000, lux=NIGHT)
    assert n.store.writes == 0


# ---------------------------------------------------------------- detection


def test_lamp_failure_and_recovery() -> None:
    n = PoleNode(UNIT, MemFlash(), 0)
    lamp(n, 0)
    t = 1000
    while t < 31000:
        lamp(n, t, healthy=False)
        t += 1000
    assert n.status(t) & regmap.LAMP_FAILURE == 0  # 30 s hold not yet over
    lamp(n, 32000, healthy=False)
    assert n.status(32000) & regmap.LAMP_FAILURE and n.inputs[12] == 2
    lamp(n, 33000)
    lamp(n, 64000)
    assert n.status(64000) & regmap.LAMP_FAILURE == 0


def test_driver_fault_day_burner_tilt() -> None:
    d = detect.Detector(0)
    for t in range(0, 40000, 1000):  # draws 0.2 A but only 5 W of an expected 60 W
        d.update(t, 100, 230.0, 0.2, 5.0, 60, NIGHT, 60, 0, 15, 4)
    assert d.driver_fault.state and not d.lamp_failure.state
    d = detect.Detector(0)
    for t in range(0, 40000, 1000):  # burning while driven off
        d.update(t, 0, 230.0, 0.26, 60.0, 60, NIGHT, 60, 0, 15, 4)
    assert d.day_burner.state
    d = detect.Detector(0)
    for t in range(0, 40000, 1000):  # burning in daylight at the cabinet's command
        d.update(t, 100, 230.0, 0.26, 60.0, 60, DAY, 60, 0, 15, 4)
    assert d.day_burner.state and not d.lamp_failure.state
    d.update(41000, 100, 230.0, 0.26, 60.0, 60, DAY, 60, 300, 15, 4)
    assert not d.tilted.state
    d.update(43500, 100, 230.0, 0.26, 60.0, 60, DAY, 60, 300, 15, 4)
    assert d.tilted.state


def test_cycling() -> None:
    d = detect.Detector(0)
    t = 0
    for _ in range(4):
        d.update(t, 100, 230.0, 0.26, 60.0, 60, NIGHT, 60, 0, 15, 4)
        d.update(t + 60000, 100, 230.0, 0.0, 0.0, 60, NIGHT, 60, 0, 15, 4)  # goes out by itself
        t += 120000
    assert d.cycling and d.switch_ons == 4
    d.update(t + 3600000, 100, 230.0, 0.26, 60.0, 60, NIGHT, 60, 0, 15, 4)
    assert not d.cycling  # the outages left the hour window


def test_supply_loss_is_not_lamp_failure() -> None:
    d = detect.Detector(0)
    for t in range(0, 60000, 1000):
        d.update(t, 100, 0.0, 0.0, 0.0, 60, NIGHT, 60, 0, 15, 4)
    assert not d.lamp_failure.state and not d.driver_fault.state


def test_tilt_and_metering() -> None:
    assert detect.tilt_decideg(0, 0, 1000) == 0
    assert detect.tilt_decideg(1000, 0, 0) == 900
    assert detect.tilt_decideg(0, 500, 866) == 300
    n = 64
    sine = [0, 7, 10, 7, 0, -7, -10, -7]
    v = [2048 + 100 * sine[k % 8] for k in range(n)]
    i_in = [2048 + 10 * sine[k % 8] for k in range(n)]
    volts, amps, watts, pf = metering.measure(v, i_in, 2048, 0.25, 0.01)
    assert abs(pf - 1.0) < 0.001 and abs(watts - volts * amps) < 0.01
    i_90 = [2048 + 10 * sine[(k + 2) % 8] for k in range(n)]  # 90° out of phase
    assert metering.measure(v, i_90, 2048, 0.25, 0.01)[3] < 0.01
    assert metering.measure([], [], 2048, 1.0, 1.0) == (0.0, 0.0, 0.0, 0.0)


def test_burning_hours_energy_switch_count_survive_reboot() -> None:
    flash = MemFlash()
    n = PoleNode(UNIT, flash, 0)
    for t in range(0, 7260001, 60000):
        lamp(n, t)
    w = n.inputs
    assert (w[6] << 16 | w[7]) == 2 and (w[8] << 16 | w[9]) == 1
    assert abs((w[4] << 16 | w[5]) - 120) <= 1
    lamp(n, 7320000, healthy=False)  # switch-off: counters written
    assert n.counter_store.writes == 1
    again = PoleNode(UNIT, flash, 0)
    assert again.detector.burn_s >= 7200 and again.detector.switch_ons == 1
    for t in range(7380000, 7380000 + 9 * 60000, 60000):  # on and off every minute (cycling)
        lamp(n, t, healthy=(t // 60000) % 2 == 0)
    assert n.counter_store.writes == 1  # not again within 10 minutes
    lamp(n, 7320000 + 12 * 3600000)
    assert n.counter_store.writes == 2  # but every 12 h
