"""Scenario files: the library validates, times resolve (offsets, clock times across DST,
sunset/sunrise with the agent's astro code, @actions), actions become the simulator's
control messages, and bad files are refused with every issue at once, each naming the
file, the section and the key."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config.schema import ConfigError
from agent.control.lighting.astro import AstroClock
from boards.sim import commands as sim_commands
from tools.rig import scenario, wiring
from tools.rig.actions import KINDS
from tools.rig.expect import AlarmExpect, NoOtherAlarms, QualityExpect, SegmentExpect
from tools.rig.timespec import TimeContext, TimeError, format_duration, parse_duration

BERLIN = ZoneInfo("Europe/Berlin")
HEAD = """
[scenario]
name = "t"
start = 2026-09-16T18:00:00+02:00
duration = "12h"
"""


def load(text: str, tmp_path: Path) -> scenario.Scenario:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return scenario.load(p)


def issues(text: str, tmp_path: Path) -> list[str]:
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        scenario.load(p)
    return [str(i) for i in e.value.issues]


def one(found: list[str], needle: str) -> str:
    hits = [i for i in found if needle in i]
    assert hits, f"no issue with {needle!r} in:\n" + "\n".join(found)
    return hits[0]


# ---------------------------------------------------------------- the library


def test_the_library_has_the_issues_scenarios():
    names = {p.stem for p in scenario.library()}
    assert len(names) >= 12
    for needed in ("madinah-summer-night", "berlin-dst-spring", "tromso-polar-night", "cable-theft", "broker-down-2h"):
        assert needed in names


@pytest.mark.parametrize("path", scenario.library(), ids=lambda p: p.stem)
def test_every_library_scenario_validates(path):
    s = scenario.load(path)
    assert s.name == path.stem
    assert s.expectations, "a library scenario checks something"
    assert any(isinstance(e, NoOtherAlarms) for e in s.expectations)
    for a in s.actions:
        msg = a.message()
        if msg is not None:
            assert sim_commands.check(msg) == msg["cmd"]  # the simulator accepts its shape


# ---------------------------------------------------------------- times


def test_sunset_and_sunrise_come_from_the_agents_astro_clock(tmp_path):
    window = 'from = "sunset+20m"\nto = "sunrise-1h"\n'
    s = load(HEAD + '[[expect]]\nkind = "segment"\nsegment = "seg1"\nstate = "on"\n' + window, tmp_path)
    e = s.expectations[0]
    assert isinstance(e, SegmentExpect)
    night = AstroClock(52.5219, 13.4132, 34.0, "Europe/Berlin").night_of(dt.date(2026, 9, 16))
    assert night.sunset is not None and night.sunrise is not None
    assert e.window.start == pytest.approx(night.sunset + 1200)
    assert e.window.end == pytest.approx(night.sunrise - 3600)
    assert e.name == "seg1 on sunset+20m .. sunrise-1h"


def test_clock_times_named_actions_and_order(tmp_path):
    s = load(
        HEAD
        + '[[action]]\nname = "cut"\nat = "03:00"\nkind = "cable_cut"\ncircuit = "segment1"\n'
        + '[[action]]\nat = "@cut+2h"\nkind = "cable_cut"\ncircuit = "segment1"\ncut = false\n'
        + '[[action]]\nat = "1h"\nkind = "door"\n',
        tmp_path,
    )
    t03 = dt.datetime(2026, 9, 17, 3, 0, tzinfo=BERLIN).timestamp()
    assert [(a.kind, a.t) for a in s.actions] == [
        ("door", s.start + 3600),
        ("cable_cut", t03),
        ("cable_cut", t03 + 7200),
    ]
    assert s.actions[1].message() == {"cmd": "circuit", "circuit": "segment1", "cut": True}
    assert s.actions[2].message() == {"cmd": "circuit", "circuit": "segment1", "cut": False}


def test_a_named_action_with_a_hyphen_is_found_with_its_offset(tmp_path):
    s = load(
        HEAD
        + '[[action]]\nname = "door-open"\nat = "1h"\nkind = "door"\n'
        + '[[action]]\nat = "@door-open+10m"\nkind = "door"\nopen = false\n'
        + '[[action]]\nat = "@door-open - 5m"\nkind = "flood"\n',
        tmp_path,
    )
    assert [a.t - s.start for a in s.actions] == [3300, 3600, 4200]


def test_clock_times_across_dst():
    spring = dt.datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN).timestamp()
    ctx = TimeContext(spring, spring + 86400, "Europe/Berlin", 52.5, 13.4)
    assert ctx.resolve("05:25") - ctx.resolve("01:05") == 3 * 3600 + 20 * 60  # one hour fewer
    with pytest.raises(TimeError, match="does not exist on 2026-03-29"):
        ctx.resolve("02:30")
    autumn = dt.datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN).timestamp()
    ctx = TimeContext(autumn, autumn + 86400, "Europe/Berlin", 52.5, 13.4)
    assert ctx.resolve("05:25") - ctx.resolve("01:05") == 5 * 3600 + 20 * 60  # one hour more
    t = ctx.resolve("02:30")  # twice that night: the first
    assert dt.datetime.fromtimestamp(t, BERLIN).utcoffset() == dt.timedelta(hours=2)


def test_time_forms():
    start = dt.datetime(2026, 6, 21, 12, 0, tzinfo=BERLIN).timestamp()
    ctx = TimeContext(start, start + 86400, "Europe/Berlin", 52.5, 13.4)
    assert ctx.resolve("2h30m") == start + 9000
    assert ctx.resolve(90) == start + 90
    assert ctx.resolve("end-1h") == start + 82800
    assert ctx.resolve("2026-06-21T14:00:00+02:00") == start + 7200
    assert ctx.resolve(dt.datetime(2026, 6, 21, 14, 0, tzinfo=BERLIN)) == start + 7200
    assert ctx.resolve("12:00") == start  # at or after the start
    for bad, why in (("30h", "outside the run"), ("teatime", "not a time"), ("@x", "no earlier")):
        with pytest.raises(TimeError, match=why):
            ctx.resolve(bad)
    polar = dt.datetime(2026, 12, 16, 0, 0, tzinfo=ZoneInfo("Europe/Oslo")).timestamp()
    ctx = TimeContext(polar, polar + 86400, "Europe/Oslo", 69.6492, 18.9553)
    with pytest.raises(TimeError, match="no sunrise near the run"):
        ctx.resolve("sunrise")


def test_sunset_is_the_first_nights_also_just_before_the_start():
    astro = AstroClock(52.5, 13.4, 0.0, "Europe/Berlin")
    night = astro.night_of(dt.date(2026, 9, 16))
    assert night.sunset is not None and night.sunrise is not None
    late = night.sunset + 1800  # a run that starts half an hour after sunset
    ctx = TimeContext(late, late + 6 * 3600, "Europe/Berlin", 52.5, 13.4)
    assert ctx.resolve("sunset+1h") == pytest.approx(night.sunset + 3600)
    with pytest.raises(TimeError, match="outside the run"):
        ctx.resolve("sunset")
    assert ctx.resolve("sunrise-2h", inside=False) == pytest.approx(night.sunrise - 7200)
    noon = dt.datetime(2026, 9, 16, 12, 0, tzinfo=BERLIN).timestamp()  # before solar noon: today's sunset
    ctx = TimeContext(noon, noon + 86400, "Europe/Berlin", 52.5, 13.4)
    assert ctx.resolve("sunset") == pytest.approx(night.sunset)


def test_durations():
    assert parse_duration("2h30m") == 9000
    assert parse_duration("1d") == 86400 and parse_duration("1.5h") == 5400 and parse_duration(0) == 0
    for bad in ("", "2x", "-1h", True, -5, "h"):
        with pytest.raises(TimeError):
            parse_duration(bad)
    assert format_duration(9000) == "2h30m" and format_duration(0) == "0s" and format_duration(86461) == "1d1m1s"


def test_start_from_date_and_time_in_the_sites_zone(tmp_path):
    s = load(
        '[scenario]\nname = "t"\ndate = 2026-06-17\ntime = "16:00"\nduration = "1h"\nspeed = 600\n'
        '[site]\nlatitude = 24.4672\nlongitude = 39.6112\ntimezone = "Asia/Riyadh"\n',
        tmp_path,
    )
    assert s.start == dt.datetime(2026, 6, 17, 13, 0, tzinfo=dt.UTC).timestamp()
    assert s.speed == 600 and s.site.timezone == "Asia/Riyadh" and s.config.site.timezone == "Europe/Berlin"


def test_weather_curves(tmp_path):
    s = load(HEAD + '[weather]\ntemperature = [["start", 10], ["2h", 20], ["end", 0]]\ncloud = 0.5\n', tmp_path)
    assert s.weather.temperature is not None and s.weather.cloud is not None
    assert s.weather.temperature.at(s.start - 10) == 10
    assert s.weather.temperature.at(s.start + 3600) == pytest.approx(15)
    assert s.weather.temperature.at(s.start + 7 * 3600) == pytest.approx(10)
    assert s.weather.cloud.at(s.end) == 0.5 and s.weather.humidity is None


def test_no_other_alarms_allows_the_files_alarm_expectations(tmp_path):
    s = load(
        HEAD
        + '[[expect]]\nkind = "alarm"\nalarm = "climate.flood"\nafter = "1h"\n'
        + '[[expect]]\nkind = "no_other_alarms"\nallowed = ["climate.ups_*"]\n'
        + '[[expect]]\nkind = "quality"\npoint = "lux.lux"\nquality = "good"\n',
        tmp_path,
    )
    alarm, others, quality = s.expectations
    assert isinstance(alarm, AlarmExpect) and alarm.within_s == 300
    assert isinstance(others, NoOtherAlarms) and others.allowed == ("climate.ups_*", "climate.flood")
    assert isinstance(quality, QualityExpect) and quality.window.start == s.start + 60  # after the first polls


# ---------------------------------------------------------------- refusals


def test_every_issue_at_once_with_file_section_and_key(tmp_path):
    found = issues(
        """
