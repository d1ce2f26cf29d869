"""Overrides: on/off/level per segment or all, default expiry, explicit forever, last
wins, cancel, persistence across a simulated restart, and precedence over the rest."""

from __future__ import annotations

import json

import pytest

from agent.control.lighting.overrides import Override, Overrides
from tests.test_lighting_rig import Rig, dimmed, seg, settings, ts

T0 = ts(2024, 5, 1, 12)
H = 3600.0


def active(o: Overrides, segment: str, utc: float | None, mono: float) -> Override:
    """The override active on `segment` (an assertion error if there is none)."""
    ov = o.active(segment, utc, mono)
    assert ov is not None, f"no override active on {segment}"
    return ov


def table() -> Overrides:
    return Overrides(["seg1", "seg2"], default_expiry_s=8 * H)


def test_default_expiry_forever_only_explicitly_and_last_wins_per_segment():
    o = table()
    ov = o.set(on=True, utc=T0, mono=0.0)
    assert ov.expires == T0 + 8 * H and not ov.forever
    assert o.active("seg1", T0 + 8 * H - 1, 0) is ov and o.active("seg1", T0 + 8 * H, 0) is None
    o.set(on=False, utc=T0 + 60, mono=60.0, segments=["seg2"], forever=True)
    assert active(o, "seg2", T0 + 1e7, 0).forever and o.active("seg1", T0 + 120, 0) is ov
    o.set(on=True, level=30, utc=T0 + 120, mono=120.0, segments="seg2", duration_s=600)
    assert active(o, "seg2", T0 + 200, 0).target == 30
    assert o.active("seg2", T0 + 800, 0) is None  # the forever one it replaced does not come back
    assert o.cancel("seg1") == ["seg1"] and o.active("seg1", T0 + 200, 0) is None
    assert o.cancel() == ["seg2"] and o.cancel() == []


def test_start_in_the_future_and_absolute_expiry():
    o = table()
    o.set(on=False, utc=T0, mono=0.0, start=T0 + H, expires=T0 + 2 * H)
    assert o.active("seg1", T0 + 10, 0) is None
    assert active(o, "seg1", T0 + 1.5 * H, 0).on is False
    assert o.prune(T0 + 2 * H, 0)[0][0] == "seg1"


@pytest.mark.parametrize(
    "kw",
    [
        dict(level=120),
        dict(level=True),
        dict(segments=["seg9"]),
        dict(segments=[]),
        dict(duration_s=-1),
        dict(forever=True, duration_s=60),
        dict(expires=T0 - 1),
        dict(expires=T0 + 60, duration_s=60),
    ],
)
def test_bad_requests_are_refused(kw):
    with pytest.raises(ValueError):
        table().set(on=True, utc=T0, mono=0.0, **kw)


def test_level_zero_means_off():
    ov = table().set(on=True, level=0, utc=T0, mono=0.0)
    assert not ov.on and ov.target == 0


def test_persisted_overrides_survive_a_restart_and_expired_ones_are_dropped():
    o = table()
    o.set(on=True, level=60, utc=T0, mono=0.0, segments=["seg1"], duration_s=2 * H, note="market")
    o.set(on=False, utc=T0, mono=0.0, segments=["seg2"], duration_s=10 * H)
    text = json.dumps(o.to_dict())  # JSON-safe
    back, notes = Overrides.from_dict(json.loads(text), ["seg1", "seg2"], utc=T0 + H)
    assert notes == [] and active(back, "seg1", T0 + H, 5.0).target == 60
    assert active(back, "seg1", T0 + H, 5.0).note == "market"
    back, notes = Overrides.from_dict(json.loads(text), ["seg1", "seg2"], utc=T0 + 3 * H)
    assert back.active("seg1", T0 + 3 * H, 5.0) is None and "expired while stopped" in notes[0]
    assert active(back, "seg2", T0 + 3 * H, 5.0).on is False
    back, notes = Overrides.from_dict(json.loads(text), ["seg2"], utc=T0)
    assert "no such segment" in notes[0]
    assert Overrides.from_dict({"format": 99}, ["seg1"], T0)[1] and not Overrides.from_dict({}, ["seg1"], T0)[1]
    bad = {"format": 1, "segments": {"seg1": {"on": True, "start": "yesterday"}, "seg2": {"level": 5}}}
    back, notes = Overrides.from_dict(bad, ["seg1", "seg2"], T0)
    assert len(notes) == 2 and not back.items()


