"""The [lighting] config section: the example loads; every error names section, key,
value and what is allowed, all reported at once; references are cross-checked."""

from __future__ import annotations

import datetime as dt

import pytest

from agent import config as cfg
from agent.control.lighting.controller import LightingController
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
[devices.meter]
bus = "rs485"
unit = 1
profile = "sdm120"
[devices.relays]
bus = "rs485"
unit = 2
profile = "relay-board"
[devices.relays.options]
inputs = 8
[devices.lux]
bus = "rs485"
unit = 3
profile = "lux"
"""

GOOD = (
    BASE
    + """
[lighting]
[lighting.photocell]
point = "lux.lux"
[lighting.segments.s1]
contactor = "relays.relay_1"
power = "meter.active_power"
energy = "meter.import_energy"
expected_w = 900
calendar = "c"
[lighting.calendars.c]
default = "p"
rules = [{ weekdays = ["sat"], occurrences = [1, "last"], program = "q" }]
[lighting.programs.p]
period = "astro+sensor"
steps = [{ at = "23:00", level = 50 }, { at = "05:00", level = 100 }]
[lighting.programs.q]
period = "absolute"
on = "18:00"
off = "07:30"
"""
)


def test_example_cabinet_has_three_segments_a_calendar_and_a_photocell():
    c = cfg.load(cfg.EXAMPLE, board_infos())
    li = c.lighting
    assert [s.name for s in li.segments] == ["seg1", "seg2", "seg3"]
    assert li.photocell.point == "lux.lux" and li.photocell.on_lux == 35 and li.photocell.off_lux == 55
    assert li.segments[2].dim == "dali.broadcast.level" and li.segments[0].power == "meter_seg1.active_power"
    cal = li.calendars["streets"]
    assert cal.program_for(dt.date(2024, 3, 8))[0] == "weekend"  # a Friday
    assert cal.program_for(dt.date(2024, 3, 11))[0] == "evening"
    assert cal.program_for(dt.date(2024, 12, 31))[0] == "all-night"
    assert [s.level for s in li.programs["evening"].steps] == [40, 100, 100, 70]  # sorted by time
    assert li.override_expiry_s == 8 * 3600
    ctl = LightingController.from_config(c)
    assert set(ctl.points()) <= {p.name for p in c.points()}


def test_a_small_section_loads_with_defaults():
    c = cfg.loads(GOOD, "cab.toml")
    s = c.lighting.segments[0]
    assert s.contactor == "relays.relay_1" and s.dim is None and s.expected_w == 900 and not s.invert
    assert c.lighting.actuation.min_switch_interval_s == 60 and c.lighting.failure.tolerance == 0.15
    rule = c.lighting.calendars["c"].rules[0]
    assert rule.occurrences == (1, -1) and rule.weekdays == (5,)
    assert c.lighting.programs["q"].off == dt.time(7, 30)


def test_no_lighting_section_and_disabled():
    assert cfg.loads(BASE, "cab.toml").lighting is None
    assert cfg.loads(GOOD.replace("[lighting]\n", "[lighting]\nenabled = false\n"), "cab.toml").lighting is None


def test_many_errors_at_once_each_naming_section_key_value_and_what_is_allowed():
    bad = (
        GOOD.replace('contactor = "relays.relay_1"', 'contactor = "relays.input_1"')
        .replace('power = "meter.active_power"', 'power = "meter.activepower"')
        .replace('calendar = "c"', 'calendar = "cc"')
        .replace('default = "p"', 'default = "pp"')
        .replace('weekdays = ["sat"]', 'weekdays = ["saturday"]')
        .replace('at = "23:00"', 'at = "25:00"')
        .replace('off = "07:30"', 'of = "07:30"')
        .replace('point = "lux.lux"', 'point = "lux.lux"\non_lux = 80\noff_lux = 40')
    )
    issues = issues_of(bad)
    assert len(issues) >= 8
    i = find(issues, "lighting.segments.s1", "contactor")
    assert i.value == "relays.input_1" and "cannot be written" in i.message
    i = find(issues, "lighting.segments.s1", "power")
    assert "meter.active_power" in i.message and i.value == "meter.activepower"
    assert "c" in find(issues, "lighting.segments.s1", "calendar").allowed
    assert '"p", "q"' in find(issues, "lighting.calendars.c", "default").allowed
    i = find(issues, "lighting.calendars.c.rules[0]", "weekdays")
    assert "mon, tue" in i.message
    assert "HH:MM" in find(issues, "lighting.programs.p.steps[0]", "at").message
    assert find(issues, "lighting.programs.q", "off").message == "required key is missing"
    assert "did you mean 'off'" in find(issues, "lighting.programs.q", "of").message
    assert "hysteresis" in find(issues, "lighting.photocell", "on_lux").message
    text = str(cfg.ConfigError(issues))
    assert 'cab.toml: [lighting.segments.s1] contactor = "relays.input_1"' in text


def test_cross_checks_photocell_needed_duplicates_and_shapes():
    no_pc = GOOD.replace('[lighting.photocell]\npoint = "lux.lux"\n', "")
    assert "no photocell" in find(issues_of(no_pc), "lighting.programs.p", "period").message
    two = GOOD + '[lighting.segments.s2]\ncontactor = "relays.relay_1"\ncalendar = "c"\n'
    assert "already driven" in find(issues_of(two), "lighting.segments.s2", "contactor").message
    shapes = GOOD.replace(
        "expected_w = 900", "expected_w = 900\npower_curve = [[50, 0.5], [10, 1]]\ndim_range = [5]"
    ).replace("rules = [{ weekdays", 'rules = [{ dates = ["2024-02-30"], program = "q" }, { weekdays')
    issues = issues_of(shapes)
    find(issues, "lighting.segments.s1", "power_curve")
    find(issues, "lighting.segments.s1", "dim_range")
    assert "not a date" in find(issues, "lighting.calendars.c.rules[0]", "dates").message
    missing_w = GOOD.replace("expected_w = 900\n", "")
    assert "failure detection" in find(issues_of(missing_w), "lighting.segments.s1", "expected_w").message
    occ = GOOD.replace('weekdays = ["sat"], occurrences = [1, "last"]', "occurrences = [7]")
    issues = issues_of(occ)
    find(issues, "lighting.calendars.c.rules[0]", "occurrences")


@pytest.mark.integration  # a `cabinet config check` process
def test_example_config_check_command_still_passes():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "tools.cli", "config", "check", str(cfg.EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
