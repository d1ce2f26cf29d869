"""What docs/cloud.md, docs/uplink.md and docs/batch-format.md tell an outsider, checked
against the code and a running agent (issue 14): the state message's keys (one list in all
three pages, the one a live agent publishes), the self-telemetry table, the topic tables
(every topic of the broker ACL, none "later"), the seq block of 64, the ingest schema, the
[ingest] extra, and the bit-flip sample (a vector, with its flip counts)."""

from __future__ import annotations

import asyncio
import collections
import configparser
import hashlib
import inspect
import json
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model import Quality, Reading
from agent.outbox.store import SEQ_BLOCK
from agent.runtime.app import App
from agent.uplink import selftel
from agent.wire import cose
from agent.wire.batch import encode_body
from tests.broker import Broker
from tools.ingest import store as ingest_store
from tools.ingest.pg import migrations
from tools.provision import pki
from tools.provision.identity import provision

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLOUD = (DOCS / "cloud.md").read_text()
UPLINK = (DOCS / "uplink.md").read_text()
BATCH = (DOCS / "batch-format.md").read_text()
VECTOR = json.loads((ROOT / "tests" / "vectors" / "bitflip_sample.json").read_text())


def section(text: str, heading: str) -> str:
    """The text of the section whose heading line contains `heading`, up to the next heading of its level."""
    m = re.search(rf"^(#+) [^\n]*{re.escape(heading)}[^\n]*$", text, re.M)
    assert m, f"no heading {heading!r}"
    rest = text[m.end() :]
    end = re.search(rf"^#{{1,{len(m.group(1))}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r] for r in rows[2:]] if len(rows) > 2 else []


# ---------------------------------------------------------------- the state message


def keys_of(doc: str) -> set[str]:
    """The keys of a JSON-ish object as the docs write it: `"online": true, "boot", "reason": "stopped"`."""
    return set(re.findall(r'(?:^|[{,]\s*)"(\w+)"', doc))


def documented_birth_keys() -> dict[str, set[str]]:
    """Each page's list of the birth message's keys."""
    out = {"cloud.md": {r[0].strip("`") for r in table_rows(section(CLOUD, "3. The state message"))}}
    for name, text in (("uplink.md", UPLINK), ("batch-format.md", BATCH)):
        row = next(line for line in text.splitlines() if line.startswith("| `<prefix>/cab/<id>/state`"))
        birth = re.search(r"birth `\{(.*?)\}`", row)
        assert birth, f"{name}: the state row names no birth keys"
        out[name] = keys_of(birth.group(1))
    return out


def documented_offline_keys() -> dict[str, tuple[set[str], set[str]]]:
    """Each page's (last will keys, goodbye keys)."""
    out = {}
    for name, text in (
        ("cloud.md", section(CLOUD, "3. The state message")),
        ("uplink.md", UPLINK),
        ("batch-format.md", BATCH),
    ):
        will = re.search(r'(?:last will|LWT)[^`]*`(\{"online": false[^`]*\})`', text)
        goodbye = re.search(r'(?:\*\*goodbye\*\*|goodbye on a graceful stop)[^`]*`(\{"online": false[^`]*\})`', text)
        assert will and goodbye, f"{name}: no last will / goodbye message"
        out[name] = (keys_of(will.group(1)), keys_of(goodbye.group(1)))
    return out


def test_every_page_lists_the_same_birth_keys() -> None:
    pages = documented_birth_keys()
    assert len({frozenset(v) for v in pages.values()}) == 1, pages
    offline = documented_offline_keys()
    assert all(v == ({"online", "boot"}, {"online", "boot", "reason"}) for v in offline.values()), offline


def test_the_birth_keys_are_the_apps() -> None:
    """The keys App.birth() builds, read from its source (the live check is below)."""
    src = inspect.getsource(App.birth)
    keys = set(re.findall(r'^\s*"(\w+)":', src, re.M))
    assert {"online"} | keys == documented_birth_keys()["cloud.md"]


@pytest.mark.integration  # mosquitto, `cabinet run` on the simulated cabinet
async def test_a_running_agent_publishes_the_documented_state_messages(tmp_path: Path) -> None:
    """Also `cabinet run --broker mqtt://HOST:PORT` (a full address) overriding a provisioned
    TLS config: the agent connects without TLS to the plain listener."""
    broker = Broker(tmp_path / "mqtt", tls=False, plain=True)
    broker.start()
    assert broker.plain_port is not None
    ca = pki.init_ca(tmp_path / "pki")
    provision("CAB-DOC-1", tmp_path / "cab", ca_dir=ca.dir, broker_host="mqtt.example", broker_port=8883)
    data = tmp_path / "data"
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run", "--config", str(tmp_path / "cab" / "cabinet.toml"),
         "--data-dir", str(data), "--broker", f"mqtt://127.0.0.1:{broker.plain_port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    births: list[dict] = []
    try:
        async with aiomqtt.Client("127.0.0.1", broker.plain_port, protocol=aiomqtt.ProtocolVersion.V5) as c:
            await c.subscribe("city/v1/cab/CAB-DOC-1/state", qos=1)

            async def next_state() -> dict:
                async for msg in c.messages:
                    return json.loads(msg.payload)
                raise AssertionError("no message")

            births.append(await asyncio.wait_for(next_state(), 60))
            agent.send_signal(signal.SIGTERM)
            births.append(await asyncio.wait_for(next_state(), 30))
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        log.close()
        broker.stop()
    birth, goodbye = births
    assert birth["online"] is True, (tmp_path / "agent.log").read_text()[-2000:]
    for page, keys in documented_birth_keys().items():
        assert set(birth) == keys, f"{page}: documented {sorted(keys)}, published {sorted(birth)}"
    assert set(birth["config"]) == {"sha256", "version", "trial", "last_rollback"}
    assert "`sha256`, `version`" in section(CLOUD, "3. The state message")
    assert goodbye == {"online": False, "boot": birth["boot"], "reason": "stopped"}


# ---------------------------------------------------------------- self-telemetry


def test_the_self_telemetry_table_is_the_codes() -> None:
    text = section(UPLINK, "Self-telemetry")
    rows = {r[0].strip("`"): r for r in table_rows(text)}
    code = {p.name: p for p in selftel.POINTS}
    assert set(rows) == set(code)
    for name, p in code.items():
        _, unit, deadband, heartbeat, _ = rows[name]
        assert (unit, float(deadband), float(heartbeat)) == (p.unit, p.deadband, p.heartbeat_s), name
    period = inspect.signature(selftel.SelfTelemetry).parameters["period_s"].default
    app_period = inspect.signature(App).parameters["selftel_period_s"].default
    assert period == app_period == 10.0
    assert "samples its own state every 10 s" in text and "900 s passed" in text
    assert "every 10 s through" not in UPLINK  # the old claim: they are not published every 10 s


# ---------------------------------------------------------------- topics


def _shape(topic: str) -> str:
    t = re.sub(r"^(city/v1|<prefix>)/cab/(%u|\+|<id>)/", "", topic)
    return re.sub(r"<kind>|\+|#", "*", t)


def test_the_topic_tables_list_every_topic_of_the_acl_and_nothing_later() -> None:
    acl = (ROOT / "tools" / "mosquitto" / "acl.example").read_text()
    in_acl = {_shape(t) for t in re.findall(r"^(?:pattern|topic) (?:read|write|readwrite) (\S+)", acl, re.M)}
    cloud = {_shape(r[0].strip("`")) for r in table_rows(section(CLOUD, "2. Topics"))}
    assert in_acl <= cloud, f"in the ACL, not in cloud.md §2: {sorted(in_acl - cloud)}"
    for name, text in (("cloud.md", CLOUD), ("uplink.md", UPLINK), ("batch-format.md", BATCH)):
        assert "(later)" not in text, f"{name} still says (later)"
    for row in table_rows(section(CLOUD, "2. Topics")):
        assert row[2] in ("yes", "no", "—"), row  # retained or not, for each


def test_the_seq_block_is_documented() -> None:
    assert SEQ_BLOCK == 64
    assert "blocks of 64" in section(CLOUD, "5. Sequence numbers") and "blocks of **64**" in BATCH


# ---------------------------------------------------------------- the ingest database


def test_every_table_and_column_of_the_ingest_is_documented() -> None:
    """Of both engines: SQLite's tables and every table the PostgreSQL migrations create."""
    text = section(CLOUD, "6. The ingest database")
    pg = [sql for step in migrations.MIGRATIONS.values() for sql in step]
    for create in [*ingest_store.TABLES, *pg]:
        create = re.sub(r"\s*PARTITION BY RANGE \(t\)\s*$", "", create)
        m = re.match(r"\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+) \((.*)\)\s*$", create, re.S)
        if not m:
            continue  # an index, a view, a partition
        table, body = m.groups()
        assert f"`{table}`" in text, table
        columns = [c.split()[0] for c in re.split(r",\s*(?![^()]*\))", body) if not c.strip().startswith("PRIMARY")]
        missing = [c for c in columns if f"`{c}`" not in text]
        assert not missing, f"{table}: undocumented columns {missing}"
    for q in ("energy_kwh", "point_last", "segment_days", "alarm_episodes", "heartbeat_gaps", "json_extract"):
        assert q in text
    for view in re.findall(r"CREATE (?:VIEW|FUNCTION) (\w+)", " ".join(pg)):
        assert f"{view}" in text, f"view or function {view} is not documented"


def test_the_ingest_extra_is_documented() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "psycopg" in cfg["options.extras_require"]["ingest"]
    assert "pip install -e '.[ingest]'" in CLOUD
    assert "pip install -e '.[ingest]'" in ingest_store.PSYCOPG_MISSING


# ---------------------------------------------------------------- the bit-flip sample


def test_the_bit_flip_sample_is_a_vector_with_its_counts() -> None:
    v = VECTOR
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(v["cabinet_key_seed"].encode()).digest())
    kid = cose.key_id(key.public_key())
    r = v["reading"]
    body = encode_body([Reading(r["point"], r["t"], r["value"], Quality(r["quality"]))], compression=v["compression"])
    assert body.hex() == v["body_hex"]
    msg = cose.seal_batch(body, key=key, kid=kid, cabinet=v["cab"], boot=v["boot"], seq=v["seq"], topic=v["topic"])
    assert msg.hex() == v["envelope_hex"]
    assert v["envelope_hex"] in BATCH, "batch-format.md does not cite the sample's bytes"
    counts: collections.Counter[str] = collections.Counter()
    for i in range(len(msg)):
        for bit in range(8):
            bad = bytearray(msg)
            bad[i] ^= 1 << bit
            try:
                cose.open_batch(bytes(bad), topic=v["topic"], keys=lambda k: key.public_key() if k == kid else None)
                counts["accepted"] += 1
            except cose.VerifyError as e:
                counts[e.reason] += 1
    assert dict(counts) == v["flips"]
    cited = section(BATCH, "3.1 Verification")
    assert f"{len(msg)} bytes" in cited and f"{8 * len(msg)} flips" in cited
    for reason, n in v["flips"].items():
        assert re.search(rf"{n}( as)? `{reason}`", cited), (reason, n)


