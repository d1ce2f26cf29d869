"""The operator's OTA command lines (issue 14): what they accept, what they refuse and what
they say while they work.

- `cabinet ota rollout` without --deployment uses an id every cabinet accepts (it was
  TARGET@VERSION, which the OTA service refuses); an explicit bad --deployment is refused
  by the tool with the cabinets' rule, before connecting;
- `cabinet ota build --board` takes only known boards (boards/registry.py) and says which;
- `cabinet ota build` and `cabinet-boot install` report their steps on stderr;
- `cabinet-boot --version`, and a help text for every option of cabinet-boot;
- `cabinet ota keys|repo|root` and `cabinet operator` are real subcommands with their own --help.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import agent
from ota import launcher
from ota.status import DEPLOYMENT_RE
from tests import ota_fake
from tests.broker import broker  # noqa: F401
from tools.cli.table import main as cli_main
from tools.ota.build import build, check_boards
from tools.ota.rollout.inputs import default_deployment, plan_options
from tools.ota.rollout.session import add_rollout_args, rollout_main

ROOT = Path(__file__).resolve().parent.parent


def rollout_args(*extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_rollout_args(p)
    return p.parse_args(
        [
            *("--target", "cabinet-agent-0.9.0.bundle", "--version", "0.9.0", "--key", "k", "--broker", "127.0.0.1:1"),
            *("--id", "CAB-1", "--cabinet-key", "00" * 32, *extra),
        ]
    )


# ---------------------------------------------------------------------- deployment ids


@pytest.mark.parametrize(
    "target,version,want",
    [
        ("cabinet-agent-0.9.0.bundle", "0.9.0", "cabinet-agent-0.9.0"),
        ("cabinet-agent.bundle", "1.2.3", "cabinet-agent-1.2.3"),
        ("cabinet-agent-1.0.0+local.bundle", "1.0.0+local", "cabinet-agent-1.0.0-local"),
        ("+x@y.bundle", "2.0", "x-y-2.0"),
        ("a" * 90 + ".bundle", "1.0", "a" * 64),
    ],
)
def test_the_default_deployment_is_an_id_cabinets_accept(target, version, want):
    got = default_deployment(target, version)
    assert got == want and DEPLOYMENT_RE.fullmatch(got)


def test_a_rollout_without_deployment_offers_a_valid_one():
    dep = plan_options(rollout_args())["deployment"]
    assert dep == "cabinet-agent-0.9.0" and DEPLOYMENT_RE.fullmatch(dep)
    assert "@" not in dep


@pytest.mark.parametrize("bad", ["rel 1", "rel@1", ".rel", "r" * 65, ""])
def test_a_bad_deployment_is_refused_before_connecting(bad, capsys):
    assert rollout_main(rollout_args("--deployment", bad)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cabinet ota rollout: --deployment: deployment id"), err
    assert "letters, digits, '.', '_' or '-'" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------- boards


def test_build_knows_the_boards():
    assert check_boards(None) == ["rpi4-rs485", "sim"]
    assert check_boards(["sim", "rpi4-rs485", "sim"]) == ["rpi4-rs485", "sim"]
    with pytest.raises(ValueError, match=r"--board 'rpi4_rs485': unknown board; the known boards are rpi4-rs485, sim"):
        build(counter=1, boards=["rpi4_rs485"], out=Path("/nonexistent/never-made"))


def test_build_refuses_an_unknown_board_with_exit_2(tmp_path, capsys):
    rc = cli_main(["ota", "build", "--counter", "1", "--board", "rpi4_rs485", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and err == (
        "cabinet ota build: --board 'rpi4_rs485': unknown board; the known boards are rpi4-rs485, sim\n"
    )
    assert not (tmp_path / "d").exists()  # refused before anything was built


def test_build_says_each_step_as_it_starts(tmp_path, capsys):
    (tmp_path / "src").mkdir()  # not a project: the first step fails, after it was announced
    rc = cli_main(
        [
            *("ota", "build", "--counter", "1", "--board", "sim"),
            "--out",
            str(tmp_path / "d"),
            "--source",
            str(tmp_path / "src"),
        ]
    )
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert err[0].startswith("cabinet ota build: [1/4") and "building the project wheel" in err[0], err
    assert err[1].startswith("cabinet ota build: building the project wheel failed"), err


# ---------------------------------------------------------------------- cabinet-boot


def test_cabinet_boot_version(capsys):
    with pytest.raises(SystemExit) as e:
        launcher.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"cabinet-boot (cabinet-agent {agent.__version__})"


def test_every_cabinet_boot_option_has_help():
    parsers = [launcher.parser(), launcher.sub_parser("install"), launcher.sub_parser("status")]
    for p in parsers:
        missing = [a.dest for a in p._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not missing, (p.prog, missing)


def test_cabinet_boot_without_agent_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        launcher.main(["--root", "/nonexistent"])
    assert e.value.code == 2 and "give the agent's command after --" in capsys.readouterr().err


@pytest.mark.integration  # pip installs into a venv
def test_cabinet_boot_install_reports_its_steps(tmp_path):
    pip = ota_fake.pip_wheel(tmp_path / "pipcache")
    bundle_dir, _ = ota_fake.make_bundle(tmp_path / "v1", pip, version="1.0.0", counter=1)
    r = subprocess.run(
        [sys.executable, "-m", "ota.launcher", "install", str(bundle_dir), "--root", str(tmp_path / "root")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout == "1-1.0.0\n", r.stderr
    lines = r.stderr.splitlines()
    assert all(line.startswith("cabinet-boot install: ") for line in lines), lines
    said = "\n".join(lines)
    for step in ("checking ", "dependency 1/", "creating the release slot 1-1.0.0", "smoke test", "1-1.0.0 installed"):
        assert step in said, said


# ---------------------------------------------------------------------- one command-line style


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["ota", "keys", "init", "--help"], "--root-keys"),
        (["ota", "repo", "init", "--help"], "--threshold"),
        (["ota", "root", "rotate", "--help"], "--replace"),
        (["operator", "init", "--help"], "--force"),
    ],
)
def test_subcommands_have_their_own_help(argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    out = capsys.readouterr().out
    assert e.value.code == 0 and f"usage: cabinet {' '.join(argv[:-1])}" in out and expect in out, out


def test_an_existing_operator_key_is_refused_in_one_line(tmp_path, capsys):
    key = tmp_path / "ops.key"
    assert cli_main(["operator", "init", "--key", str(key)]) == 0
    capsys.readouterr()
    assert cli_main(["operator", "init", "--key", str(key)]) == 1
    err = capsys.readouterr().err
    assert err == f"cabinet operator init: {key}: exists; refusing to overwrite a key (--force replaces it)\n"


def test_the_docs_build_only_for_known_boards():
    """docs/ota.md once built with `--board rpi4_rs485`, a board no cabinet has."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    # a board name, not a metavar such as docs/cli.md's `--board BOARDS`
    used = {(p.name, b) for p in pages for b in re.findall(r"--board[ =]([a-z0-9][\w.-]*)", p.read_text())}
    assert ("ota.md", "rpi4-rs485") in used and ("ota.md", "sim") in used
    assert not [u for u in used if u[1] not in check_boards(None)], used


@pytest.mark.integration  # a real broker
def test_wait_online_gives_up_in_one_line(broker, tmp_path, capsys):
    """`cmd send --wait-online`: a cabinet that never says online (no retained birth) ends the
    command after the wait, exit 1, before anything is sent."""
    key = tmp_path / "ops.key"
    assert cli_main(["operator", "init", "--key", str(key)]) == 0
    capsys.readouterr()
    argv = ["cmd", "send", "ping", "--id", "CAB-NOBODY", "--wait-online", "1", "--key", str(key)]
    argv += ["--broker", f"127.0.0.1:{broker.plain_port}", "--cabinet-key", "00" * 32]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "cabinet cmd send: CAB-NOBODY: not online within 1 s (no retained state message saying online "
        "on city/v1/cab/<id>/state)\n"
    )
