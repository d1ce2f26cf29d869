"""The views and functions of the PostgreSQL ingest schema (tools/ingest/pg/views.py,
docs/cloud.md §6.2) answer the everyday questions on known data: a cabinet's catalogue (units,
roles, Europe/Berlin) and readings that cross a local midnight, an alarm's episodes, a gap."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.wire import cose
from agent.wire.batch import encode_body
from agent.wire.catalogue import PointInfo, Site, build, encode
from agent.wire.catalogue_seal import seal_catalogue
from tests.pgdb import fresh_database
from tools.ingest.core import IngestCore
from tools.ingest.store import Commit, Store

pytestmark = pytest.mark.integration
CAB = "CAB-0042"
UTC = dt.UTC


def at(text: str) -> float:
    """Unix seconds of 'YYYY-MM-DD HH:MM' UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


POINTS = [
    PointInfo("lighting.seg1.energy_kwh", "kWh", "float", 2, "lighting", "", "lighting.seg1", "energy"),
    PointInfo("lighting.seg1.burning_h", "h", "float", 2, "lighting", "", "lighting.seg1", "burning hours"),
    PointInfo("lighting.seg1.saved_kwh", "kWh", "float", 2, "lighting", "", "lighting.seg1", "saved"),
    PointInfo("meter_main.voltage_l1", "V", "float", 1, "meter_main", "rs485", "", "voltage L1"),
    PointInfo("dio.door", "", "bool", None, "dio", "", "climate.door", "door contact"),
    PointInfo("alarm.door_open", "", "str", None, "", "", "", "door open too long"),
    PointInfo("event.config.committed", "", "str", None, "", "", "", "a config applied and committed"),
]


def alarm(transition: str, t: float, by: str | None = None) -> Reading:
    doc = {"alarm": "door_open", "severity": "warning", "transition": transition, "message": "door open", "t": t}
    if by:
        doc["by"] = by
    return Reading("alarm.door_open", t, json.dumps(doc), Quality.GOOD)


# energy and burning hours cross the local midnight of 2026-01-15 (Europe/Berlin: UTC+1)
READINGS = [
    *(
        Reading(p, at(t), v, Quality.GOOD)
        for t, e, h in (
            ("2026-01-15 10:00", 1.0, 10.0),
            ("2026-01-15 22:30", 3.0, 12.0),  # 23:30 local, the 15th
            ("2026-01-15 23:30", 3.5, 12.5),  # 00:30 local, the 16th
            ("2026-01-16 12:00", 6.0, 14.0),
        )
        for p, v in (("lighting.seg1.energy_kwh", e), ("lighting.seg1.burning_h", h))
    ),
    Reading("lighting.seg1.saved_kwh", at("2026-01-15 10:00"), 100.0, Quality.GOOD),
    Reading("lighting.seg1.saved_kwh", at("2026-01-15 22:30"), 200.0, Quality.GOOD),
    Reading("meter_main.voltage_l1", at("2026-01-15 10:00"), 230.1, Quality.GOOD),
    Reading("meter_main.voltage_l1", at("2026-01-16 12:00"), None, Quality.BAD, "timeout"),
    Reading("dio.door", at("2026-01-15 22:30"), True, Quality.GOOD),
    alarm("raised", at("2026-01-15 22:30")),
    alarm("acknowledged", at("2026-01-15 22:31"), by="tech"),
    alarm("cleared", at("2026-01-15 22:40")),
    alarm("raised", at("2026-01-16 12:00")),
    Reading("event.config.committed", at("2026-01-15 10:00"), '{"version": 7}', Quality.GOOD),
]