def test_the_broker_example_names_real_commands() -> None:
    """The certificate commands in the example broker config's comments exist and parse."""
    from tools.cli.table import parser

    conf = (ROOT / "tools" / "mosquitto" / "cabinet-broker.conf.example").read_text()
    assert "python -m tools" not in conf
    commands = re.findall(r"^#\s+(cabinet .+)$", conf, re.M)
    assert {c.split()[1:3][0] for c in commands} >= {"ca", "provision"} and len(commands) >= 4
    for command in commands:
        parser().parse_args(shlex.split(command)[1:])  # SystemExit (and a usage message) if not
    for path in re.findall(r"^(?:cafile|certfile|keyfile) (\S+)$", conf, re.M):
        assert Path(path).name in ("ca.crt", "server.crt", "server.key"), path  # what issue-server writes


def documented_queries(engine: str) -> list[str]:
    """Every ```sql block of cloud.md §6 for `engine`: "sqlite" (blocks that begin `-- SQLite`)
    or "postgresql" (the others)."""
    blocks = [b.strip() for b in re.findall(r"```sql\n(.*?)```", section(CLOUD, "6. The ingest database"), re.S)]
    return [b for b in blocks if b.startswith("-- SQLite") == (engine == "sqlite")]


DOOR = "climate.door_open_too_long"


