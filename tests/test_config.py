"""Config loading and validation: every error names file, section, key, value, allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as cfg
from agent.config.model import RtuBus, TcpBus
from agent.runtime.entry import board_infos
from tests.conftest import find, issues_of

EXAMPLE = cfg.EXAMPLE

MINIMAL = """
[cabinet]
id = "CAB-0042"
[site]
latitude = 52.5
longitude = 13.4
timezone = "Europe/Berlin"
[buses.rs485]
type = "rtu"
port = "/dev/ttyUSB0"
[devices.meter]
bus = "rs485"
unit = 1
profile = "sdm120"
"""


def test_example_config_is_valid_and_complete():
    c = cfg.load(EXAMPLE, board_infos())
    assert c.cabinet_id == "CAB-SIM-0001"
    assert c.board == "sim"
    assert isinstance(c.buses["rs485"], RtuBus) and isinstance(c.buses["dali"], TcpBus)
    assert {d.profile_name for d in c.devices.values()} >= {
        "sdm630",
        "sdm120",
        "xy-md02",
        "relay-board",
        "lux",
        "dali-gateway",
    }
    names = [p.name for p in c.points()]
    assert len(names) == len(set(names))
    assert "meter_main.voltage_l1" in names and "dio.door" in names
    assert c.devices["meter_main"].points["voltage_l1"].deadband == 0.5
    assert len(c.sha256) == 64


def test_minimal_config_defaults():
    c = cfg.loads(MINIMAL, "cab.toml")
    bus = c.buses["rs485"]
    assert isinstance(bus, RtuBus)
    assert (bus.baudrate, bus.parity, bus.stopbits, bus.timeout_ms, bus.retries) == (9600, "N", 1, 300.0, 0)
    dev = c.devices["meter"]
    assert dev.poll_s == 5.0 and dev.unit == 1
    p = dev.points["voltage"]
    assert p.name == "meter.voltage" and p.unit == "V" and p.heartbeat_s == 300.0
    assert p.stale_after_s == pytest.approx(15.0)


def test_many_errors_reported_at_once_with_file_section_key_value_allowed():
    text = (
        MINIMAL.replace('id = "CAB-0042"', 'id = "bad id!"')
        .replace("latitude = 52.5", "latitude = 95")
        .replace("unit = 1", "unit = 300")
        .replace('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"')
    )
    issues = issues_of(text)
    assert len(issues) == 4
    lat = find(issues, "site", "latitude")
    assert lat.file == "cab.toml" and lat.value == 95 and "-90..90" in lat.allowed
    text_of = str(find(issues, "devices.meter", "unit"))
    assert "cab.toml" in text_of and "[devices.meter] unit = 300" in text_of and "1..247" in text_of
    assert "time zone" in str(find(issues, "site", "timezone"))
    assert find(issues, "cabinet", "id").value == "bad id!"


def test_unknown_key_suggests_the_right_one():
    issues = issues_of(MINIMAL + '\n[buses.tcp1]\ntype = "tcp"\nhost = "10.0.0.2"\ntimout_ms = 100\n')
    i = find(issues, "buses.tcp1", "timout_ms")
    assert "did you mean 'timeout_ms'" in i.message


def test_unknown_section_unknown_bus_unknown_profile_and_point():
    text = (
        MINIMAL.replace('bus = "rs485"', 'bus = "rs486"')
        + """
[fountains]
x = 1
[devices.th]
bus = "rs485"
unit = 2
profile = "xy-md03"
[devices.meter.points.voltag]
deadband = 1
"""
    )
    issues = issues_of(text)
    assert "unknown section [fountains]" in str(find(issues, "", "fountains"))
    assert find(issues, "devices.meter", "bus").allowed == "rs485"
    assert "xy-md02" in find(issues, "devices.th", "profile").allowed
    assert "did you mean 'voltage'" in find(issues, "devices.meter", "points.voltag").message


def test_type_errors_and_duplicate_unit_ids():
    text = (
        MINIMAL.replace("unit = 1", 'unit = "1"')
        + """
