"""The `cabinet` command table: the one place that sees every command.

    cabinet run [--config FILE] [--data-dir DIR]   run the agent (no config: the simulated cabinet)
    cabinet status [--json] [--summary | --points GLOB] [--wait S]   the running agent's state
    cabinet light override|cancel / cabinet alarms list|ack            local control of the running agent
    cabinet scan (--bus NAME | --port DEV | --host H) probe a bus for devices
    cabinet sim [--config FILE]                     run the simulated cabinet alone (rigs, tools)
    cabinet sim-control MESSAGE ...                 faults and plant inputs of the running simulator
    cabinet rig list|check|run SCENARIO...          hardware-in-the-loop scenarios, verdicts, reports, JUnit
    cabinet config check FILE [--json]              report every config error; exit 2 if any
    cabinet config push                             sign and push a config to one cabinet
    cabinet doctor [--json] [--skip-buses]          on-site checks, PASS/WARN/FAIL each; exit 1 if any failed
    cabinet ingest run|stats|init|register          the cloud ingest reference
    cabinet ca init|issue-server|issue-client       device CA, broker and service certificates
    cabinet provision                               a cabinet's keys, certificate and config
    cabinet operator init / cabinet cmd send        operator keys; signed commands to cabinets
    cabinet ota keys|repo|build|publish|timestamp|root|targets|serve|rollout   over-the-air updates

Each command's module is imported only when that command runs. The commands that only
talk to the running agent's socket (`status`, `light`, `alarms`) are built alone, from
light modules, so `cabinet status` answers in well under a tenth of a second; any other
command (and `cabinet --help`) builds the whole table.

Exit codes (docs/cli.md): 0 ok, 1 runtime failure, 2 usage or config error (3: a rollout halted). A
reader that goes away (`cabinet status | head -1`) ends a command quietly, exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agent
from agent.runtime.entry import add_common as common
from agent.runtime.entry import default_data_dir


def data_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or default_data_dir())


# ------------------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from agent.runtime import entry

    ingest = None
    if args.with_ingest:
        from tools.ingest.local import LocalIngest  # deferred: the ingest only with --with-ingest

        ingest = LocalIngest.start
    return entry.cmd_run(args, ingest=ingest)


def cmd_scan(args: argparse.Namespace) -> int:
    from agent.runtime.entry import load_config
    from tools.scan.cli import main  # deferred: heavy (pymodbus), only for scan

    return main(args, load_config, default_data_dir)


def cmd_config_check(args: argparse.Namespace) -> int:
    from agent import config as cfg
    from agent.runtime.app import agent_points  # deferred: the agent's own points (GPS, lighting, self)
    from agent.runtime.entry import board_infos

    issues = cfg.check(args.file, board_infos())
    if issues:
        if args.json:
            _json({"ok": False, "file": args.file, "errors": [_issue(i) for i in issues]})
        else:
            print("\n".join(str(i) for i in issues))
            print(f"{len(issues)} error(s) in {args.file}")
        return 2
    c = cfg.load(args.file, board_infos())
    points = agent_points(c, uplink=c.uplink is not None)
    own = len(points) - len(c.points())
    if args.json:
        _json(
            {
                "ok": True,
                "file": args.file,
                "cabinet": c.cabinet_id,
                "board": c.board,
                "buses": len(c.buses),
                "devices": len(c.devices),
                "points": len(points),
                "field_points": len(c.points()),
                "sha256": c.sha256,
            }
        )
        return 0
    print(
        f"{args.file}: OK - cabinet {c.cabinet_id}, board {c.board}, {len(c.buses)} buses, "
        f"{len(c.devices)} devices, {len(points)} points ({len(c.points())} of devices and pins, {own} the agent's "
        f"own) (sha256 {c.sha256[:12]})"
    )
    return 0


def _issue(i: Any) -> dict[str, Any]:
    from agent.config.schema import MISSING

    value = None if i.value is MISSING else i.value
    return {
        "section": i.section,
        "key": i.key,
        "value": value,
        "message": i.message,
        "allowed": i.allowed,
        "text": str(i),
    }


def _json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# ------------------------------------------------------------------------------------- the parsers


def add_status(sub: Any) -> None:
    from tools.status import add_parser

    add_parser(sub, common, data_dir_of)


def add_control(sub: Any) -> None:
    from tools.cli.control import add_parsers

    add_parsers(sub, data_dir_of, common)


# the commands that only talk to the agent's socket: built alone when one of them runs
SOCKET_COMMANDS: dict[str, Callable[[Any], None]] = {"status": add_status, "light": add_control, "alarms": add_control}


def _scan(sub: Any) -> None:
    sc = sub.add_parser(
        "scan",
        help="probe a bus for unit ids and recognize device profiles (stop the agent first on RTU lines)",
        description="Exit 0 when devices answered, 1 when none did or the bus did not open, 2 on a usage error.",
    )
    common(sc)
    where = sc.add_mutually_exclusive_group()
    where.add_argument("--bus", help="a bus of the config: its port or host and line settings (simulator: its ports)")
    where.add_argument("--port", help="a serial device to scan (Modbus RTU), e.g. /dev/ttyUSB0")
    where.add_argument("--host", help="a Modbus TCP host to scan")
    sc.add_argument("--tcp-port", type=int, default=502, help="Modbus TCP port with --host (default 502)")
    sc.add_argument("--baudrate", type=int, default=9600, help="line speed with --port (default 9600)")
    sc.add_argument("--parity", choices=("N", "E", "O"), default="N", help="parity with --port (default N)")
    sc.add_argument("--stopbits", type=int, choices=(1, 2), default=1, help="stop bits with --port (default 1)")
    sc.add_argument("--units", default="1-247", help='unit ids to probe, e.g. "1-20,100" (default 1-247)')
    sc.add_argument("--timeout-ms", type=float, default=100.0, help="answer timeout per request (default 100 ms)")
    sc.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="wait up to SECONDS for the bus to be there (a simulated cabinet starting, an adapter plugged in)",
    )
    sc.add_argument("--json", action="store_true", help="print the devices found as JSON (for machines)")
    sc.set_defaults(func=cmd_scan)


def _config(sub: Any) -> None:
    from tools.operator.commands import add_config_push

    c = sub.add_parser("config", help="config tools: check a file, push one to a cabinet")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    cc = csub.add_parser(
        "check",
        help="validate a config file: every error at once; exit 2 on errors",
        description="Exit 0 when the file is valid, 2 when it has errors (every one is listed).",
    )
    cc.add_argument("file", help="the cabinet config (TOML), e.g. boards/sim/cabinet.toml")
    cc.add_argument("--json", action="store_true", help="print the result as JSON (for machines)")
    cc.set_defaults(func=cmd_config_check)
    add_config_push(csub)


def _everything(sub: Any) -> None:
    # deferred: each command's module only when the whole table is built
    from agent.runtime import entry
    from agent.runtime.entry import board_infos
    from tools.console.cli import add_parsers as add_console
    from tools.doctor.report import add_parsers as add_doctor
    from tools.fleet.cli import add_parsers as add_fleet
    from tools.ingest.cli import add_parser as add_ingest
    from tools.operator.commands import add_parsers as add_cmd
    from tools.ota.cli import add_parsers as add_ota
    from tools.pole.cli import add_parsers as add_pole
    from tools.provision.cli import add_parsers as add_provision
    from tools.rig.cli import add_parsers as add_rig
    from tools.sim.control import add_parsers as add_sim_control
    from tools.talq.cli import add_parsers as add_talq

    r = sub.add_parser("run", help="run the agent")
    entry.add_run_arguments(r)
    r.add_argument(
        "--with-ingest",
        action="store_true",
        help="also run a local ingest (default broker 127.0.0.1:1883) so verified rows arrive",
    )
    r.set_defaults(func=cmd_run)
    add_status(sub)
    _scan(sub)
    sm = sub.add_parser("sim", help="run the simulated cabinet alone")
    entry.add_sim_arguments(sm)
    sm.set_defaults(func=entry.cmd_sim)
    add_sim_control(sub)
    add_rig(sub)
    add_ingest(sub)
    add_provision(sub)
    add_cmd(sub)
    add_control(sub)
    add_doctor(sub, common, data_dir_of, board_infos)
    add_console(sub, common, data_dir_of)
    add_ota(sub)
    add_pole(sub)
    add_fleet(sub)
    add_talq(sub)
    _config(sub)


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command table, or with `only` one of SOCKET_COMMANDS alone (fast)."""
    p = argparse.ArgumentParser(
        prog="cabinet",
        description="street-cabinet agent and tools",
        epilog="exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 rollout halted",
    )
    p.add_argument("--version", action="version", version=f"cabinet-agent {agent.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only in SOCKET_COMMANDS:
        SOCKET_COMMANDS[only](sub)
    else:
        _everything(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv[0] if argv and argv[0] in SOCKET_COMMANDS else None).parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head -1`): what it read is all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
        return 0


if __name__ == "__main__":
    sys.exit(main())
