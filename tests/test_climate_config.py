"""[climate] and [alarms]: the example cabinet's settings, defaults, and every error
naming file, section, key, value and what is allowed, all in one pass."""

from __future__ import annotations

from agent import config as cfg
from agent.control.alarms.manager import AlarmOverride
from agent.control.climate.controller import ClimateController
from agent.runtime.entry import board_infos
from tests.conftest import find, issues_of

BASE = """
[cabinet]
id = "CAB-0042"
[site]
latitude = 52.5
longitude = 13.4
timezone = "Europe/Berlin"
[buses.rs485]
type = "rtu"
port = "/dev/ttyUSB0"
[devices.climate]
bus = "rs485"
unit = 10
profile = "xy-md02"
[devices.relays]
bus = "rs485"
unit = 20
profile = "relay-board"
[devices.relays.options]
inputs = 8
[inputs.door]
pin = "door"
[inputs.flood]
pin = "flood"
[outputs.fan]
pin = "aux_out_1"
"""

GOOD = (
    BASE
    + """
[climate]
temperature = "climate.temperature"
humidity = "climate.humidity"
[[climate.fans]]
output = "dio.fan"
[[climate.fans]]
name = "stage2"
output = "relays.relay_7"
on_c = 40
off_c = 36
monitor = "relays.input_1"
monitor_min = 0.5
[climate.heater]
output = "relays.relay_8"
[climate.door]
input = "dio.door"
[climate.flood]
input = "dio.flood"
shed = ["relays.relay_8", "relays.relay_1"]
"""
)


def test_the_example_cabinet_has_climate_and_an_alarm_override():
    c = cfg.load(cfg.EXAMPLE, board_infos())
    s = c.climate
    assert s.temperature == "climate.temperature" and s.humidity == "climate.humidity"
    assert [(f.output, f.on_c, f.off_c) for f in s.fans] == [("dio.fan", 35.0, 30.0)]
    assert s.heater.output == "relays.relay_8" == c.sim.heater
    assert c.sim.fan == "pin:" + c.outputs["fan"].pin  # the fan output drives the plant's fan
    assert s.ups.shed_on_battery == ("relays.relay_8",) and s.flood.shed == ("relays.relay_8",)
    assert c.alarms == {"climate.door_open_too_long": AlarmOverride(raise_delay_s=1800.0)}
    names = {p.name for p in c.points()}
    assert set(ClimateController(s).inputs) <= names and set(ClimateController(s).outputs) <= names


def test_defaults_and_a_config_without_climate():
    assert cfg.loads(BASE, "cab.toml").climate is None
    c = cfg.loads(GOOD, "cab.toml")
    s = c.climate
    assert (s.min_on_s, s.min_off_s, s.trip_c) == (60.0, 60.0, 50.0)
    assert s.fans[0].name == "fan1" and s.fans[1].name == "stage2" and s.fans[1].monitor_min == 0.5
    assert (s.heater.on_margin_k, s.heater.off_margin_k, s.heater.on_rh, s.heater.off_rh, s.heater.min_c) == (
        3.0,
        5.0,
        70.0,
        60.0,
        5.0,
    )
    assert s.limits.temperature_high == (45.0, 55.0) and s.ups is None
    assert s.flood.shed == ("relays.relay_8", "relays.relay_1")
    assert cfg.loads(GOOD.replace("[climate]\n", "[climate]\nenabled = false\n"), "cab.toml").climate is None
    off = cfg.loads(GOOD + "[climate.limits]\nhumidity_low = []\n", "cab.toml").climate
    assert off.limits.humidity_low is None
    assert cfg.loads(GOOD.replace("[climate]\n", "[climate]\ntrip = false\n"), "cab.toml").climate.trip_c is None


