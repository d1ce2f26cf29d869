"""The cloud engineer's commands (issue 14): `cabinet ca init|issue-server|issue-client`,
`cabinet provision` (plain MQTT without a CA, templates keep their [uplink]), `cabinet
ingest run|stats|init|register` (one-line errors, per-cabinet stats, --wait-rows), the
missing PostgreSQL driver, and broker addresses (`cabinet run --broker mqtts://...`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from agent import config as cfg
from agent.config.model import Uplink
from agent.model import Quality, Reading
from agent.runtime.entry import board_infos
from agent.uplink.address import BrokerAddress, parse_broker
from agent.uplink.setup import UplinkSettingsError, settings
from agent.wire import cose
from agent.wire.batch import encode_body
from tools.cli.table import main
from tools.ingest.store import Commit, Store, StoredBatch
from tools.provision import pki

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, *needles: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ---------------------------------------------------------------- broker addresses


@pytest.mark.parametrize(
    "text,expected",
    [
        ("mqtts://mqtt.city.example", BrokerAddress("mqtt.city.example", None, True)),
        ("mqtts://10.0.0.5:9883", BrokerAddress("10.0.0.5", 9883, True)),
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883, False)),
        ("MQTT://host/", BrokerAddress("host", None, False)),
        ("127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884, None)),
        ("host", BrokerAddress("host", None, None)),
        ("mqtts://[2001:db8::5]:8883", BrokerAddress("2001:db8::5", 8883, True)),
        ("2001:db8::5", BrokerAddress("2001:db8::5", None, None)),
    ],
)
def test_broker_addresses(text: str, expected: BrokerAddress) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("bad", ["", "http://host", "mqtt://host:0", "host:99999", "ho st", "mqtts://[::1", "h:x"])
def test_bad_broker_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="broker address"):
        parse_broker(bad)


def _config(uplink: Uplink | None) -> cfg.Config:
    return dataclasses.replace(cfg.load(cfg.EXAMPLE, board_infos()), uplink=uplink)


def _up(c: cfg.Config, broker: str) -> Uplink:
    s = settings(c, broker)
    assert s is not None
    return s


def test_run_broker_takes_a_full_address() -> None:
    dev = _up(_config(None), "mqtt://10.1.1.1:2883")
    assert (dev.broker, dev.port, dev.tls, dev.batch_max_age_s) == ("10.1.1.1", 2883, False, 10.0)
    assert (_up(_config(None), "10.1.1.1").port, _up(_config(None), "10.1.1.1").tls) == (1883, False)
    with pytest.raises(UplinkSettingsError, match="TLS needs"):
        settings(_config(None), "mqtts://10.1.1.1")
    tls = Uplink(broker="mqtt.example", port=8883, tls=True, ca="/ca", cert="/c", key="/k", batch_max_age_s=30)
    c = _config(tls)
    plain = _up(c, "mqtt://127.0.0.1")
    assert (plain.broker, plain.port, plain.tls, plain.batch_max_age_s) == ("127.0.0.1", 1883, False, 30)
    same = _up(c, "other:9000")  # HOST[:PORT] keeps TLS as the config says
    assert (same.broker, same.port, same.tls) == ("other", 9000, True)
    assert _up(c, "other").port == 8883
    assert _up(c, "mqtts://other").port == 8883
    with pytest.raises(UplinkSettingsError, match="TLS needs"):
        settings(_config(Uplink(broker="h", port=1883, tls=False)), "mqtts://h")
    with pytest.raises(UplinkSettingsError, match="--broker"):
        settings(c, "http://h")


@pytest.mark.integration  # a `cabinet run` process
def test_run_refuses_tls_without_certificates_in_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tools.cli", "run", "--data-dir", str(tmp_path), "--broker", "mqtts://127.0.0.1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "cabinet run: --broker mqtts://127.0.0.1: TLS needs" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- the device CA and service certificates


def test_ca_subcommands(tmp_path: Path, capsys) -> None:
    rc, out, _ = run(["ca", "init", "--dir", str(tmp_path / "pki")], capsys)
    assert rc == 0 and "device CA" in out
    rc, _, err = run(["ca", "init", "--dir", str(tmp_path / "pki")], capsys)
    assert rc == 2
    one_line_error(err, "cabinet ca init:", "already exists", "--force")
    assert "force=True" not in err

    out_dir = tmp_path / "svc"
    rc, out, err = run(
        ["ca", "issue-client", "--dir", str(tmp_path / "pki"), "--name", "ingest", "--out", str(out_dir)], capsys
    )
    assert rc == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["ca.crt", "ingest.crt", "ingest.key"]
    assert stat.S_IMODE((out_dir / "ingest.key").stat().st_mode) == 0o600
    info = pki.cert_info((out_dir / "ingest.crt").read_bytes())
    assert info["cn"] == "ingest" and info["extended_key_usage"] == ["clientAuth"]
    pki.load_ca(tmp_path / "pki").verify((out_dir / "ingest.crt").read_bytes())
    rc, _, err = run(
        ["ca", "issue-client", "--dir", str(tmp_path / "pki"), "--name", "ingest", "--out", str(out_dir)], capsys
    )
    assert rc == 2
    one_line_error(err, "already exists", "--force")

    rc, _, err = run(
        ["ca", "issue-server", "--dir", str(tmp_path / "nope"), "--host", "h", "--out", str(tmp_path / "b")], capsys
    )
    assert rc == 2
    one_line_error(err, "cabinet ca issue-server:", "cabinet ca init")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to the broker's user needs root")
def test_issue_server_as_root_gives_the_files_to_the_broker_user(tmp_path: Path, capsys) -> None:
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no user mosquitto")
    pki.init_ca(tmp_path / "pki")
    reachable = Path("/tmp") / f"b14-broker-{os.getpid()}"
    try:
        rc, out, err = run(
            ["ca", "issue-server", "--dir", str(tmp_path / "pki"), "--host", "localhost", "--out", str(reachable)],
            capsys,
        )
        assert rc == 0, err
        assert "owner mosquitto" in out
        for p in (reachable, *reachable.iterdir()):
            assert p.stat().st_uid == user.pw_uid, p
        assert stat.S_IMODE((reachable / "server.key").stat().st_mode) == 0o600  # never world-readable
        assert stat.S_IMODE(reachable.stat().st_mode) == 0o750
    finally:
        subprocess.run(["rm", "-rf", str(reachable)], check=False)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    rc, _, err = run(
        ["ca", "issue-server", "--dir", str(tmp_path / "pki"), "--host", "h", "--out", str(private / "broker")], capsys
    )
    assert rc == 2
    one_line_error(err, "user mosquitto cannot reach it")
    assert not (private / "broker").exists()
    rc, _, err = run(
        [
            "ca",
            "issue-server",
            "--dir",
            str(tmp_path / "pki"),
            "--host",
            "h",
            "--out",
            str(tmp_path / "x"),
            "--user",
            "no-such-user-b14",
        ],
        capsys,
    )
    assert rc == 2
    one_line_error(err, "no-such-user-b14")


# ---------------------------------------------------------------- provisioning


def test_provision_plain_mqtt_needs_no_ca(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cab"
    rc, text, err = run(["provision", "--id", "CAB-P1", "--out", str(out), "--broker", "mqtt://10.0.0.9"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["cabinet.toml", "signing.key"]
    assert "plain MQTT" in text and "mqtt://10.0.0.9:1883" in text
    c = cfg.load(str(out / "cabinet.toml"), board_infos())
    assert c.uplink is not None and (c.uplink.broker, c.uplink.port, c.uplink.tls) == ("10.0.0.9", 1883, False)
    assert c.uplink.signing_key == str(out / "signing.key")
    rc, _, err = run(["provision", "--id", "CAB-P1", "--out", str(out), "--broker", "mqtt://10.0.0.9"], capsys)
    assert rc == 2
    one_line_error(err, "already holds a cabinet identity", "--force")
    assert "force=True" not in err
    rc, _, err = run(["provision", "--id", "CAB-P2", "--out", str(tmp_path / "t"), "--broker", "mqtts://h"], capsys)
    assert rc == 2
    one_line_error(err, "TLS needs --ca-dir")


def test_provision_keeps_the_templates_uplink(tmp_path: Path, capsys) -> None:
    pki.init_ca(tmp_path / "pki")
    template = tmp_path / "t.toml"
    example = (ROOT / "boards" / "sim" / "cabinet.toml").read_text()
    template.write_text(
        example + '\n[uplink]\nbroker = "old"\ntls = false\nbatch_max_age_s = 5\nack_timeout_s = 20.5\n'
        'topic_prefix = "town/v2"\nclient_id = "box-7"\n'
    )
    out = tmp_path / "cab"
    rc, text, err = run(
        ["provision", "--id", "CAB-T1", "--out", str(out), "--template", str(template),
         "--broker", "mqtts://mqtt.example:9883", "--ca-dir", str(tmp_path / "pki"), "--json"],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    info = json.loads(text)
    assert info["kept"] == ["ack_timeout_s", "batch_max_age_s", "client_id", "topic_prefix"]
    up = tomllib.loads((out / "cabinet.toml").read_text())["uplink"]
    assert up == {
        "broker": "mqtt.example", "port": 9883, "tls": True, "ca": "ca.crt", "cert": "tls.crt", "key": "tls.key",
        "signing_key": "signing.key", "topic_prefix": "town/v2",
        "batch_max_age_s": 5, "ack_timeout_s": 20.5, "client_id": "box-7",
    }  # fmt: skip
    c = cfg.load(str(out / "cabinet.toml"), board_infos())
    assert c.uplink is not None and c.uplink.batch_max_age_s == 5 and c.uplink.topic_prefix == "town/v2"
    rc, text, err = run(
        ["provision", "--id", "CAB-T1", "--out", str(out), "--template", str(template), "--force",
         "--broker", "mqtt://h", "--topic-prefix", "city/v9", "--json"],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    up = tomllib.loads((out / "cabinet.toml").read_text())["uplink"]
    assert up["topic_prefix"] == "city/v9" and up["tls"] is False and "ca" not in up
    assert sorted(p.name for p in out.iterdir()) == ["cabinet.toml", "signing.key"]  # no stale certificates


def _blocked_psycopg(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`cabinet ARGV` in a Python where the psycopg package cannot be imported (not installed)."""
    code = "import sys; sys.modules['psycopg'] = None; from tools.cli.table import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


