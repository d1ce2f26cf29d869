"""Property-based fuzzing of config loading: whatever a config file holds, `agent.config.loads`
returns a Config or raises ConfigError whose issues each name a section or key, never any
other exception; and `cabinet config check` turns that into error lines and exit status 2,
never a traceback.

The fuzzer starts from the example cabinet (boards/sim/cabinet.toml) plus a few sections it
does not use ([uplink], [outbox], [trust], [ota], a generic device, device limits, a [sim]
script, boost and astro steps...), so every parser is reached, and mutates it: values
replaced by other types, NaN/inf/huge/negative numbers, empty strings, lists of the wrong
length, required keys removed, unknown keys added, values nested wrongly, whole sections
set to a scalar. The result is written back as TOML (a small writer below: every table
inline) and loaded.

CONFIG_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:xdist tests/test_config_fuzz.py
runs the fuzzer longer (default: 300 examples, a few seconds).
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent import config as cfg
from agent.control.alarms.manager import AlarmDef, AlarmManager, Condition
from agent.control.climate.controller import ClimateController
from agent.control.lighting.controller import LightingController
from agent.runtime.entry import board_infos

pytestmark = pytest.mark.chaos  # the fuzzers belong to the chaos suite (docs/reliability.md)

ROOT = Path(__file__).resolve().parent.parent
BOARDS = board_infos()
EXAMPLES = int(os.environ.get("CONFIG_FUZZ_EXAMPLES", "300"))
NOON = dt.datetime(2026, 6, 21, 10, 0, tzinfo=dt.UTC)
ZONES: list[dt.tzinfo | None] = [None, dt.UTC, dt.timezone(dt.timedelta(hours=2))]

# Sections and keys the example cabinet leaves out, so the fuzzer reaches their parsers too.
EXTRAS: dict[str, Any] = {
    "uplink": {
        "broker": "mqtt.example.city",
        "tls": False,
        "port": 1883,
        "ingest_key": "ab" * 32,
        "keepalive_s": 30,
        "batch_max_age_s": 60.0,
        "backoff_initial_s": 1.0,
    },
    "outbox": {"max_mb": 64, "commit_interval_ms": 100, "queue_max": 20000},
    "trust": {"max_skew_s": 300, "operators": {"ops": {"key": "cd" * 32, "allow": ["ping", "light.override"]}}},
    "ota": {"repository": "https://updates.example.city/cabinet", "trial_s": 300, "give_up_h": 48, "retry_s": 60},
}
DEVICE_EXTRAS: dict[str, Any] = {
    "pump": {
        "bus": "dali",
        "unit": 2,
        "profile": "generic",
        "poll_s": 5,
        "options": {
            "limits": {"max_registers": 32, "max_gap": 4, "forbidden": [["holding", 100, 110]]},
            "points": [
                {"key": "state", "table": "holding", "address": 31, "enum": {"0": "off", "1": "on"}},
                {
                    "key": "flow",
                    "table": "input",
                    "address": 32,
                    "type": "float32",
                    "word_order": "little",
                    "unit": "m3/h",
                    "valid": [0, 500],
                },
                {"key": "run", "table": "coil", "address": 0, "writable": True},
            ],
        },
        "limits": {"max_registers": 60, "max_gap": 2, "forbidden": [["holding", 200, 210]]},
        "points": {"flow": {"scale": 2.5, "offset": -1, "decimals": 2, "heartbeat_s": 60, "deadband": 0.1}},
    }
}


def base_config() -> dict[str, Any]:
    with (ROOT / "boards" / "sim" / "cabinet.toml").open("rb") as f:
        raw = tomllib.load(f)
    raw.update(copy.deepcopy(EXTRAS))
    raw["devices"].update(copy.deepcopy(DEVICE_EXTRAS))
    raw["devices"]["lux"]["options"] = {"table": "input", "address": 7, "type": "uint32", "scale": 0.1}
    raw["buses"]["rs485"]["inter_frame_ms"] = 5
    raw["inputs"]["door"]["poll_s"] = 0.5
    raw["sim"]["script"] = [
        {"at_s": 10, "cmd": "fault", "device": "meter_main", "kind": "slow", "delay_ms": 500},
        {"at_s": 20, "cmd": "set", "input": "door_open", "value": True},
        {"at_s": 30, "cmd": "vanish", "bus": "rs485"},
    ]
    climate = raw["climate"]
    climate["fans"][0].update({"min_on_s": 30, "monitor": "pump.flow", "monitor_min": 1, "monitor_max": 400})
    climate["sensor"] = {"max_age_s": 60, "temperature_range": [-40, 80], "humidity_range": [0, 100]}
    climate["fan_check"] = {"after_s": 1200, "drop_k": 0.5}
    climate["limits"].update({"temperature_band_k": 2, "raise_delay_s": 60})
    climate["flood"]["release_s"] = 600
    raw["alarms"]["climate.flood"] = {"severity": "critical", "latching": True, "clear_delay_s": 10}
    light = raw["lighting"]
    light["segments"]["seg3"]["dim_range"] = [0, 254]
    light["programs"]["boosted"] = {
        "period": "absolute",
        "on": "18:00",
        "off": "06:00",
        "level": 80,
        "astro_steps": [{"event": "sunrise", "offset_min": -30, "level": 100}],
        "boost": {"point": "dio.door", "level": 100, "hold_s": 120},
        "ramp_up_s": 10,
    }
    light["calendars"]["streets"]["rules"].append({"dates": ["2026-12-24"], "program": "boosted"})
    return raw


BASE = base_config()


# --- a small TOML writer: every table inline, so any nesting is one line ---------------------------


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def dumps(doc: dict[str, Any]) -> str:
    return "".join(f"{_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


def test_writer_round_trips_the_base():
    text = dumps(BASE)
    assert tomllib.loads(text) == BASE
    c = cfg.loads(text, "<fuzz>", BOARDS)  # the base itself is a valid config
    assert "pump.flow" in {p.name for p in c.points()} and c.uplink is not None and c.trust.operators


# --- mutations -----------------------------------------------------------------------------------

SPECIAL_NUMBERS = (
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    5e-324,
    -0.0,
    -1,
    0,
    2**63 - 1,
    -(2**63),
    10**30,
    -(10**30),
    0.5,
    1e-9,
    65536,
    -65536,
    90,
    -90,
    180,
    100,
    86400,
    1e7,
)
SPECIAL_STRINGS = (
    *("", " ", "x", "\n", "pin:door", "dio.door", "relays.relay_1", "climate.temperature", "lux.lux", "*", "now"),
    *("00:00", "24:00", "23:59:60", "12:00", "--02-29", "--12-31", "2026-02-30", "0001-01-01", "9999-12-31"),
    *("0000-01-01", "--00-00", "--13-01", "2026-1-1"),
    *("UTC", "Etc/GMT-14", "Pacific/Kiritimati", "2026-06-21T12:00:00+02:00", "sunrise", "last", "absolute"),
)

scalars = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_STRINGS),
    st.text(max_size=12),
    st.booleans(),
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        timezones=st.sampled_from(ZONES),
    ),
    st.dates(),
    st.times(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.lists(st.sampled_from(SPECIAL_NUMBERS), min_size=0, max_size=4),
    st.lists(st.lists(st.sampled_from(SPECIAL_NUMBERS), max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    st.lists(st.dictionaries(st.text(max_size=8), scalars, max_size=2), max_size=2),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(("enabled", "x", "", "points", "options", "0", "a.b")))

Path_ = tuple[Any, ...]
OPS = ("replace", "replace", "delete", "add", "nest", "number", "near", "string", "string", "length", "copy")


def paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path into the document (dict keys and list indices), the root excluded."""
    out: list[Path_] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        p = (*prefix, k)
        out.append(p)
        out.extend(paths(v, p))
    return out