def _sample_store(dsn: str, tmp_path: Path) -> None:
    """CAB-0042 with an energy counter over two days, a meter value and an alarm event."""
    key = Ed25519PrivateKey.generate()
    kid = cose.key_id(key.public_key())
    store = ingest_store.Store(dsn)
    store.add_key("CAB-0042", kid, pki.public_key_raw(key), 1_800_000_000.0)
    event = {"alarm": "climate.door_open_too_long", "severity": "warning", "transition": "raised"}
    alarm = json.dumps({**event, "state": "active", "message": "door open", "t": 1_800_000_100.0, "count": 1})
    rs = [
        Reading("lighting.seg1.energy_kwh", 1_800_000_000.0, 1.5, Quality.GOOD),
        Reading("lighting.seg1.energy_kwh", 1_800_040_000.0, 4.0, Quality.GOOD),
        Reading("lighting.seg1.energy_kwh", 1_800_090_000.0, 6.25, Quality.GOOD),
        Reading("meter_main.voltage_l1", 1_800_000_000.0, 230.1, Quality.GOOD),
        Reading("alarm." + DOOR, 1_800_000_100.0, alarm, Quality.GOOD),
    ]
    topic = cose.telemetry_topic("city/v1", "CAB-0042")
    env = cose.seal_batch(encode_body(rs), key=key, kid=kid, cabinet="CAB-0042", boot=1, seq=1, topic=topic)
    c = ingest_store.Commit(batches=[ingest_store.StoredBatch("CAB-0042", 1, 1, kid, 1_700_000_000.0, 5, env)])
    store.commit(c)
    assert store.materialize() == (1, 5)
    store.close()


