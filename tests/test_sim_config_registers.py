"""The simulated devices answer their configuration registers like the real ones (issue 14).

Before, the simulator served only the registers a profile polls: the meters' settings
(holding 40003..40029), the relay board's firmware/address registers, the XY-MD02's
0x0101..0x0104 and the DALI gateway's per-ballast configuration answered exception 2,
so `cabinet scan` of the simulator scored the relay board 0.45, the XY-MD02 0.70 and
the DALI gateway 0.30. Now each device serves the registers of its register map
(`DeviceProfile.config`), with values per the map (the address register holds the
unit id, the baud register the line's baud rate), writable where the device is.
The scan test runs `cabinet sim` and `cabinet scan` as real processes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as cfg
from agent.clock import ScaledClock
from agent.runtime.entry import board_infos
from boards.sim.cabinet import SimCabinet
from boards.sim.store import IllegalAddress, IllegalValue
from drivers.modbus import codec
from drivers.profiles.base import Table


def f32(hi: int, lo: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


def u32(hi: int, lo: int) -> int:
    return hi << 16 | lo


PY = sys.executable


@pytest.fixture
def cabinet(tmp_path) -> SimCabinet:
    return SimCabinet(cfg.load(cfg.EXAMPLE, board_infos()), tmp_path, ScaledClock(1.0))  # built, not started


def test_meters_answer_their_settings(cabinet):
    for name, unit, baud_code in (("meter_main", 1, 2.0), ("meter_seg1", 2, 2.0)):  # 9600 Bd on this cabinet
        store = cabinet.stores[name]
        regs = store.read(Table.HOLDING, 0x0000, 0x1E)  # 40001..40030 in one read, as sdm_modbus does
        assert f32(*regs[0x14:0x16]) == unit  # 40021 meter id
        assert f32(*regs[0x1C:0x1E]) == baud_code  # 40029 baud rate
        assert f32(*regs[0x12:0x14]) == 0.0  # 40019 parity/stop: N-1
        assert store.get("config.address") == unit and store.get("config.baud") == "9600"
        serial = store.read(Table.HOLDING, 0xFC00, 2)
        assert u32(*serial) > 0
    assert cabinet.stores["meter_main"].get("config.system_type") == "3P4W"
    with pytest.raises(IllegalAddress):
        cabinet.stores["meter_seg1"].read(Table.HOLDING, 0x4000, 1)  # nothing there on a meter


def test_settings_are_writable_where_the_device_takes_them(cabinet):
    meter = cabinet.stores["meter_main"]
    prof_point = meter.profile.config[[c.key for c in meter.profile.config].index("config.address")].point
    meter.write(Table.HOLDING, 0x0014, codec.encode(prof_point, 17))
    assert meter.get("config.address") == 17
    with pytest.raises(IllegalValue):  # 0 is no meter id: refused, nothing changed
        meter.write(Table.HOLDING, 0x0014, codec.encode(prof_point, 0))
    assert meter.get("config.address") == 17
    with pytest.raises(IllegalAddress):  # the serial number is read only
        meter.write(Table.HOLDING, 0xFC00, [0, 1])
    climate = cabinet.stores["climate"]
    climate.write(Table.HOLDING, 0x0103, [0xFFFB])  # temperature offset -0.5 °C
    assert climate.get("config.temperature_offset") == -0.5
    with pytest.raises(IllegalValue):
        climate.write(Table.HOLDING, 0x0102, [7])  # no baud code 7 on an XY-MD02
    relays = cabinet.stores["relays"]
    assert relays.read(Table.HOLDING, 0x8000, 1) == [200]  # V2.00
    assert relays.read(Table.HOLDING, 0x4000, 1) == [20]
    assert relays.read(Table.HOLDING, 0x2000, 1) == [0x0001]  # no parity, 9600 Bd
    relays.write(Table.HOLDING, 0x4000, [21])
    with pytest.raises(IllegalAddress):
        relays.write(Table.HOLDING, 0x8000, [300])  # firmware version is read only


def test_dali_gateway_configuration(cabinet):
    dali = cabinet.stores["dali"]
    block = dali.read(Table.HOLDING, 5, 11)  # ballast 0: +5..+15
    assert block[2:10] == [6, 1, 1, 100, 100, 100, 0, 7]  # LED, min/max/power-on/failure levels, fade
    assert dali.read(Table.HOLDING, 0, 4) == [0, 0, 0, 0]  # no ballast or lamp failures
    assert dali.get("a3.max_level") == 100


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def sim_process(tmp_path):
    """`cabinet sim` as a process (no --ready-file), waited for with `sim-control --wait`."""
    data, log = tmp_path / "data", tmp_path / "sim.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [PY, "-m", "tools.cli", "sim", "--data-dir", str(data), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        up = _run([PY, "-m", "tools.sim.control", "--data-dir", str(data), "--wait", "30", "state"])
        assert up.returncode == 0, up.stderr + log.read_text()
        yield data
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not (data / "sim" / "endpoints.json").exists()  # removed at exit: no stale ports for scan


# What the profiles claim for a device that shows all their evidence (see each profile's probe).
EXPECTED = {
    1: ("sdm630", 0.9),
    2: ("sdm120", 0.6),  # the simulated SDM120 reads 0 at 0x0034/0x00C8 (see docs/simulator.md)
    3: ("sdm120", 0.6),
    10: ("xy-md02", 0.85),
    20: ("relay-board", 0.8),
    30: ("lux", 0.5),
}
CLAIM_BAR = 0.5  # the lowest confidence a profile claims a device with (lux's full evidence)


@pytest.mark.integration  # `cabinet sim` and `cabinet scan` processes
def test_scan_of_the_simulator_recognizes_every_device(sim_process: Path):
    scans = {}
    for bus, units in (("rs485", "1-3,10,20,30"), ("dali", "1")):
        scan = [PY, "-m", "tools.cli", "scan", "--bus", bus, "--data-dir", str(sim_process), "--units", units]
        r = _run([*scan, "--json", "--timeout-ms", "200"])
        assert r.returncode == 0, r.stderr
        scans[bus] = {f["unit"]: (f["profile"], f["confidence"]) for f in json.loads(r.stdout)}
    assert scans["rs485"] == EXPECTED
    assert scans["dali"] == {1: ("dali-gateway", 0.85)}
    assert all(c >= CLAIM_BAR for s in scans.values() for _, c in s.values())
