"""The lighting controller's caches give exactly what computing from scratch gives.

Caches under test: the sun's phase certified by an elevation-rate bound (AstroClock.phase),
program outcomes held until their next boundary (Schedule.outcome), the local time/calendar
day window (LightingController._local), the per-segment steady-state fast path (step) and the
monitor's per-level thresholds. Reference: the same controller with those caches switched off,
stepped in lockstep through DST change days and calendar rule boundaries.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from agent.control.lighting.astro import DAY_ELEVATION, NIGHT_ELEVATION, AstroClock
from agent.control.lighting.calendar import LAST, Calendar, DateSpec, Rule
from agent.control.lighting.model import Actuation
from agent.control.lighting.programs import AstroStep, Boost, PhotocellView, Program, Schedule, Step
from tests.test_lighting_rig import EVENING, SITES, Rig, dimmed, seg, settings, ts

PROGRAMS = {
    "evening": EVENING,
    "weekend": Program(
        "weekend", period="astro+sensor", steps=(Step(dt.time(12), 100.0), Step(dt.time(1), 60.0)), ramp_down_s=60
    ),
    "abs": Program(
        "abs",
        period="absolute",
        on=dt.time(17, 30),
        off=dt.time(6, 15),
        level=80,
        steps=(Step(dt.time(2, 30), 50.0), Step(dt.time(3), 0.0), Step(dt.time(4, 30), 90.0)),
        astro_steps=(AstroStep("sunrise", -20, 100.0),),
        ramp_up_s=30,
        ramp_down_s=120,
    ),
    "gap": Program(
        "gap",
        period="absolute",
        on=dt.time(2, 15),
        off=dt.time(3, 30),  # in the spring-forward gap
        steps=(Step(dt.time(2, 30), 40.0),),
    ),
    "sens": Program("sens", period="sensor", level=60, boost=Boost("dio.motion", level=100, hold_s=120)),
    "astro": Program(
        "astro",
        period="astro",
        sunset_offset_min=15,
        sunrise_offset_min=-15,
        astro_steps=(AstroStep("sunset", 90, 50.0), AstroStep("sunrise", -60, 100.0)),
    ),
}
CALENDARS = {
    "main": Calendar(
        "main",
        "evening",
        (
            Rule("gap", "dst days", dates=(DateSpec(3, 30), DateSpec(10, 26))),
            Rule("weekend", "weekend", weekdays=(4, 5)),
            Rule("abs", "last sunday", weekdays=(6,), occurrences=(LAST,)),
            Rule("astro", "range", start=DateSpec(3, 27), end=DateSpec(3, 28)),
        ),
    ),
    "other": Calendar(
        "other",
        "astro",
        (
            Rule("sens", "tuesdays", weekdays=(1,)),
            Rule("abs", "late october", start=DateSpec(10, 24), end=DateSpec(10, 27)),
        ),
    ),
}
# around Berlin's DST changes (2025-03-30, 2025-10-26), rule boundaries on the days before and after
STARTS = [(2025, 3, 26, 9), (2025, 3, 29, 20), (2025, 10, 23, 9), (2025, 10, 25, 18)]


def _phase_of(e: float) -> str:
    return "day" if e >= DAY_ELEVATION else "night" if e <= NIGHT_ELEVATION else "twilight"


@hyp_settings(max_examples=40, deadline=None)
@given(
    st.floats(-89.95, 89.95),
    st.floats(-180, 180),
    st.integers(1_600_000_000, 2_000_000_000),
    st.lists(st.floats(-3600, 7200, allow_nan=False), min_size=1, max_size=60),
)
def test_sun_phase_from_the_certificate_is_the_phase_of_the_elevation(lat, lon, start, moves):
    clock = AstroClock(lat, lon, 0.0, "UTC")
    t = float(start)
    for move in moves:
        t += move
        assert clock.phase(t) == _phase_of(clock.elevation(t))


def test_sun_phase_through_dawn_and_dusk_at_every_minute():
    for site in ("berlin", "tromso", "madinah"):
        lat, lon, elev, tz = SITES[site]
        clock = AstroClock(lat, lon, elev, tz)
        t0 = ts(2025, 3, 29, tz=tz)
        for i in range(3 * 1440):
            t = t0 + 60.0 * i + 0.5
            assert clock.phase(t) == _phase_of(clock.elevation(t))


def _tod(t: float, tz: ZoneInfo) -> float:
    local = dt.datetime.fromtimestamp(t, tz)
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


@hyp_settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(sorted(PROGRAMS)),
    st.sampled_from(STARTS),
    st.lists(
        st.tuples(
            st.integers(1, 3600), st.integers(0, 3), st.sampled_from([None, (True, True), (True, False), (False, None)])
        ),
        min_size=20,
        max_size=80,
    ),
)
def test_program_outcomes_from_the_cache_equal_a_fresh_evaluation(name, start, moves):
    lat, lon, elev, tz = SITES["berlin"]
    zone = ZoneInfo(tz)
    cached = Schedule(AstroClock(lat, lon, elev, tz))
    prog = PROGRAMS[name]
    t = ts(*start, tz=tz)
    for step_s, quarters, pc in moves:
        t += step_s + quarters / 4  # quarter seconds: exact local times
        view = None if pc is None else PhotocellView(*pc)
        fresh = Schedule(AstroClock(lat, lon, elev, tz))
        assert cached.outcome(prog, t, _tod(t, zone), view) == fresh.evaluate(prog, t, _tod(t, zone), view), t


@hyp_settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["berlin", "melbourne", "santiago"]),
    st.sampled_from([(12, 0), (12, 7), (0, 0), (18, 59)]),
    st.integers(1_700_000_000, 1_800_000_000),
    st.lists(st.integers(-7200 * 4, 7200 * 4), min_size=1, max_size=80),
)
def test_local_time_and_calendar_day_from_the_window_equal_the_time_zone(site, day_start, start, moves):
    _lat, _lon, _elev, tz = SITES[site]
    zone = ZoneInfo(tz)
    rig = Rig(site, settings(day_start=dt.time(*day_start)))
    t = float(start)
    for move in moves:
        t += move / 4
        local = dt.datetime.fromtimestamp(t, zone)
        day = local.date() - dt.timedelta(days=1) if local.time() < dt.time(*day_start) else local.date()
        assert rig.ctl._local(t) == (_tod(t, zone), day), t


def test_local_time_and_calendar_day_every_37_s_through_both_dst_changes():
    zone = ZoneInfo("Europe/Berlin")
    for day_start in ((12, 0), (12, 7), (2, 30)):
        rig = Rig("berlin", settings(day_start=dt.time(*day_start)))
        for start in ((2025, 3, 29), (2025, 10, 25)):
            t0 = ts(*start, tz="Europe/Berlin")
            for i in range(2 * 86400 // 37):
                t = t0 + 37.0 * i + 0.25
                local = dt.datetime.fromtimestamp(t, zone)
                day = local.date() - dt.timedelta(days=1) if local.time() < dt.time(*day_start) else local.date()
                assert rig.ctl._local(t) == (_tod(t, zone), day), t


class _NoStore(dict):
    """A cache that never keeps anything."""

    def __setitem__(self, key, value) -> None:
        pass


def _from_scratch(rig: Rig) -> None:
    """Switch the controller's caches off: every step computes everything afresh."""
    ctl = rig.ctl
    ctl.schedule.outcome = ctl.schedule.evaluate  # type: ignore[method-assign]  # the cache switched off
    ctl.astro.phase = lambda t: _phase_of(ctl.astro.elevation(t))  # type: ignore[method-assign]  # the same
    zone = ZoneInfo(rig.tz)

    def local(t: float):
        offset = dt.datetime.fromtimestamp(t // 900 * 900.0, zone).utcoffset()
        assert offset is not None  # an aware datetime
        off = offset.total_seconds()
        days, tod = divmod(t + off, 86400.0)
        return tod, dt.date(1970, 1, 1) + dt.timedelta(days=int(days) - (tod < 12 * 3600))

    ctl._local = local
    ctl._fast = _NoStore()
    for mon in ctl._mon.values():
        mon._at_level = _NoStore()


ACTIONS = st.sampled_from(
    ["none"] * 12
    + [
        "override",
        "cancel",
        "lux-missing",
        "lux-sun",
        "lux-dark",
        "motion",
        "no-motion",
        "lamps-out",
        "lamps-ok",
        "clock-off",
        "clock-on",
        "relay-stuck",
        "relay-ok",
    ]
)


def _act(rig: Rig, action: str, i: int) -> None:
    if action == "override":
        rig.ctl.set_override(
            on=i % 3 > 0,
            level=(None, 30, 100)[i % 3],
            segments=("seg1", "seg2", None)[i % 3],
            duration_s=600 + 60 * (i % 7),
            mono=rig.mono,
            utc=rig.t if rig.clock else None,
        )
    elif action == "cancel":
        rig.ctl.cancel_override()
    elif action.startswith("lux-"):
        rig.lux = {"lux-missing": None, "lux-sun": "sun", "lux-dark": 2.0}[action]
    elif action in ("motion", "no-motion"):
        rig.motion = {"dio.motion": action == "motion"}
    elif action in ("lamps-out", "lamps-ok"):
        rig.lamps_out = {"seg2": 3} if action == "lamps-out" else {}
    elif action in ("clock-off", "clock-on"):
        rig.clock = action == "clock-on"
    else:
        rig.relay_stuck = {"seg1": False} if action == "relay-stuck" else {}


def _outputs(r) -> tuple:
    return (
        {k: d.to_dict() for k, d in r.decisions.items()},
        list(r.writes),
        [e.to_dict() for e in r.events],
        [c.to_dict() for c in r.conditions],
        r.mode,
    )


@hyp_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(STARTS),
    st.sampled_from([1.0, 10.0, 60.0, 137.5]),
    st.lists(st.tuples(st.integers(1, 300), ACTIONS), min_size=1, max_size=25),
)
def test_decisions_with_the_caches_equal_decisions_computed_from_scratch(start, step_s, script):
    """Over a DST change day and calendar rule boundaries, with faults, overrides and clock loss."""

    def make() -> Rig:
        s = settings(
            segments=(seg("seg1"), dimmed("seg2"), seg("seg3", calendar="other", invert=True)),
            programs=PROGRAMS,
            calendars=CALENDARS,
            actuation=Actuation(min_switch_interval_s=120),
        )
        return Rig("berlin", s, start=ts(*start, tz="Europe/Berlin"))

    fast, slow = make(), make()
    _from_scratch(slow)
    i = 0
    for steps, action in script:
        for rig in (fast, slow):
            _act(rig, action, i)
        for _ in range(steps):
            assert _outputs(fast.step(step_s)) == _outputs(slow.step(step_s)), (fast.t, i)
            i += 1
        assert fast.ctl.state() == slow.ctl.state()
    assert fast.ctl.status(fast.t) == slow.ctl.status(slow.t)


def test_a_whole_day_of_the_example_cabinet_equals_the_computation_from_scratch():
    """Across the spring DST change at 60 s steps (the benchmark's cadence)."""
    from tools.bench.lighting import Plant, controller

    fast, slow = controller(), controller()
    slow.schedule.outcome = slow.schedule.evaluate  # type: ignore[method-assign]  # the cache switched off
    slow.astro.phase = lambda t: _phase_of(slow.astro.elevation(t))  # type: ignore[method-assign]  # the same
    slow._fast = _NoStore()
    plants = (Plant(fast), Plant(slow))
    decisions: list[dict] = [{}, {}]
    t0 = dt.datetime(2025, 3, 29, 12, tzinfo=dt.UTC).timestamp()
    for i in range(2 * 1440):
        t = t0 + 60.0 * i
        out = []
        for k, ctl in enumerate((fast, slow)):
            r = ctl.step(60.0 * i, t, plants[k].fill(t, 60.0, decisions[k]))
            decisions[k] = r.decisions
            plants[k].apply(r.writes)
            out.append(_outputs(r))
        assert out[0] == out[1], i
    assert fast.state() == slow.state()