def test_the_documented_sqlite_queries_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "i.db"
    _sample_store(str(db), tmp_path)
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        conn = sqlite3.connect(db)
        results = [conn.execute(lite).fetchall() for lite in documented_queries("sqlite")]
        conn.close()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    alarms, energy, last = results
    assert alarms[0][3:5] == ("warning", "raised")
    assert energy == [("CAB-0042", "lighting.seg1.energy_kwh", "2027-01-15", 2.5),
                      ("CAB-0042", "lighting.seg1.energy_kwh", "2027-01-16", 0.0)]  # fmt: skip
    assert {r[0] for r in last} == {
        "lighting.seg1.energy_kwh",
        "meter_main.voltage_l1",
        "alarm.climate.door_open_too_long",
    }
    assert [r[3] for r in last if r[0] == "lighting.seg1.energy_kwh"] == [6.25]


@pytest.mark.integration  # the machine's PostgreSQL (skipped when none is reachable)
def test_the_documented_postgresql_queries_run() -> None:
    """Each documented query on known data (tests/test_pg_views.py: a catalogue in Berlin,
    counters across a local midnight, an alarm raised, acknowledged, cleared and raised again)."""
    import datetime as dt

    import psycopg

    from tests.pgdb import fresh_database
    from tests.test_pg_views import POINTS, sample

    with fresh_database("cabinet_docs") as dsn:
        sample(dsn)
        with psycopg.connect(dsn) as conn:
            results = [conn.execute(pg).fetchall() for pg in documented_queries("postgresql")]
    points, last, days, alarms, gaps, quiet, config = results
    assert [r[1] for r in points] == sorted(p.name for p in POINTS) and points[0][2] == ""  # alarm: no unit
    assert {r[0]: r[8] for r in last}["meter_main.voltage_l1"] == "V" and len(last) == len(POINTS)
    assert [(r[1], r[2].isoformat(), r[4], r[5]) for r in days] == [
        ("seg1", "2026-01-15", 2.0, 2.0),
        ("seg1", "2026-01-16", 2.5, 1.5),
    ]
    assert [(r[1], r[5], r[7]) for r in alarms] == [
        ("door_open", None, None),
        ("door_open", "tech", dt.timedelta(minutes=10)),
    ]
    half_day, fifty = dt.timedelta(hours=12, minutes=30), dt.timedelta(minutes=50)
    assert [r[3] for r in gaps] == [half_day, fifty, half_day]  # alarm cleared 22:40, next reading 23:30
    assert quiet and quiet[0][0] == "CAB-0042"
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in config] == [("CAB-0042", 7, "sim", "Europe/Berlin", "committed")]