[devices.m2]
bus = "rs485"
unit = 7
profile = "sdm120"
poll_s = "fast"
[devices.m3]
bus = "rs485"
unit = 7
profile = "sdm120"
"""
    )
    issues = issues_of(text)
    assert "an integer" in find(issues, "devices.meter", "unit").message
    assert find(issues, "devices.m2", "poll_s").value == "fast"
    assert "one unit id" in find(issues, "devices.m3", "unit").message


def test_profile_options_and_limits_are_validated():
    text = (
        MINIMAL
        + """
[devices.th]
bus = "rs485"
unit = 2
profile = "xy-md02"
[devices.th.options]
variant = "x1000"
[devices.big]
bus = "rs485"
unit = 3
profile = "sdm630"
[devices.big.limits]
max_registers = 200
forbidden = [["holding", 10, 5]]
"""
    )
    issues = issues_of(text)
    assert find(issues, "devices.th.options", "variant").allowed == '"x10", "x100"'
    assert "1..125" in find(issues, "devices.big.limits", "max_registers").allowed
    assert find(issues, "devices.big.limits", "forbidden[0]").value == ["holding", 10, 5]


def test_point_overrides_scale_for_a_current_transformer():
    c = cfg.loads(
        MINIMAL + '[devices.meter.points.current]\nscale = 40.0\nunit = "A"\ndeadband = 0.1\n'
        "[devices.meter.points.phase_angle]\nenabled = false\n",
        "cab.toml",
    )
    dev = c.devices["meter"]
    assert dev.profile.point("current").scale == 40.0
    assert dev.points["current"].deadband == 0.1
    assert "phase_angle" not in dev.points
    assert all(p.key != "phase_angle" for p in dev.profile.points)


def test_point_decimals_default_from_the_profile_and_can_be_overridden():
    c = cfg.loads(MINIMAL + "[devices.meter.points.voltage]\ndecimals = 2\n", "cab.toml")
    prof = c.devices["meter"].profile
    assert prof.point("voltage").decimals == 2 and prof.point("frequency").decimals == 2
    assert prof.point("current").decimals == 3
    bad = issues_of(MINIMAL + "[devices.meter.points.voltage]\ndecimals = -1\n")
    assert find(bad, "devices.meter.points.voltage", "decimals").value == -1


def test_board_ports_and_pins_are_checked_against_the_board():
    text = (
        MINIMAL.replace('port = "/dev/ttyUSB0"', 'port = "rs485-7"') + '[board]\nprofile = "rpi4-rs485"\n'
        '[inputs.door]\npin = "D99"\n'
    )
    issues = issues_of(text, board_infos())
    assert "rs485-1" in find(issues, "buses.rs485", "port").message
    assert "not a pin of the board" in find(issues, "inputs.door", "pin").message
    bad_board = issues_of(MINIMAL + '[board]\nprofile = "rpi5"\n', board_infos())
    assert "rpi4-rs485" in find(bad_board, "board", "profile").allowed


def test_sim_references_must_exist():
    text = (
        MINIMAL
        + """
[sim]
fan = "meter.relay_9"
[[sim.circuits]]
name = "s1"
load_w = 100
meter = "nosuch"
[sim.contacts]
door = "pin:door"
smoke = "pin:x"
"""
    )
    issues = issues_of(text)
    assert "no point 'relay_9'" in find(issues, "sim", "fan").message
    assert find(issues, "sim", "circuits[0].meter").value == "nosuch"
    assert find(issues, "sim", "contacts.door").message == "no [inputs] entry uses this pin"
    assert find(issues, "sim", "contacts.smoke")


def test_toml_syntax_error_and_unreadable_file(tmp_path: Path):
    issues = issues_of("[cabinet\nid = 1")
    assert len(issues) == 1 and "TOML syntax error" in issues[0].message and "line 1" in issues[0].message
    missing = cfg.check(tmp_path / "nope.toml")
    assert len(missing) == 1 and "cannot read" in missing[0].message
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in cfg.check(binary)[0].message


@pytest.mark.integration
def test_config_check_command_exit_codes(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("latitude = 52.5", "latitude = 95").replace("unit = 1", "unit = 0"))
    r = subprocess.run([sys.executable, "-m", "tools.cli", "config", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stdout.count(str(bad)) == 3 and "2 error(s)" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "tools.cli", "config", "check", str(EXAMPLE)], capture_output=True, text=True
    )
    assert r.returncode == 0 and "OK" in r.stdout


def test_outputs_pins_unique_and_names_distinct_from_inputs():
    text = (
        MINIMAL
        + """