@pytest.mark.integration  # `cabinet` processes
def test_postgresql_without_psycopg_is_a_one_line_error(tmp_path: Path) -> None:
    dsn = "postgresql://127.0.0.1/never_used"
    pki.new_signing_key(tmp_path / "ingest.key")
    for argv in (
        ["provision", "--id", "CAB-1", "--out", "cab", "--broker", "mqtt://h", "--ingest-db", dsn],
        ["ingest", "run", "--db", dsn, "--key", "ingest.key"],
        ["ingest", "stats", "--db", dsn],
        ["ingest", "register", "--db", dsn, "--cabinet", "CAB-1", "--public-key", "11" * 32],
    ):
        r = _blocked_psycopg(argv, tmp_path)
        assert r.returncode == 2, (argv, r.stderr)
        one_line_error(r.stderr, "psycopg", "pip install -e '.[ingest]'")
    assert not (tmp_path / "cab").exists()  # refused before anything was written


# ---------------------------------------------------------------- the ingest commands


def test_ingest_init_twice_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    key = str(tmp_path / "ingest.key")
    rc, first, _ = run(["ingest", "init", "--key", key], capsys)
    assert rc == 0 and len(first.strip()) == 64
    rc, _, err = run(["ingest", "init", "--key", key], capsys)
    assert rc == 2
    one_line_error(err, "cabinet ingest init:", "already exists", first.strip(), "--force")
    rc, second, _ = run(["ingest", "init", "--key", key, "--force"], capsys)
    assert rc == 0 and second.strip() != first.strip()


