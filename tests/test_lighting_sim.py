"""Street lighting on the simulated cabinet in accelerated time: the real agent (poller,
process image, control loop, outputs with read-back, outbox) against the plant.

Berlin (the example cabinet's site), 2026-11-22: sunset 15:05:38Z, sunrise (23rd)
06:40:25Z, local time UTC+1. Calendar: the "evening" program (astro window + photocell,
100 % until 22:00, 70 % until 00:30). Each test runs 20-60 simulated minutes at 60-90x.
"""

from __future__ import annotations

import pytest

from agent.model import Priority
from tests.sim_rig import Rig, rig_config

SUNSET = "2026-11-22T15:05:38+00:00"
SUNRISE = "2026-11-23T06:40:25+00:00"
CIRCUITS = {"seg1": "segment1", "seg2": "segment2", "seg3": "dali_segment"}

pytestmark = pytest.mark.integration  # the agent against the simulated cabinet, in accelerated time


@pytest.fixture
async def rig_at(tmp_path):
    rigs: list[Rig] = []

    async def start(start_utc: str, speed: float = 60.0) -> Rig:
        rig = await Rig(rig_config(), start_utc, speed, tmp_path / f"rig{len(rigs)}").start()
        rigs.append(rig)
        return rig

    yield start
    for rig in rigs:
        await rig.stop()


class Watch:
    """First simulated time each circuit was seen energized / de-energized, and lit time."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.on_at: dict[str, float] = {}
        self.off_at: dict[str, float] = {}
        self.lit_s: dict[str, float] = dict.fromkeys(CIRCUITS.values(), 0.0)
        self._last = rig.wall()

    def __call__(self) -> None:
        now, plant = self.rig.wall(), self.rig.sim.plant
        for c in CIRCUITS.values():
            if plant.circuit_on(c):
                self.on_at.setdefault(c, now)
                self.lit_s[c] += now - self._last
            elif c in self.on_at:
                self.off_at.setdefault(c, now)
        self._last = now


async def test_evening_on_by_photocell_after_sunset_lamp_failure_alarm_and_energy(rig_at):
    rig = await rig_at("2026-11-22T14:55:00+00:00")
    watch = Watch(rig)
    await rig.until(rig.at("2026-11-22T15:05:00+00:00"), watch=watch)
    assert not watch.on_at, "lights on before sunset in daylight"
    sunset = rig.at(SUNSET)
    await rig.until(sunset + 35 * 60, watch=watch)
    for seg, circuit in CIRCUITS.items():
        assert circuit in watch.on_at, f"{seg} never switched on"
        assert sunset < watch.on_at[circuit] < sunset + 30 * 60  # civil twilight ends ~40 min after sunset
        d = rig.segment(seg)
        assert d["on"] and d["reason"] == "program:evening"
    assert rig.segment("seg3")["level"] == 100.0 and rig.sim.plant.dim_level("dali_segment") == 100.0
    switched = [v for p, v in rig.stored("event.lighting.switched") if v["data"]["on"]]
    assert {v["segment"] for v in switched} == set(CIRCUITS)
    assert all(v["data"]["detail"].startswith("photocell") for v in switched)  # dark by the lux sensor
    # energy and burning hours as the plant says (the meter is polled every 25 s here)
    kwh = rig.sim.plant.meter("segment1").import_energy_kwh
    seg1 = rig.segment("seg1")
    assert seg1["energy_kwh"] == pytest.approx(kwh, abs=1800 * 30 / 3.6e6)
    assert seg1["burning_h"] * 3600 == pytest.approx(watch.lit_s["segment1"], abs=30)
    mono = rig.clock.monotonic()  # decisions and accounting are points too, reported by exception
    assert rig.app.image.value("lighting.seg1.on", mono) is True
    assert rig.app.image.value("lighting.seg3.level", mono) == 100.0
    assert rig.app.image.value("lighting.seg1.energy_kwh", mono) == pytest.approx(seg1["energy_kwh"], abs=0.02)
    await rig.app.outbox.flush()
    hours = [v for _, v in rig.stored("lighting.seg1.burning_h")]
    assert len(hours) >= 2 and hours == sorted(hours)

    rig.sim.plant.fail_lamps("segment1", 0.5)  # half the lamps of segment 1 die
    failed_at = rig.wall()
    await rig.until(failed_at + 6 * 60, watch=watch)
    assert "lighting.seg1.lamp_failure" in rig.alarm_ids()
    assert "lighting.seg2.lamp_failure" not in rig.alarm_ids()
    raised = [v for p, v in rig.stored("alarm.lighting.seg1.lamp_failure") if v["transition"] == "raised"]
    assert raised and failed_at < raised[0]["t"] < failed_at + 5 * 60
    assert all(prio == Priority.ALARM for prio, r in rig.app.outbox.peek(100_000) if r.point.startswith("alarm."))


async def test_midnight_dimming_step_and_a_stuck_contactor(rig_at):
    rig = await rig_at("2026-11-22T20:50:00+00:00")  # 21:50 local
    await rig.until(rig.at("2026-11-22T20:58:00+00:00"))
    assert rig.segment("seg3")["on"] and rig.segment("seg3")["level"] == 100.0
    assert rig.sim.plant.dim_level("dali_segment") == 100.0
    await rig.until(rig.at("2026-11-22T21:04:00+00:00"))  # 22:00 local: the 70 % step (ramped down over 60 s)
    assert rig.segment("seg3")["level"] == 70.0 and rig.segment("seg3")["reason"] == "program:evening"
    assert rig.sim.plant.dim_level("dali_segment") == pytest.approx(70.0, abs=0.5)
    assert rig.segment("seg1")["level"] is None and rig.sim.plant.circuit_on("segment1")  # switched only

    # segment 2's contactor welds closed; an override switches the segment off
    rig.sim.plant.stick_contactor("segment2", True)
    await rig.app.controls.override({"on": False, "segments": ["seg2"], "minutes": 60})
    t = rig.wall()
    await rig.until(t + 6 * 60)
    assert not rig.segment("seg2")["on"] and rig.sim.plant.circuit_on("segment2")
    ids = rig.alarm_ids()
    assert "lighting.seg2.day_burner" in ids, ids  # power flows while commanded off
    alarm = next(a for a in rig.app.controls.alarms.active() if a["id"] == "lighting.seg2.day_burner")
    assert alarm["severity"] == "critical" and "stuck closed" in alarm["message"]
    assert not any(i.startswith(("lighting.seg1.", "lighting.seg3.")) for i in ids)


async def test_morning_off_around_sunrise(rig_at):
    """Off when the photocell sees 55 lx for 90 s: in the plant's twilight that is ~15 min
    before sunrise (the sun 2.5 degrees down); never on in daylight."""
    rig = await rig_at("2026-11-23T06:00:00+00:00", speed=90.0)
    watch = Watch(rig)
    await rig.until(rig.at("2026-11-23T06:05:00+00:00"), watch=watch)
    assert all(rig.sim.plant.circuit_on(c) for c in CIRCUITS.values()), "lights off in the dark"
    sunrise = rig.at(SUNRISE)
    await rig.until(sunrise + 20 * 60, watch=watch)
    for seg, circuit in CIRCUITS.items():
        assert not rig.sim.plant.circuit_on(circuit)
        assert sunrise - 30 * 60 < watch.off_at[circuit] < sunrise + 10 * 60
        assert not rig.segment(seg)["on"]
    assert not rig.alarm_ids() - {"lighting.lux_sensor"}