[inputs.door]
pin = "door"
[outputs.door]
pin = "aux_out_1"
[outputs.fan]
pin = "door"
initial = "yes"
"""
    )
    issues = issues_of(text, board_infos())
    assert "an input has this name too" in find(issues, "outputs.door", "").message
    assert "already used by [inputs.door]" in find(issues, "outputs.fan", "pin").message
    assert find(issues, "outputs.fan", "initial").value == "yes"


def test_sim_script_steps_are_validated():
    text = (
        MINIMAL
        + """
[[sim.script]]
at_s = -1
cmd = "fault"
[[sim.script]]
at_s = 5
cmd = "explode"
[[sim.script]]
at_s = 5
cmd = "fault"
device = "meter"
[[sim.script]]
at_s = 5
cmd = "clear"
device = "ghost"
"""
    )
    issues = issues_of(text)
    assert find(issues, "sim", "script[0].at_s").value == -1
    assert "fault" in find(issues, "sim", "script[1].cmd").allowed
    assert "missing ['kind']" in find(issues, "sim", "script[2]").message
    assert find(issues, "sim", "script[3].device").value == "ghost"


def test_point_override_edge_cases():
    issues = issues_of(MINIMAL + "[devices.meter.points.current]\nscale = 0.0\n")
    assert "must not be 0" in find(issues, "devices.meter.points.current", "scale").message
    c = cfg.loads(MINIMAL + "[devices.meter.points.current]\nscale = 40.0\n", "cab.toml")
    valid = c.devices["meter"].profile.point("current").valid
    assert valid is not None
    _lo, hi = valid
    assert hi == 40 * 100.0  # a CT ratio widens the plausible range with it
    every = "".join(
        f"[devices.meter.points.{k}]\nenabled = false\n"
        for k in (
            "voltage",
            "current",
            "active_power",
            "apparent_power",
            "reactive_power",
            "power_factor",
            "phase_angle",
            "frequency",
            "import_energy",
            "export_energy",
            "total_energy",
            "total_reactive_energy",
        )
    )
    assert "every point is disabled" in find(issues_of(MINIMAL + every), "devices.meter", "points").message


def test_limits_that_a_point_cannot_fit_are_config_errors():
    issues = issues_of(MINIMAL + '[devices.meter.limits]\nforbidden = [["input", 0, 2]]\n')
    hit = [i for i in issues if i.section == "devices.meter.limits"]
    assert hit and "forbidden" in hit[0].message and "voltage" in hit[0].message


def test_gps_disabled_needs_no_port_and_zero_is_a_value():
    c = cfg.loads(MINIMAL + "[gps]\nenabled = false\n[sim]\nelectronics_w = 0.0\n", "cab.toml")
    assert c.gps is None and c.sim.electronics_w == 0.0
    assert "required key is missing" in find(issues_of(MINIMAL + "[gps]\nbaudrate = 9600\n"), "gps", "port").message


def test_script_values_are_checked_against_the_config():
    text = (
        MINIMAL
        + """
[buses.gw]
type = "tcp"
host = "10.0.0.9"
[[sim.script]]
at_s = 1
cmd = "fault"
device = "meter"
kind = "melt"
[[sim.script]]
at_s = 2
cmd = "vanish"
bus = "gw"
[[sim.script]]
at_s = 3
cmd = "set"
input = "smoke"
value = true
"""
    )
    issues = issues_of(text)
    assert "silent" in find(issues, "sim", "script[0].kind").allowed
    assert find(issues, "sim", "script[1].bus").allowed == "a rtu bus: rs485"
    assert "door_open" in find(issues, "sim", "script[2].input").allowed


def test_file_level_messages_have_no_double_colon():
    text = str(issues_of("[cabinet\n")[0])
    assert text.startswith("cab.toml: TOML syntax error")
    missing = issues_of('[site]\nlatitude = 1.0\nlongitude = 2.0\ntimezone = "UTC"\n')
    assert [str(i) for i in missing if i.section == "cabinet"] == [
        "cab.toml: [cabinet]: required section is missing (allowed: a [cabinet] table with id)"
    ]
