"""`cabinet pole build` makes a complete bundle (every firmware module as .mpy that a real
MicroPython imports, the boot file, the node's config); `cabinet pole flash` makes the
right mpremote calls, refuses an incomplete bundle, stops at the first failing call."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.test_pole_vectors import judge, run_micropython
from tools.cli.table import main as cabinet
from tools.pole import bundle, firmware, flash


def build(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "bundle"
    return cabinet(["pole", "build", "--out", str(out), *extra]), out


@pytest.mark.integration  # mpy-cross processes
def test_build_makes_a_complete_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = build(tmp_path, "--address", "17", "--baudrate", "19200", "--parity", "E")
    assert code == 0
    assert "address 17 at 19200 Bd" in capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    modules = sorted(f"pole_node/{p.stem}.mpy" for p in firmware.modules())
    assert files == sorted([*modules, "main.py", "pole_config.json", "MANIFEST.json"])
    for name in modules:  # real .mpy files: magic "M", version 6
        assert (out / name).read_bytes()[:2] == b"M\x06", name
    cfg = json.loads((out / "pole_config.json").read_text())
    assert (cfg["address"], cfg["baudrate"], cfg["parity"]) == (17, 19200, "E")
    manifest = bundle.verify(out)
    assert manifest["address"] == 17 and manifest["firmware_version"] == "1.0"
    assert "pole_node.main" in (out / "main.py").read_text() and "maintenance" in (out / "main.py").read_text()


@pytest.mark.integration  # mpy-cross and a Node.js process
def test_the_bundles_mpy_files_run_the_vectors_under_micropython(tmp_path: Path) -> None:
    code, out = build(tmp_path, "--address", "5")
    assert code == 0
    results, summary = run_micropython(out / "pole_node")
    judge(results, summary)


@pytest.mark.integration
def test_build_config_file_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "node.json"
    cfg.write_text(json.dumps({"address": 9, "de_pin": 15, "volts_per_count": 0.02}))
    code, out = build(tmp_path, "--config", str(cfg))
    assert code == 0
    written = json.loads((out / "pole_config.json").read_text())
    assert (written["address"], written["de_pin"], written["volts_per_count"]) == (9, 15, 0.02)

    code, _ = build(tmp_path, "--address", "0")
    assert code == 2
    assert "pole_config.json: address: 0 out of range 1..247" in capsys.readouterr().err
    code, _ = build(tmp_path)
    assert code == 2 and "--address N is required" in capsys.readouterr().err
    cfg.write_text(json.dumps({"address": 9, "de_pins": 15}))
    assert build(tmp_path, "--config", str(cfg))[0] == 2
    assert "de_pins: unknown key" in capsys.readouterr().err
    cfg.write_text("{not json")
    assert build(tmp_path, "--config", str(cfg))[0] == 2
    assert str(cfg) in capsys.readouterr().err
    assert bundle.verify(out)["address"] == 9  # failed builds left the last good bundle alone


def test_build_never_empties_a_folder_that_is_not_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    precious = tmp_path / "bundle" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("keep me")
    code, _ = build(tmp_path, "--address", "3")
    assert code == 2 and "not a pole bundle" in capsys.readouterr().err
    assert precious.read_text() == "keep me"


@pytest.mark.integration  # mpy-cross processes
def test_flash_dry_run_prints_the_mpremote_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = build(tmp_path, "--address", "4")
    capsys.readouterr()
    assert cabinet(["pole", "flash", "--port", "/dev/ttyACM7", "--bundle", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mp = flash.mpremote()
    assert lines == [
        f'{mp} connect /dev/ttyACM7 exec \'open("maintenance", "w").close()\'',
        f"{mp} connect /dev/ttyACM7 reset",
        f"{mp} connect /dev/ttyACM7 fs cp -r {out}/pole_node :",
        f"{mp} connect /dev/ttyACM7 fs cp {out}/pole_config.json :pole_config.json",
        f"{mp} connect /dev/ttyACM7 fs cp {out}/main.py :main.py",
        f"{mp} connect /dev/ttyACM7 exec 'import os; os.remove(\"maintenance\")'",
        f"{mp} connect /dev/ttyACM7 reset",
    ]


@pytest.mark.integration  # mpy-cross processes
def test_flash_refuses_an_incomplete_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = build(tmp_path, "--address", "4")
    (out / "pole_node" / "slave.mpy").unlink()
    (out / "main.py").write_text("print('tampered')\n")
    capsys.readouterr()
    assert cabinet(["pole", "flash", "--port", "/dev/null", "--bundle", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "pole_node/slave.mpy: missing" in err and "main.py: changed since the build" in err
    assert cabinet(["pole", "flash", "--port", "/dev/null", "--bundle", str(tmp_path / "none")]) == 2
    assert "no pole bundle here" in capsys.readouterr().err


def _fake_mpremote(tmp_path: Path, fail_on: str = "") -> tuple[Path, Path]:
    """A stand-in for mpremote (no board here): records its argv, fails on one command."""
    log = tmp_path / "calls.jsonl"
    exe = tmp_path / "mpremote"
    exe.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.exit(3 if {fail_on!r} and {fail_on!r} in sys.argv else 0)\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, log


@pytest.mark.integration  # real processes for each mpremote call, a real pty as the port
@pytest.mark.slow  # waits for the port after each reset (1 s each)
def test_flash_runs_the_calls_in_order_and_stops_at_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = build(tmp_path, "--address", "4")
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        exe, log = _fake_mpremote(tmp_path)
        monkeypatch.setattr(flash, "mpremote", lambda: str(exe))
        assert cabinet(["pole", "flash", "--port", port, "--bundle", str(out)]) == 0
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert calls == [c[1:] for c in flash.calls(out, port)]
        log.unlink()
        exe, log = _fake_mpremote(tmp_path, fail_on=":main.py")
        capsys.readouterr()
        assert cabinet(["pole", "flash", "--port", port, "--bundle", str(out)]) == 1
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(calls) == 5 and calls[-1][-2:] == [str(out / "main.py"), ":main.py"]
        assert "failed (exit 3)" in capsys.readouterr().out
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.integration  # mpy-cross and a Node.js process
def test_the_bundles_boot_file_under_micropython(tmp_path: Path) -> None:
    """The bundle's main.py and its .mpy files as on the board (/main.py, /pole_node/,
    /pole_config.json), on a stand-in `machine`: with /maintenance the firmware does not
    start (so mpremote can copy); without it the boot file starts the node's loop."""
    code, out = build(tmp_path, "--address", "9")
    assert code == 0
    boot = (out / "main.py").read_text()
    config = (out / "pole_config.json").read_text()
    vectors = tmp_path / "vectors_boot.py"
    vectors.write_text(
        "import os, sys\nimport machine\n\n"
        f"BOOT = {boot!r}\nCONFIG = {config!r}\n\n"
        "def test_maintenance_keeps_the_firmware_stopped():\n"
        "    open('/maintenance', 'w').close()\n"
        "    os.chdir('/')\n"
        "    exec(BOOT, {'__name__': '__main__'})\n"
        "    assert 'pole_node.main' not in sys.modules\n"
        "    os.remove('/maintenance')\n\n"
        "def test_without_maintenance_the_loop_runs():\n"
        "    with open('/pole_config.json', 'w') as f:\n"
        "        f.write(CONFIG)\n"
        "    os.chdir('/')\n"
        "    machine.WDT.feeds_left = 5\n"
        "    try:\n"
        "        exec(BOOT, {'__name__': '__main__'})\n"
        "    except machine.StopLoop:\n"
        "        pass\n"
        "    assert 'pole_node.main' in sys.modules and machine.WDT.feeds >= 5\n"
        "    assert machine.UART.settings['baudrate'] == 9600\n",
        encoding="utf-8",
    )
    here = Path(__file__).resolve().parent / "micropython"
    results, summary = run_micropython(out / "pole_node", (vectors, here / "machine.py"))
    judge(
        results,
        summary,
        [
            "vectors_boot.test_maintenance_keeps_the_firmware_stopped",
            "vectors_boot.test_without_maintenance_the_loop_runs",
        ],
    )