def test_every_error_at_once_with_section_key_value_and_allowed():
    text = (
        BASE
        + """
[climate]
temperature = "climate.temprature"
min_on_s = -1
tirp_c = 40
[[climate.fans]]
output = "dio.door"
on_c = 30
off_c = 35
[climate.heater]
output = "relays.relay_9"
off_rh = 75
[climate.limits]
temperature_high = [55, 45]
humidity_low = "no"
[climate.door]
input = "dio.dor"
[climate.ups]
shed_on_battery = ["climate.humidity"]
"""
    )
    issues = issues_of(text)
    i = find(issues, "climate", "temperature")
    assert i.value == "climate.temprature" and "no such point" in i.message and "cab.toml" in str(i)
    assert find(issues, "climate", "min_on_s").allowed.startswith("a number 0..3600")
    assert "did you mean 'trip_c'" in find(issues, "climate", "tirp_c").message
    assert "not a writable point" in find(issues, "climate.fans[0]", "output").message
    assert "below on_c" in find(issues, "climate.fans[0]", "off_c").message
    assert "no such point" in find(issues, "climate.heater", "output").message
    assert find(issues, "climate.heater", "off_rh").allowed == "less than on_rh (70)"
    assert "a < b" in find(issues, "climate.limits", "temperature_high").message
    assert find(issues, "climate.limits", "humidity_low").value == "no"
    assert find(issues, "climate.door", "input").value == "dio.dor"
    assert "not a writable point" in find(issues, "climate.ups", "shed_on_battery[0]").message
    assert "no UPS contact" in find(issues, "climate.ups", "on_battery").message
    assert len(issues) == 12
    for i in issues:
        text = str(i)
        assert text.startswith("cab.toml: [climate") and "(allowed: " in text


def test_cross_checks_between_fans_heater_and_trip():
    text = (
        BASE
        + """
[climate]
temperature = "climate.temperature"
trip_c = 8
[[climate.fans]]
name = "a"
output = "dio.fan"
monitor = "relays.input_1"
[[climate.fans]]
name = "a"
output = "dio.fan"
monitor_max = 5
[climate.heater]
output = "dio.fan"
on_margin_k = 4
off_margin_k = 4
max_c = 9
"""
    )
    issues = issues_of(text)
    assert "needs its window" in find(issues, "climate.fans[0]", "monitor").message
    assert "set monitor" in find(issues, "climate.fans[1]", "monitor_max").message
    assert "used by fans[0]" in find(issues, "climate", "fans[1].name").message
    assert "already used by fans[0].output" in find(issues, "climate", "fans[1].output").message
    assert "already used by" in find(issues, "climate", "heater.output").message
    assert "hysteresis" in find(issues, "climate.heater", "off_margin_k").message
    assert "overlaps" in find(issues, "climate.heater", "max_c").message
    assert "heater's range" in find(issues, "climate", "trip_c").message


def test_alarm_overrides():
    text = (
        GOOD
        + """
[alarms."climate.door_open"]
raise_delay_s = 5
severity = "critical"
[alarms."climate.fan_failed.stage2"]
latching = true
[alarms."lighting.segment1.lamp_failure"]
enabled = false
"""
    )
    c = cfg.loads(text, "cab.toml")
    assert c.alarms["climate.door_open"] == AlarmOverride(severity="critical", raise_delay_s=5.0)
    assert c.alarms["climate.fan_failed.stage2"].latching is True
    assert c.alarms["lighting.segment1.lamp_failure"].enabled is False  # another controller's: taken as written


def test_alarm_override_errors():
    text = (
        GOOD
        + """
[alarms."climate.dor_open"]
raise_delay_s = 5
[alarms."lighting.x"]
severity = "fatal"
raise_delay = 3
[alarms."climate.flood"]
clear_delay_s = -1
[alarms.nodot]
latching = true
"""
    )
    issues = issues_of(text)
    i = find(issues, "alarms", "climate.dor_open")
    assert "did you mean 'climate.door_open'" in i.message
    assert find(issues, 'alarms."lighting.x"', "severity").allowed == '"warning", "critical"'
    assert "did you mean 'raise_delay_s'" in find(issues, 'alarms."lighting.x"', "raise_delay").message
    assert find(issues, 'alarms."climate.flood"', "clear_delay_s").value == -1
    assert "bad alarm id" in find(issues, "alarms", "nodot").message
    assert len(issues) == 5