[scenario]
name = "bad"
start = 2026-09-16T18:00:00+02:00
duration = "12h"
sped = 10

[weather]
temperature = [["start", 10], ["1h", 99]]

[[action]]
at = "30h"
kind = "device_fault"
device = "meter_x"
fault = "melted"

[[action]]
at = "1h"
kind = "broker"
up = false

[[action]]
at = "1h"
kind = "explode"
device = "lux"

[[action]]
at = "2h"
kind = "clock_unset"

[[action]]
at = "2h"
kind = "lamps_failed"
circuit = "segment1"
share = 0.5
shar = 1

[[expect]]
kind = "quality"
point = "meter_seg9.power"
quality = "good"

[[expect]]
kind = "alarm"
alarm = "climate.flod"
after = "sunrise"

[[expect]]
kind = "segment"
segment = "seg9"
state = "on"

[[expect]]
kind = "delivered"

[[expect]]
kind = "no_other_alarms"
allowed = ["climate.nothing*"]

[extra]
x = 1
""",
        tmp_path,
    )
    path = str(tmp_path / "s.toml")
    assert all(i.startswith(path + ": ") for i in found)
    assert "did you mean 'speed'" in one(found, "[scenario] sped = 10")
    one(found, "[weather] temperature[1] = 99: out of range")
    one(found, '[action[0]] at = "30h": outside the run')
    one(found, '[action[0]] device = "meter_x": not one of the allowed values')
    one(found, '[action[0]] fault = "melted"')
    one(found, '[action[1]] kind = "broker": broker needs the scenario\'s broker')
    one(found, '[action[2]] kind = "explode": not one of the allowed values')
    one(found, '[action[3]] at = "2h": the clock can only be unset at boot')
    assert "did you mean 'share'" in one(found, "[action[4]] shar = 1")
    assert "did you mean 'meter_seg2.power_factor'" in one(found, '[expect[0]] point = "meter_seg9.power"')
    assert "did you mean 'climate.flood'" in one(found, '[expect[1]] alarm = "climate.flod"')
    one(found, '[expect[2]] segment = "seg9"')
    one(found, '[expect[3]] kind = "delivered": counting deliveries needs the uplink')
    one(found, '[expect[4]] allowed[0] = "climate.nothing*": matches no alarm')
    one(found, "extra: unknown section [extra]")
    assert len(found) == 16, "\n".join(found)


def test_a_later_action_named_before_it_is_defined_is_refused(tmp_path):
    found = issues(
        HEAD
        + '[[action]]\nat = "@cut+2h"\nkind = "door"\n'
        + '[[action]]\nname = "cut"\nat = "99h"\nkind = "door"\n'
        + '[[action]]\nat = "@cut"\nkind = "door"\n',
        tmp_path,
    )
    one(found, "[action[0]] at = \"@cut+2h\": no earlier [[action]] named 'cut'")
    one(found, "[action[2]] at = \"@cut\": the [[action]] named 'cut' has errors of its own")


def test_start_and_run_refusals(tmp_path):
    found = issues('[scenario]\nname = "t"\ndate = 2026-03-29\ntime = "02:30"\nduration = "0s"\nspeed = 0\n', tmp_path)
    one(found, '[scenario] time = "02:30"')
    one(found, "does not exist in Europe/Berlin")
    one(found, '[scenario] duration = "0s": out of range')
    one(found, "[scenario] speed = 0: not a speed")
    found = issues('[scenario]\nname = "t"\nstart = 2026-09-16T18:00:00\nduration = "1h"\n', tmp_path)
    one(found, "[scenario] start = ")
    found = issues("[scenario\n", tmp_path)
    one(found, "TOML syntax error")
    found = issues('[scenario]\nname = "t"\nduration = "1h"\n', tmp_path)
    one(found, "[scenario] start: required key is missing")


def test_the_configs_own_issues_come_with_the_scenarios(tmp_path):
    (tmp_path / "cab.toml").write_text('[cabinet]\nid = "X"\n')
    found = issues(HEAD + 'config = "cab.toml"\n', tmp_path)
    assert any(i.startswith(str(tmp_path / "cab.toml")) for i in found)
    one(found, '[scenario] config = "cab.toml": the config has')


def test_actions_that_need_the_uplink_and_commands_are_checked(tmp_path):
    up = HEAD.replace('duration = "12h"', 'duration = "12h"\nuplink = true')
    s = load(
        up
        + '[[action]]\nat = "1h"\nkind = "command"\ncommand = "light.override"\n'
        + 'args = { on = true, segments = ["seg1"], for_s = 600 }\n'
        + '[[action]]\nat = "2h"\nkind = "ota_offer"\ndeployment = "rel-1"\ntarget = "a.bundle"\n'
        + '[[action]]\nat = "3h"\nkind = "override"\nlevel = 50\nsegments = ["seg3"]\nfor = "30m"\n',
        tmp_path,
    )
    cmd, ota, ov = s.actions
    assert cmd.message() is None and cmd.args == {
        "command": "light.override",
        "args": {"on": True, "segments": ["seg1"], "for_s": 600},
    }
    assert ota.args == {"deployment": "rel-1", "target": "a.bundle"}
    assert ov.args == {"on": True, "segments": ["seg3"], "level": 50.0, "for_s": 1800.0}
    found = issues(
        up
        + '[[action]]\nat = "1h"\nkind = "command"\ncommand = "light.override"\nargs = { level = 500 }\n'
        + '[[action]]\nat = "1h"\nkind = "command"\ncommand = "light.cancel"\nargs = { segments = ["segX"] }\n'
        + '[[action]]\nat = "2h"\nkind = "ota_offer"\ndeployment = "-bad"\ntarget = "a.bundle"\n'
        + '[[action]]\nat = "3h"\nkind = "override"\nfor = "30m"\nforever = true\n'
        + '[[action]]\nat = "3h"\nkind = "alarm_ack"\nalarm = "climate.nope"\n',
        tmp_path,
    )
    one(found, "[action[0]] args = ")
    one(found, "level: 500 is out of range")
    one(found, "[action[1]] args = ")
    one(found, "no segment 'segX'")
    one(found, '[action[2]] deployment = "-bad": badly formed')
    one(found, "[action[3]] forever = true: for is given too")
    one(found, '[action[4]] alarm = "climate.nope": no such alarm')


def test_every_plant_action_is_a_simulator_message(tmp_path):
    """One action of each plant kind; each message passes the simulator's own check."""
    tables = {
        "device_fault": 'device = "lux"\nfault = "slow"\ndelay_ms = 800',
        "device_clear": 'device = "lux"',
        "line_vanish": 'bus = "rs485"',
        "line_restore": 'bus = "rs485"',
        "endpoint_refuse": 'bus = "dali"',
        "door": "open = true",
        "flood": "",
        "mains": "on = false",
        "ups_replace_battery": "",
        "fan_failed": "",
        "lamps_failed": 'circuit = "segment2"\nshare = 0.5',
        "contactor_stuck": 'circuit = "segment2"\nstuck = "open"',
        "cable_cut": 'circuit = "dali_segment"',
        "gps": 'mode = "no_fix"',
    }
    assert set(tables) == {k for k, v in KINDS.items() if v.plant}
    text = HEAD + "".join(f'[[action]]\nat = "1h"\nkind = "{k}"\n{v}\n' for k, v in tables.items())
    s = load(text, tmp_path)
    msgs = [a.message() for a in s.actions]
    assert all(m is not None and sim_commands.check(m) == m["cmd"] for m in msgs)
    assert msgs[0] == {"cmd": "fault", "device": "lux", "kind": "slow", "delay_ms": 800}
    assert msgs[4] == {"cmd": "refuse", "bus": "dali", "on": True}
    assert msgs[7] == {"cmd": "set", "input": "mains_ok", "value": False}
    assert msgs[11] == {"cmd": "circuit", "circuit": "segment2", "stuck": "open"}
    found = issues(HEAD + '[[action]]\nat = "1h"\nkind = "device_fault"\ndevice = "lux"\nfault = "slow"\n', tmp_path)
    one(found, "[action[0]] delay_ms: a slow device needs delay_ms")