def test_restored_timed_override_is_dormant_until_the_clock_is_known_forever_applies():
    o = table()
    o.set(on=False, utc=T0, mono=0.0, segments=["seg1"], duration_s=H)
    o.set(on=True, level=20, utc=T0, mono=0.0, segments=["seg2"], forever=True)
    back, _ = Overrides.from_dict(o.to_dict(), ["seg1", "seg2"], utc=None)
    assert back.active("seg1", None, 1.0) is None  # cannot tell whether it expired
    assert back.active("seg1", T0 + 60, 1.0) is not None  # now we can
    assert active(back, "seg2", None, 1.0).target == 20


def test_override_set_with_no_clock_runs_on_the_monotonic_clock_then_gets_its_utc_expiry():
    o = table()
    o.set(on=True, utc=None, mono=100.0, duration_s=600)
    assert o.active("seg1", None, 650.0) is not None and o.active("seg1", None, 701.0) is None
    o = table()
    o.set(on=True, utc=None, mono=100.0, duration_s=600)
    ov = active(o, "seg1", T0, 400.0)  # the clock is known now: expiry = T0 + 300 s
    assert ov.expires == T0 + 300 and active(o, "seg2", T0, 400.0).expires == T0 + 300
    with pytest.raises(ValueError):
        o.set(on=True, utc=None, mono=0.0, expires=T0 + 60)


def test_override_beats_program_and_fail_safe_then_the_program_returns():
    rig = Rig(
        "berlin",
        settings(segments=[dimmed(), seg("seg2")], photocell=False),
        start=ts(2024, 5, 1, 12, tz="Europe/Berlin"),
    )
    rig.run(120, 10)
    assert not rig.decision().on
    rig.ctl.set_override(
        on=True, level=50, mono=rig.mono, utc=rig.t, segments="seg1", duration_s=3600, note="maintenance"
    )
    rig.run(120, 10)
    d = rig.decision()
    assert d.on and d.level == 50 and d.reason == "override" and d.detail == "local"
    assert not rig.decision("seg2").on  # only seg1
    assert any(e.kind == "override" and e.data.get("action") == "set" for e in rig.events)
    rig.clock = False  # clock lost: fail-safe, but the override still wins
    rig.run(60, 10)
    assert rig.decision().reason == "override" and rig.decision("seg2").reason.startswith("failsafe")
    rig.clock = True
    rig.run(3600, 10)
    assert rig.decision().reason == "program:evening" and not rig.decision().on
    assert any(e.kind == "override" and e.data.get("action") == "expired" for e in rig.events)


def test_controller_restore_overrides_across_a_restart():
    s = settings(segments=[seg("seg1"), seg("seg2")], photocell=False)
    rig = Rig("berlin", s, start=ts(2024, 5, 1, 12, tz="Europe/Berlin"))
    rig.ctl.set_override(on=True, mono=rig.mono, utc=rig.t, duration_s=2 * H)
    saved = json.loads(json.dumps(rig.ctl.overrides.to_dict()))
    rig2 = Rig("berlin", s, start=rig.t + H)  # restarted an hour later: mono starts afresh
    assert rig2.ctl.restore_overrides(saved, rig2.t) == []
    rig2.run(60, 10)
    assert rig2.decision().on and rig2.decision().reason == "override"
    rig3 = Rig("berlin", s, start=rig.t + 3 * H)
    notes = rig3.ctl.restore_overrides(saved, rig3.t)
    assert len(notes) == 2
    rig3.run(60, 10)
    assert not rig3.decision().on
    assert rig3.ctl.cancel_override() == []