def _at(doc: Any, path: Path_) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def mutate(doc: dict[str, Any], data: st.DataObject) -> None:
    """One mutation of `doc`, in place."""
    every = paths(doc)
    op = data.draw(st.sampled_from(OPS))
    if op == "add":
        containers = [(), *(p for p in every if isinstance(_at(doc, p), dict))]
        target = _at(doc, data.draw(st.sampled_from(containers)))
        target[data.draw(keys)] = data.draw(values)
        return
    if not every:
        return
    leaves = [p for p in every if not isinstance(_at(doc, p), (dict, list))]
    prefer_leaf: bool = data.draw(st.booleans())
    path = data.draw(st.sampled_from(leaves if leaves and prefer_leaf else every))
    parent, key = _at(doc, path[:-1]), path[-1]
    old = parent[key]
    if op == "replace":
        parent[key] = data.draw(values)
    elif op == "delete":
        del parent[key]
    elif op == "nest":
        parent[key] = _nest(old, data)
    elif op == "number":
        parent[key] = data.draw(st.sampled_from(SPECIAL_NUMBERS))
    elif op == "string":  # a string for a string: a plausible value of the right type
        parent[key] = data.draw(st.sampled_from(SPECIAL_STRINGS)) if isinstance(old, str) else old
    elif op == "near":  # a number moved about its value: near the edges of its range
        parent[key] = _near(old, data) if isinstance(old, (int, float)) and not isinstance(old, bool) else old
    elif op == "length":  # lists of the wrong length, or a list's element replaced
        if isinstance(old, list):
            choice = data.draw(st.sampled_from(("drop", "dup", "special")))
            if choice == "drop" and old:
                old.pop()
            elif choice == "dup":
                old.append(copy.deepcopy(old[0]) if old else data.draw(scalars))
            elif old:
                old[data.draw(st.integers(0, len(old) - 1))] = data.draw(st.sampled_from(SPECIAL_NUMBERS))
        else:
            parent[key] = [old, old] if data.draw(st.booleans()) else []
    else:  # "copy": a value from elsewhere in the file, plausible but of the wrong kind
        parent[key] = copy.deepcopy(_at(doc, data.draw(st.sampled_from(every))))


