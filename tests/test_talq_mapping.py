"""The mapping of a cabinet to a TALQ device (tools/talq/mapping.py) checked against the TALQ
2.7.1 data model itself: every function type, attribute name, attribute type and unit we
announce is the data model's; values are converted to TALQ's units and staleness shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as cfg
from agent.runtime.app import agent_points
from agent.runtime.entry import board_infos
from agent.uplink.catalogue_source import from_config
from agent.wire.catalogue import PointInfo, Site, build
from tools.talq import mapping as m
from tools.talq.reference import ReferenceMissing, load, reference_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def schemas() -> dict:
    return load("model")["components"]["schemas"]


@pytest.fixture(scope="module")
def sim() -> m.DeviceMap:
    c = cfg.load(str(ROOT / "boards/sim/cabinet.toml"), board_infos())
    return m.map_cabinet(from_config(c, agent_points(c, uplink=True)))


def talq_attr(schemas: dict, function_type: str, name: str) -> tuple[str, str]:
    """(attribute type, x-talq-unit or '') of `name` in the data model's `function_type`."""
    props = {}
    for part in schemas[function_type]["allOf"]:
        props.update(part.get("properties", {}))
    assert name in props, f"{function_type} has no attribute {name} in the TALQ data model"
    ref, extra = props[name]["allOf"][0]["$ref"], props[name]["allOf"][1]
    unit = extra.get("x-talq-unit", "None")
    return ref.rsplit("/", 1)[1], "" if unit == "None" else unit  # the data model writes "None" for no unit


def test_every_function_attribute_type_and_unit_is_the_data_models(schemas, sim):
    assert {f.type for f in sim.functions} == {
        "BasicFunction",
        "TimeFunction",
        "CabinetMonitorFunction",
        "ElectricalMeterFunction",
        "LampActuatorFunction",
        "LampMonitorFunction",
        "SegmentMonitorFunction",
    }
    checked = 0
    for f in sim.functions:
        assert f.type in schemas
        for a in f.attrs:
            typ, unit = talq_attr(schemas, f.type, a.name)
            assert (a.type, a.unit) == (typ, unit), f"{f.id}.{a.name}"
            checked += 1
    assert checked > 50
    assert sim.skipped == ()


def test_the_sim_cabinet_maps_to_its_meters_and_segments(sim):
    ids = [f.id for f in sim.functions]
    assert ids[:3] == ["basic", "time", "cabinetMonitor"]
    assert {"meter-meter_main", "meter-meter_seg1", "meter-meter_seg2"} <= set(ids)
    for seg in ("seg1", "seg2", "seg3"):
        assert {f"lampActuator-{seg}", f"lampMonitor-{seg}", f"segmentMonitor-{seg}"} <= set(ids)
    cab = sim.function("cabinetMonitor")
    assert cab is not None
    assert {a.name: a.point for a in cab.attrs} == {"cabinetDoorOpen": "dio.door", "leakageDetected": "dio.flood"}
    seg1 = sim.function("segmentMonitor-seg1")
    assert seg1 is not None and [a.point for a in seg1.attrs if a.name == "actualState"] == ["relays.relay_1"]
    assert sim.address == m.device_address("CAB-SIM-0001")
    assert sim.class_name.startswith("cabinet-")


def cabinet(points: list[PointInfo]) -> m.DeviceMap:
    return m.map_cabinet(build("CAB-1", "sim", 1, Site(52.5, 13.4, "Europe/Berlin"), points))


METER = [
    PointInfo("em.voltage", "V", "float", 1, "em", "rs485"),
    PointInfo("em.current", "A", "float", 2, "em", "rs485"),
    PointInfo("em.active_power", "W", "float", 0, "em", "rs485", "lighting.s1.power"),
    PointInfo("em.import_energy", "Wh", "float", 0, "em", "rs485"),
]


def test_units_are_converted_to_talqs_and_the_timestamp_shows_the_age():
    dm = cabinet([*METER, PointInfo("lighting.s1.on", "", "bool", None, "lighting", "", "lighting.s1")])
    latest = {
        "em.active_power": (1_767_225_600.0, 1234.0, "good"),
        "em.import_energy": (1_767_225_600.0, 5000.0, "good"),
        "em.voltage": (1_767_225_500.0, None, "bad"),
        "lighting.s1.on": (1_767_225_600.0, True, "good"),
    }
    meter = m.function(dm.function("meter-em"), latest)  # type: ignore[arg-type]
    assert meter["totalPower"] == {"type": "AttributeFloat", "timestamp": "2026-01-01T00:00:00Z", "value": 1.234}
    assert meter["totalActiveEnergy"]["value"] == 5.0  # Wh -> KiloWattHours
    assert meter["supplyVoltage"] == {"type": "AttributeFloat", "timestamp": "2025-12-31T23:58:20Z"}  # bad: no value
    assert meter["totalCurrent"] == {"type": "AttributeFloat"}  # nothing stored yet
    lamp = m.function(dm.function("lampMonitor-s1"), latest)  # type: ignore[arg-type]
    assert lamp["activePower"]["value"] == 1234.0  # LampMonitor's activePower is in Watts
    act = m.function(dm.function("lampActuator-s1"), latest)  # type: ignore[arg-type]
    assert act["actualLightState"]["value"] == {"name": "LevelState", "value": 100}
    seg = m.function(dm.function("segmentMonitor-s1"), latest)  # type: ignore[arg-type]
    assert seg["actualState"]["value"] == "ON"


def test_a_unit_that_cannot_be_converted_is_left_out_and_said():
    dm = cabinet(
        [PointInfo(f"em.{n}", u, device="em") for n, u in (("voltage", "V"), ("current", "A"), ("frequency", "rpm"))]
    )
    meter = dm.function("meter-em")
    assert meter is not None and "frequency" not in {a.name for a in meter.attrs}
    assert dm.skipped == ("em.frequency ('rpm' is not convertible to Hertz)",)


def test_the_class_name_follows_the_shape_not_the_cabinet():
    a = m.map_cabinet(build("CAB-A", "sim", 1, Site(0, 0, "UTC"), METER))
    b = m.map_cabinet(build("CAB-B", "sim", 9, Site(1, 1, "UTC"), METER))
    c = m.map_cabinet(build("CAB-C", "sim", 1, Site(0, 0, "UTC"), METER[:2]))
    assert a.class_name == b.class_name != c.class_name
    assert a.address != b.address


def test_a_missing_reference_is_a_clear_error(tmp_path):
    with pytest.raises(ReferenceMissing, match=r"not in .*shared/reference/talq"):
        reference_dir(tmp_path / "checkout")