def test_a_bad_site_is_reported_once(tmp_path):
    site = '[site]\nlatitude = 95\nlongitude = 0\ntimezone = "Mars/Olympus"\n'
    found = issues(
        HEAD + site + '[[expect]]\nkind = "segment"\nsegment = "seg1"\nstate = "on"\nfrom = "sunset"\n', tmp_path
    )
    one(found, "[site] latitude = 95.0: out of range")
    one(found, '[site] timezone = "Mars/Olympus"')
    assert len(found) == 2, found


def test_the_agent_runs_the_config_with_the_scenarios_site():
    from agent import config as cfg

    mad = scenario.load(scenario.LIBRARY / "madinah-summer-night.toml")
    patched = cfg.loads(wiring.config_text(mad), "patched.toml")
    assert patched.site == mad.site and patched.site.timezone == "Asia/Riyadh"
    assert patched.devices.keys() == mad.config.devices.keys()
    berlin = scenario.load(scenario.LIBRARY / "lamp-failures.toml")
    assert wiring.config_text(berlin) == Path(berlin.config_path).read_text()


def test_a_new_record_and_the_segments_circuits():
    sc = scenario.load(scenario.LIBRARY / "lamp-failures.toml")
    r = wiring.new_record(sc)
    assert (r.scenario, r.config_id, r.start, r.end, r.speed) == (
        "lamp-failures",
        "CAB-SIM-0001",
        sc.start,
        sc.end,
        None,
    )
    assert r.segments == ("seg1", "seg2", "seg3") and r.photocell == (35.0, 55.0)
    assert r.site.timezone == "Europe/Berlin" and not r.alarms and not r.exit.crashed
    assert wiring.segment_circuits(sc) == {"seg1": "segment1", "seg2": "segment2", "seg3": "dali_segment"}


def test_docs_show_every_library_scenario_and_their_examples_validate(tmp_path):
    """docs/rig.md: each library file verbatim, and every scenario block on the page loads."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "rig.md").read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```$", doc, flags=re.M | re.S)
    for path in scenario.library():
        assert path.read_text() in blocks, f"docs/rig.md lacks {path.name} verbatim"
    examples = [b for b in blocks if "[scenario]" in b]
    assert len(examples) > len(scenario.library())  # and the example at the top
    for i, text in enumerate(examples):
        p = tmp_path / f"example{i}.toml"
        p.write_text(text)
        assert scenario.check(p) == [], text[:200]