def _near(x: float, data: st.DataObject) -> float:
    how = data.draw(st.sampled_from(("scale", "negate", "step", "tiny")))
    try:
        if how == "scale":
            return x * 10.0 ** data.draw(st.integers(-6, 6))
        if how == "negate":
            return -x
        if how == "step":
            return x + data.draw(st.sampled_from((-1, 1, -0.5, 0.5, -100, 100)))
        return x + data.draw(st.sampled_from((-1e-9, 1e-9)))
    except OverflowError:
        return x


def _nest(old: Any, data: st.DataObject) -> Any:
    how = data.draw(st.sampled_from(("list", "table", "list-of-table")))
    if how == "list":
        return [old]
    if how == "table":
        return {data.draw(keys): old}
    return [{"x": old}]


def check_loads(doc: dict[str, Any]) -> None:
    """`loads` gives a Config whose controllers build and step, or a ConfigError whose issues
    each name a section or key on one line."""
    text = dumps(doc)
    tomllib.loads(text)  # the writer wrote TOML: a syntax error would hide what the fuzzer is after
    try:
        config = cfg.loads(text, "<fuzz>", BOARDS)
    except cfg.ConfigError as e:
        assert e.issues, "a ConfigError without issues"
        for issue in e.issues:
            assert issue.section or issue.key, f"an issue naming no section or key: {issue}"
            assert len(str(issue).splitlines()) == 1, f"an issue on more than one line: {issue}"
        return
    run_controllers(config)