def sample(dsn: str) -> None:
    """CAB-0042's catalogue and READINGS stored and materialized in the database `dsn`."""
    store = Store(dsn)
    try:
        key = Ed25519PrivateKey.generate()
        kid = cose.key_id(key.public_key())
        store.add_key(CAB, kid, cose.raw_public(key.public_key()), 0.0)
        topic = cose.telemetry_topic("city/v1", CAB)
        cat = build(CAB, "sim", 7, Site(52.52, 13.405, "Europe/Berlin"), POINTS)
        core, commit = IngestCore(store), Commit()
        message = seal_catalogue(encode(cat), key=key, kid=kid, cabinet=CAB, topic=topic)
        assert core.handle(topic, message, at("2026-01-15 09:00"), commit).kind == "catalogue"
        env = cose.seal_batch(encode_body(READINGS), key=key, kid=kid, cabinet=CAB, boot=1, seq=1, topic=topic)
        assert core.handle(topic, env, at("2026-01-16 12:01"), commit).kind == "stored"
        store.commit(commit)
        store.maintain(at("2026-01-15 00:00"))  # partitions of the 15th and the 16th
        assert store.materialize() == (1, len(READINGS))
    finally:
        store.close()


@pytest.fixture(scope="module")
def dsn():
    with fresh_database("cabinet_views") as dsn:
        sample(dsn)
        yield dsn


def query(dsn: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def test_the_readings_sit_in_their_days_partitions(dsn):
    rows = query(dsn, "SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1 ORDER BY 1")
    assert rows == [("readings_20260115", 14), ("readings_20260116", 4)]


def test_last_value_and_quality_of_every_point_with_its_unit(dsn):
    rows = query(dsn, "SELECT point, at, num, flag, quality, reason, unit, role FROM point_last(%s)", CAB)
    last = {r[0]: r[1:] for r in rows}
    assert set(last) == {p.name for p in POINTS}
    assert last["meter_main.voltage_l1"] == (ts("2026-01-16 12:00"), None, None, "bad", "timeout", "V", "")
    assert last["lighting.seg1.energy_kwh"] == (ts("2026-01-16 12:00"), 6.0, None, "good", None, "kWh", "lighting.seg1")
    assert last["dio.door"][2:4] == (True, "good")
    (doc,) = query(dsn, "SELECT doc->>'transition' FROM point_last(%s) WHERE point = 'alarm.door_open'", CAB)
    assert doc == ("raised",)


def test_energy_and_burning_hours_per_segment_per_local_day(dsn):
    rows = query(dsn, "SELECT cabinet, segment, day, timezone, kwh, burning_h FROM segment_days ORDER BY day")
    assert rows == [
        (CAB, "seg1", dt.date(2026, 1, 15), "Europe/Berlin", 2.0, 2.0),  # not saved_kwh's 100
        (CAB, "seg1", dt.date(2026, 1, 16), "Europe/Berlin", 2.5, 1.5),  # a UTC day would give 0
    ]


def test_alarm_episodes_with_raise_ack_clear_and_duration(dsn):
    rows = query(
        dsn,
        "SELECT alarm, episode, severity, raised, acked, acked_by, cleared, duration, message "
        "FROM alarm_episodes WHERE cabinet = %s ORDER BY raised",
        CAB,
    )
    assert rows == [
        ("door_open", 1, "warning", ts("2026-01-15 22:30"), ts("2026-01-15 22:31"), "tech",
         ts("2026-01-15 22:40"), dt.timedelta(minutes=10), "door open"),
        ("door_open", 2, "warning", ts("2026-01-16 12:00"), None, None, None, None, "door open"),
    ]  # fmt: skip


def test_data_completeness_the_silences_longer_than_an_hour(dsn):
    rows = query(
        dsn,
        "SELECT cabinet, gap_from, gap_to, gap FROM heartbeat_gaps(%s, %s, interval '1 hour')",
        ts("2026-01-15 00:00"),
        ts("2026-01-17 00:00"),
    )
    assert rows == [
        (CAB, ts("2026-01-15 10:00"), ts("2026-01-15 22:30"), dt.timedelta(hours=12, minutes=30)),
        (CAB, ts("2026-01-15 23:30"), ts("2026-01-16 12:00"), dt.timedelta(hours=12, minutes=30)),
    ]


def test_the_config_state_of_each_cabinet(dsn):
    rows = query(dsn, "SELECT * FROM cabinet_config")
    assert rows == [
        (CAB, 7, "sim", "Europe/Berlin", ts("2026-01-15 09:00"), "committed", ts("2026-01-15 10:00"), {"version": 7})
    ]
