"""Scenario files: one TOML file per situation the rig plays (docs/rig.md).

    [scenario]  name, description, config (default: the example cabinet), start, duration, speed, uplink
    [site]      optional: latitude, longitude, elevation, timezone instead of the config's
    [weather]   optional: temperature and humidity curves, cloud cover
    [[action]]  the timeline: at, kind and the kind's arguments (tools/rig/actions.py)
    [[expect]]  what the agent must do: kind and its keys (tools/rig/expect.py)

`load(path)` returns a Scenario or raises ConfigError with every issue found, each
naming the file, the section (`scenario`, `action[2]`, `expect[0]` ...) and the key,
with "did you mean" for unknown keys, exactly as the cabinet config does (and the
config's own issues when it has any). Times are resolved here (tools/rig/timespec.py),
so every time of a Scenario is absolute and inside the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent import config as cfg
from agent.config.model import Config, Site
from agent.config.schema import MISSING, ConfigError, ConfigIssue, F, Issues, Section, key_name, read_source
from agent.config.sections import parse_site
from tools.rig.actions import Action, parse_action
from tools.rig.expect import Expectation
from tools.rig.expect_parse import alarm_ids, parse_expect
from tools.rig.timespec import DURATION_HELP, TIME_HELP, TimeContext, TimeError, parse_duration

SECTIONS = ("scenario", "site", "weather", "action", "expect")
MAX_SPEED = 100_000.0
MAX_DURATION_S = 31 * 86400.0
LIBRARY = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True)
class Curve:
    """A value over time: points (t, value) joined by straight lines, flat before the first and after the last."""

    points: tuple[tuple[float, float], ...]

    def at(self, t: float) -> float:
        pts = self.points
        if t <= pts[0][0]:
            return pts[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(pts):
            if t <= t1:
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return pts[-1][1]


@dataclass(frozen=True)
class Weather:
    temperature: Curve | None = None  # outdoor °C (None: the plant's own day curve)
    humidity: Curve | None = None  # outdoor %RH
    cloud: Curve | None = None  # cloud cover 0..1, dims the daylight


@dataclass(frozen=True)
class Scenario:
    file: str
    name: str
    description: str
    config_path: str
    config: Config
    site: Site  # the scenario's [site], else the config's
    start: float
    duration_s: float
    speed: float | None  # None: as fast as possible
    uplink: bool
    seed: int | None
    weather: Weather = Weather()
    actions: tuple[Action, ...] = ()  # by time (file order for equal times)
    expectations: tuple[Expectation, ...] = ()
    segments: tuple[str, ...] = field(default=())

    @property
    def end(self) -> float:
        return self.start + self.duration_s


def load(path: str | Path, boards: Mapping[str, cfg.BoardInfo] | None = None) -> Scenario:
    """The scenario at `path`; ConfigError with every issue (the scenario's and its config's)."""
    return loads(read_source(path), str(path), boards)


def check(path: str | Path, boards: Mapping[str, cfg.BoardInfo] | None = None) -> list[ConfigIssue]:
    try:
        load(path, boards)
    except ConfigError as e:
        return e.issues
    return []


def library() -> list[Path]:
    """The scenarios shipped with the project (tools/rig/scenarios/*.toml), by name."""
    return sorted(LIBRARY.glob("*.toml"))


def loads(text: str | bytes, source: str = "<scenario>", boards: Mapping[str, cfg.BoardInfo] | None = None) -> Scenario:
    try:
        raw = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue(source, "", "", MISSING, "UTF-8 text", f"not UTF-8: {e}")]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([ConfigIssue(source, "", "", MISSING, "TOML", f"TOML syntax error: {e}")]) from None
    issues = Issues(source)
    scenario = _parse(raw, issues, source, boards)
    if issues.items or scenario is None:
        raise ConfigError(issues.items)
    return scenario


def _parse(
    raw: Mapping[str, Any], issues: Issues, source: str, boards: Mapping[str, cfg.BoardInfo] | None
) -> Scenario | None:
    top = Section(issues, "", raw)
    for key in raw:
        if key not in SECTIONS:
            top.error(key_name(key), MISSING, ", ".join(SECTIONS), f"unknown section [{key_name(key)}]")
    if "scenario" not in raw:
        issues.add("scenario", "", MISSING, "name, start, duration", "required section is missing")
    s = issues.section("scenario", raw.get("scenario", {}))
    name = s.get("name", F("str", pattern=r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}", help="the scenario's name"))
    description = s.get("description", F("str", default="")) or ""
    config_path, config = _config(s, source, boards)
    site = config.site if config else Site(0.0, 0.0, 0.0, "UTC")
    site_ok = True
    if "site" in raw:
        before = len(issues.items)
        site = parse_site(issues.section("site", raw["site"]))
        site_ok = len(issues.items) == before  # no times against a site that is not one
    start = _start(s, site.timezone)
    duration = _duration(s, "duration", MAX_DURATION_S)
    speed_raw = s.get("speed", F("any", default="max", help='a number 0.01..100000 or "max" (as fast as possible)'))
    speed = _speed(s, speed_raw)
    uplink = bool(s.get("uplink", F("bool", default=False, help="start a broker and an ingest beside the agent")))
    seed = s.get("seed", F("int", default=None, min=0, max=2**31 - 1, help="the plant's random seed"))
    s.finish()
    if config is None or start is None or duration is None or name is None or not site_ok:
        _skim(raw, issues)
        return None
    ctx = TimeContext(start, start + duration, site.timezone, site.latitude, site.longitude, site.elevation)
    weather = _weather(issues, raw.get("weather"), ctx) if "weather" in raw else Weather()
    ids = alarm_ids(config)
    actions = []
    for i, table in enumerate(_tables(issues, raw, "action")):
        a = parse_action(Section(issues, f"action[{i}]", table), i, ctx, config, uplink, ids)
        if a is not None:
            actions.append(a)
    expects: list[Expectation] = []
    tables = _tables(issues, raw, "expect")
    named = {str(t["alarm"]) for t in tables if t.get("kind") == "alarm" and isinstance(t.get("alarm"), str)}
    for i, table in enumerate(tables):
        e = parse_expect(Section(issues, f"expect[{i}]", table), ctx, config, uplink, ids, frozenset(named))
        if e is not None:
            expects.append(e)
    _unique_names(expects)
    segments = tuple(seg.name for seg in config.lighting.segments) if config.lighting else ()
    return Scenario(
        file=source,
        name=name,
        description=description,
        config_path=config_path,
        config=config,
        site=site,
        start=start,
        duration_s=duration,
        speed=speed,
        uplink=uplink,
        seed=seed,
        weather=weather,
        actions=tuple(sorted(actions, key=lambda a: (a.t, a.index))),
        expectations=tuple(expects),
        segments=segments,
    )


def _skim(raw: Mapping[str, Any], issues: Issues) -> None:
    """Without a run to resolve times against, still report the shape of the timeline and expectations."""
    for key in ("action", "expect"):
        _tables(issues, raw, key)


def _tables(issues: Issues, raw: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    v = raw.get(key, [])
    if not isinstance(v, list) or not all(isinstance(t, Mapping) for t in v):
        issues.add("", key, v, f"[[{key}]] tables", f"{key} must be a list of [[{key}]] tables")
        return []
    return v


def _config(s: Section, source: str, boards: Mapping[str, cfg.BoardInfo] | None) -> tuple[str, Config | None]:
    rel = s.get("config", F("str", default="", help="the cabinet config, relative to this file (default the example)"))
    if rel:
        base = Path(source).resolve().parent if not source.startswith("<") else Path.cwd()
        path = (base / rel).resolve()
    else:
        path = cfg.EXAMPLE
    if boards is None:
        from agent.runtime.entry import board_infos  # deferred: the board registry, only to validate a file

        boards = board_infos()
    try:
        return str(path), cfg.load(path, boards)
    except ConfigError as e:
        s.issues.items.extend(e.issues)  # they name their own file
        s.error("config", rel or str(path), "a valid cabinet config", f"the config has {len(e.issues)} error(s)")
        return str(path), None


def _start(s: Section, timezone: str) -> float | None:
    has_start = "start" in s.data
    v = s.get("start", F("any", default=None, help="2026-06-21T18:00:00+03:00, or date and time"))
    day = s.get("date", F("any", default=None, help="2026-06-21: with time, in the site's zone"))
    at = s.get("time", F("any", default=None, help='"18:00": with date, in the site\'s zone'))
    if has_start and (day is not None or at is not None):
        s.error("start", v, "start, or date and time", "give start or date + time, not both")
        return None
    if v is not None:
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v)
            except ValueError:
                s.error("start", v, "an ISO date-time with offset", "not a date-time")
                return None
        if not isinstance(v, dt.datetime) or v.tzinfo is None:
            s.error(
                "start", v, "a date-time with offset, e.g. 2026-06-21T18:00:00+03:00", "needs a date, time and offset"
            )
            return None
        return v.timestamp()
    if day is None or at is None:
        if not has_start:
            s.error("start", MISSING, "start = <ISO with offset>, or date + time", "required key is missing")
        return None
    try:
        d = day if isinstance(day, dt.date) and not isinstance(day, dt.datetime) else dt.date.fromisoformat(str(day))
        t = at if isinstance(at, dt.time) else dt.time.fromisoformat(str(at))
    except ValueError as e:
        s.error("date", day, 'date = 2026-06-21 and time = "18:00"', f"not a date and time: {e}")
        return None
    tz = ZoneInfo(timezone)
    local = dt.datetime.combine(d, t, tzinfo=tz)
    back = dt.datetime.fromtimestamp(local.timestamp(), tz)
    if back.replace(tzinfo=None) != local.replace(tzinfo=None):
        s.error("time", at, "a local time that exists", f"{d} {t} does not exist in {timezone} (the clocks skip it)")
        return None
    return local.timestamp()


def _duration(s: Section, key: str, most: float) -> float | None:
    v = s.get(key, F("any", help=DURATION_HELP))
    if v is None:
        return None
    try:
        d = parse_duration(v)
    except TimeError as e:
        s.error(key, v, DURATION_HELP, str(e))
        return None
    if not 0 < d <= most:
        s.error(key, v, f"more than 0 and at most {most / 86400:g} days", "out of range")
        return None
    return d


def _speed(s: Section, v: Any) -> float | None:
    if v == "max" or v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.01 <= v <= MAX_SPEED:
        s.error("speed", v, f'a number 0.01..{MAX_SPEED:g}, or "max"', "not a speed")
        return None
    return float(v)


def _weather(issues: Issues, table: Any, ctx: TimeContext) -> Weather:
    w = issues.section("weather", table)
    out = Weather(
        temperature=_curve(w, "temperature", ctx, -50.0, 70.0, "°C"),
        humidity=_curve(w, "humidity", ctx, 0.0, 100.0, "%RH"),
        cloud=_curve(w, "cloud", ctx, 0.0, 1.0, "cover 0 (clear) .. 1 (overcast)", constant=True),
    )
    w.finish()
    return out


def _curve(
    w: Section, key: str, ctx: TimeContext, lo: float, hi: float, unit: str, constant: bool = False
) -> Curve | None:
    allowed = f"[[time, value], ...] with times ({TIME_HELP}) in order and values {lo:g}..{hi:g} {unit}"
    if constant:
        allowed += ", or one value"
    v = w.get(key, F("any", default=None, help=allowed))
    if v is None:
        return None
    if constant and isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [["start", v]]
    if not isinstance(v, list) or not v or not all(isinstance(p, list) and len(p) == 2 for p in v):
        w.error(key, v, allowed, "expected a list of [time, value] pairs")
        return None
    points: list[tuple[float, float]] = []
    for i, (when, value) in enumerate(v):
        try:
            t = ctx.resolve(when)
        except TimeError as e:
            w.error(f"{key}[{i}]", when, TIME_HELP, str(e))
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            w.error(f"{key}[{i}]", value, f"a number {lo:g}..{hi:g} {unit}", "out of range")
            return None
        if points and t <= points[-1][0]:
            w.error(f"{key}[{i}]", when, "times in increasing order", "not after the previous point")
            return None
        points.append((t, float(value)))
    return Curve(tuple(points))


def _unique_names(expects: list[Expectation]) -> None:
    """Names that repeat get " #2", " #3" (JUnit test cases need distinct names)."""
    seen: dict[str, int] = {}
    for i, e in enumerate(expects):
        n = seen.get(e.name, 0) + 1
        seen[e.name] = n
        if n > 1:
            expects[i] = _renamed(e, f"{e.name} #{n}")


def _renamed(e: Expectation, name: str) -> Expectation:
    return dataclasses.replace(e, name=name)  # type: ignore[type-var]