def test_ingest_run_errors_are_one_line(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "i.db")
    rc, _, err = run(["ingest", "run", "--db", db, "--key", str(tmp_path / "missing.key")], capsys)
    assert rc == 2
    one_line_error(err, "missing.key", "missing")
    pki.new_signing_key(tmp_path / "k")
    rc, _, err = run(["ingest", "run", "--db", db, "--key", str(tmp_path / "k"), "--broker", "mqtts://h"], capsys)
    assert rc == 2
    one_line_error(err, "TLS needs --ca, --cert, --tls-key")
    rc, _, err = run(["ingest", "register", "--db", db, "--cabinet", "CAB/1", "--public-key", "zz"], capsys)
    assert rc == 2
    one_line_error(err, "cabinet ingest register:")


def _fill(store: Store, key, cabinet: str, seqs: list[int], n: int = 5) -> None:
    topic = cose.telemetry_topic("city/v1", cabinet)
    kid = cose.key_id(key.public_key())
    store.add_key(cabinet, kid, pki.public_key_raw(key), time.time())
    c = Commit()
    for seq in seqs:
        rs = [Reading("m.v", 1_800_000_000 + seq * 10 + i, float(i), Quality.GOOD) for i in range(n)]
        env = cose.seal_batch(encode_body(rs), key=key, kid=kid, cabinet=cabinet, boot=1, seq=seq, topic=topic)
        c.batches.append(StoredBatch(cabinet, seq, 1, kid, 1_800_000_000.0 + seq, n, env))
    store.commit(c)
    store.materialize()