def run_controllers(config: cfg.Config) -> None:
    """What the control loop does with a loaded config (agent.runtime.control_loop.Controls): the
    controllers and the alarm manager are built from it and step; none may raise."""
    defs: list[AlarmDef] = []
    conditions: list[Condition] = []
    if config.climate is not None:
        climate = ClimateController(config.climate)
        defs = climate.definitions()
        conditions += climate.step(0.0, {}).conditions
    if config.lighting is not None:
        conditions += LightingController.from_config(config).step(0.0, NOON, {}).conditions
    AlarmManager(defs, dict(config.alarms)).update(0.0, conditions, wall=NOON.timestamp())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 300,  # the suite's run is repeatable; a long local run explores
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking (minutes here); the draws show the case
)
@given(st.data())
def test_any_mutated_config_loads_or_names_its_errors(data: st.DataObject):
    doc = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(doc, data)
    check_loads(doc)


def test_every_section_as_a_scalar():
    for section in BASE:
        scalar_values: tuple[Any, ...] = (0, "x", [], True, math.nan)
        for v in scalar_values:
            doc = copy.deepcopy(BASE)
            doc[section] = v
            check_loads(doc)


# --- the named cases of issue 13 and the command line --------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for dotted, v in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[last] = v
    return doc


def _issues(doc: dict[str, Any]) -> list[cfg.ConfigIssue]:
    with pytest.raises(cfg.ConfigError) as e:
        cfg.loads(dumps(doc), "cab.toml", BOARDS)
    return e.value.issues


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("temperature_low", [math.inf, -10]),
        ("temperature_low", [0, -math.inf]),
        ("temperature_high", [45, math.nan]),
        ("humidity_high", [-math.inf, math.inf]),
        ("humidity_low", [10**400, 5]),
    ],
)
def test_limit_pairs_refuse_nan_and_infinity(key: str, value: list[Any]):
    issues = _issues(_with(**{f"climate__limits__{key}": value}))
    assert [(i.section, i.key) for i in issues] == [("climate.limits", key)], "\n".join(map(str, issues))


def test_year_zero_is_not_a_date():
    """ "0000-01-01" passed the check and then failed every lighting step (a rule's start as a date)."""
    doc = _with(lighting__calendars__streets__rules__2__start="0000-10-01")
    issues = _issues(doc)
    assert [(i.section, i.key) for i in issues] == [("lighting.calendars.streets.rules[2]", "start")]


@pytest.mark.parametrize(
    "changes",
    [
        {"site__latitude": 90, "site__longitude": 180},
        {"site__latitude": -90, "site__timezone": "Etc/GMT-14"},
        {"lighting__calendars__streets__rules__0__dates": ["--02-29", "9999-12-31", "0001-01-01"]},
        {"lighting__calendars__streets__rules__2__start": "9999-12-31", "lighting__day_start": "00:00"},
        {"climate__limits__temperature_high": [199.5, 200], "climate__limits__temperature_low": [-99, -100]},
        {"climate__limits__humidity_high": [99.9, 100], "climate__limits__humidity_band": 50},
        {"lighting__segments__seg3__dim_range": [1e9, -1e9]},
    ],
)
def test_edge_values_load_and_run(changes: dict[str, Any]):
    """Values at the edges of what the check allows: the controllers build and step on them."""
    run_controllers(cfg.loads(dumps(_with(**changes)), "<edge>", BOARDS))


def _cli_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


BAD_FILES = {
    "inf_limit": ("temperature_low = [0, -10]", "temperature_low = [inf, -10]", "[climate.limits] temperature_low"),
    "nan_curve": ("power_curve = [[0, 0.1]", "power_curve = [[0, nan]", "[lighting.segments.seg3] power_curve"),
    "huge_int": ("elevation = 34.0", "elevation = 1" + "0" * 400, "[site] elevation"),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_config_check_cli_prints_errors_and_exits_2(tmp_path: Path, name: str):
    old, new, named = BAD_FILES[name]
    text = (ROOT / "boards" / "sim" / "cabinet.toml").read_text()
    assert old in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new, 1))
    r = _cli_check(path)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out
    assert any(line.startswith(f"{path}: ") and named in line for line in r.stdout.splitlines()), out
