"""The control loop wrapper without devices: clock trust, GPS refinement of the site,
segment points, state files (a corrupt one is moved aside), local action refusals.
The agent is built but not started: output writes fail and are reported."""

from __future__ import annotations

import json

import pytest

from agent import config as cfg
from agent.clock import TRUSTED_AFTER, SimClock, clock_trusted
from agent.model import Quality, Reading
from agent.runtime.app import App
from agent.runtime.entry import board_infos
from agent.runtime.status_api import ActionError

NIGHT = 1_795_370_000.0  # 2026-11-22 ~18:53 local, Berlin


CONFIG = cfg.load(cfg.EXAMPLE, board_infos())
OPEN: list[App] = []


async def make(data_dir, start=NIGHT) -> App:
    """The agent built, its outbox open, nothing else started."""
    a = App(CONFIG, data_dir=data_dir, clock=SimClock(start=start))
    data_dir.mkdir(parents=True, exist_ok=True)
    await a.outbox.start()
    OPEN.append(a)
    return a


@pytest.fixture
async def app(tmp_path):
    yield await make(tmp_path)
    while OPEN:
        await OPEN.pop().outbox.close()


def test_clock_trust():
    assert clock_trusted(SimClock(start=NIGHT))
    assert not clock_trusted(SimClock(start=NIGHT, synced=False))
    assert not clock_trusted(SimClock(start=TRUSTED_AFTER - 1))  # booted without RTC: 1970 or an old image
    assert clock_trusted(SimClock(start=NIGHT, synced=None))  # unknown but plausible


async def test_untrusted_clock_runs_the_failsafe_and_says_so(app, tmp_path):
    app = await make(tmp_path / "1970", start=86400.0)  # 1970-01-02
    await app.controls.step()
    st = app.controls.status()
    assert st["clock_trusted"] is False
    assert st["lighting"]["mode"].startswith("failsafe:")
    assert all(s["on"] for s in st["lighting"]["segments"].values())  # no clock, no lux yet: lights on


async def test_gps_refines_the_site_and_segment_points_enter_the_image(app):
    mono = app.clock.monotonic()
    app.image.update_many(
        [Reading("gps.latitude", NIGHT, 52.60, Quality.GOOD), Reading("gps.longitude", NIGHT, 13.50, Quality.GOOD)],
        mono,
    )
    await app.controls.step()
    site = app.controls.status()["lighting"]["site"]
    assert (site["latitude"], site["longitude"]) == (52.60, 13.50)
    assert app.image.value("lighting.seg1.on", app.clock.monotonic()) is True  # night: on by the astro clock
    assert app.controls.status()["output_failures"]  # nothing is connected: every write failed, and says so
    far = await make(app.data_dir / "far")
    far.image.update_many(
        [Reading("gps.latitude", NIGHT, 48.1, Quality.GOOD), Reading("gps.longitude", NIGHT, 11.6, Quality.GOOD)],
        far.clock.monotonic(),
    )
    await far.controls.step()  # Munich is not this cabinet: a wrong receiver or a wrong config
    site = far.controls.status()["lighting"]["site"]
    assert site["latitude"] == pytest.approx(52.52, abs=0.01) and "refused" in site["note"]


async def test_override_persists_and_a_corrupt_state_file_is_moved_aside(app, tmp_path):
    app.controls.restore()
    out = await app.controls.override({"on": False, "segments": ["seg2"], "minutes": 30})
    assert out["override"]["on"] is False
    saved = json.loads((tmp_path / "state" / "overrides.json").read_text())
    assert "seg2" in json.dumps(saved)
    with pytest.raises(ActionError, match="unknown segment"):
        await app.controls.override({"on": True, "segments": ["nope"]})
    with pytest.raises(ActionError, match="minutes"):
        await app.controls.override({"on": True, "minutes": -5})
    with pytest.raises(ActionError, match="not active"):
        await app.controls.acknowledge({"id": "climate.flood"})

    await app.outbox.close()
    OPEN.remove(app)
    again = await make(tmp_path, start=NIGHT + 60)
    again.controls.restore()
    await again.controls.step()
    assert again.controls.status()["lighting"]["segments"]["seg2"]["reason"] == "override"

    (tmp_path / "state" / "alarms.json").write_text("{not json")
    await again.outbox.close()
    OPEN.remove(again)
    third = await make(tmp_path, start=NIGHT + 120)
    third.controls.restore()
    assert (tmp_path / "state" / "alarms.json.bad").exists() and third.controls.alarms.active() == []