def check_stats(dsn: str, tmp_path: Path, capsys) -> None:
    store = Store(dsn)
    _fill(store, pki.load_signing_key(_key(tmp_path, "a")), "CAB-A", [1, 2, 3, 65, 66, 130])
    _fill(store, pki.load_signing_key(_key(tmp_path, "b")), "CAB-B", [1, 2])
    store.close()
    rc, out, _ = run(["ingest", "stats", "--db", dsn], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["cabinet", "rows", "batches", "last", "seen", "last", "seq", "gaps"]
    a_row, b_row = lines[1].split(), lines[2].split()
    assert a_row[:3] == ["CAB-A", "30", "6"] and a_row[-4:] == ["130", "2", "(124", "seqs)"]
    assert b_row[:3] == ["CAB-B", "10", "2"] and b_row[-2:] == ["2", "0"]
    seen = dt.datetime.fromtimestamp(1_800_000_130, dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert seen in lines[1]  # the machine's local time
    assert lines[3].startswith("total: 40 readings in 8 batches from 2 cabinet(s)")
    rc, out, _ = run(["ingest", "stats", "--db", dsn, "--json", "--cabinet", "CAB-A"], capsys)
    doc = json.loads(out)
    assert doc["readings"] == 40 and [c["cabinet"] for c in doc["by_cabinet"]] == ["CAB-A"]
    a = doc["by_cabinet"][0]
    assert (a["rows"], a["batches"], a["last_seq"], a["gaps"], a["missing_seqs"]) == (30, 6, 130, 2, 124)
    assert a["last_seen_t"] == 1_800_000_130.0 and a["last_seen"] == "2027-01-15T08:02:10.000+00:00"
    rc, _, _ = run(["ingest", "stats", "--db", dsn, "--wait-rows", "40", "--timeout", "5"], capsys)
    assert rc == 0
    t = time.monotonic()
    rc, _, err = run(
        ["ingest", "stats", "--db", dsn, "--wait-rows", "11", "--cabinet", "CAB-B", "--timeout", "0.6"], capsys
    )
    assert rc == 1 and time.monotonic() - t >= 0.5
    assert err.strip() == "cabinet ingest stats: 10 of 11 readings of CAB-B stored after 0.6 s"


def _key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.key"
    if not path.exists():
        pki.new_signing_key(path)
    return path


def test_ingest_stats_per_cabinet_sqlite(tmp_path: Path, capsys) -> None:
    rc, _, err = run(["ingest", "stats", "--db", str(tmp_path / "none.db")], capsys)
    assert rc == 2 and not (tmp_path / "none.db").exists()
    one_line_error(err, "no such database")
    check_stats(str(tmp_path / "i.db"), tmp_path, capsys)


@pytest.mark.integration  # the machine's PostgreSQL (skipped when none is reachable)
def test_ingest_stats_per_cabinet_postgresql(tmp_path: Path, capsys) -> None:
    psycopg = pytest.importorskip("psycopg")
    base = os.environ.get("CABINET_TEST_PG", "postgresql://127.0.0.1:5432/postgres")
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL at {base}: {e}")
    name = f"cabinet_stats_{os.getpid()}_{int(time.time() * 1000) % 10**6}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        check_stats(base.rsplit("/", 1)[0] + f"/{name}", tmp_path, capsys)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_each_ingest_subcommand_has_its_own_help(capsys) -> None:
    helps = {}
    for sub in ("run", "stats", "init", "register"):
        with pytest.raises(SystemExit):
            main(["ingest", sub, "--help"])
        helps[sub] = capsys.readouterr().out
    assert len(set(helps.values())) == 4
    assert "--wait-rows" in helps["stats"] and "--wait-rows" not in helps["run"]
    assert "--group" in helps["run"] and "--force" in helps["init"]


def test_every_service_user_of_the_acl_is_a_reserved_cabinet_id() -> None:
    """A cabinet certificate with the CN of an ACL `user` would get that user's rights."""
    from tools.provision.identity import RESERVED_IDS, validate_cabinet_id

    acl = (ROOT / "tools" / "mosquitto" / "acl.example").read_text()
    users = set(re.findall(r"^user (\S+)$", acl, re.M))
    assert users and users <= RESERVED_IDS
    for name in users:
        with pytest.raises(ValueError, match="reserved"):
            validate_cabinet_id(name)
