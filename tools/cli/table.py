"""The `cabinet` command table: the one place that sees every command.

    cabinet run [--config FILE] [--data-dir DIR]   run the agent (no config: the simulated cabinet)
    cabinet status [--json]                         live points and bus health of the running agent
    cabinet scan (--bus NAME | --port DEV | --host H) probe a bus for devices
    cabinet sim [--config FILE]                     run the simulated cabinet alone (rigs, tools)
    cabinet config check FILE                       report every config error; exit 2 if any
    cabinet doctor [--json] [--skip-buses]          on-site checks, PASS/WARN/FAIL each; exit 1 if any failed
    cabinet ingest [run|stats|init|register]        the cloud ingest reference
    cabinet ca init / cabinet provision             device CA and cabinet identities
    cabinet operator init / cabinet cmd send        operator keys; signed commands to cabinets
    cabinet ota keys|repo|build|publish|timestamp|root|targets|serve|rollout   over-the-air updates

Heavy imports (pymodbus, the runtime, aiomqtt, tuf) are deferred to the commands that use
them, so `cabinet status` starts fast and never loads pymodbus.
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import agent
from agent import config as cfg
from agent.runtime import entry
from agent.runtime.entry import add_common as common
from agent.runtime.entry import board_infos, default_data_dir, load_config
from tools import status
from tools.cli.control import add_parsers as add_control
from tools.doctor.report import add_parsers as add_doctor
from tools.ingest.cli import add_parser as add_ingest
from tools.operator.commands import add_config_push
from tools.operator.commands import add_parsers as add_cmd
from tools.ota.cli import add_parsers as add_ota
from tools.provision.cli import add_parsers as add_provision


def cmd_run(args: argparse.Namespace) -> int:
    ingest = None
    if args.with_ingest:
        from tools.ingest.local import LocalIngest  # deferred: the ingest only with --with-ingest

        ingest = LocalIngest.start
    return entry.cmd_run(args, ingest=ingest)


def cmd_status(args: argparse.Namespace) -> int:
    return status.main(Path(args.data_dir or default_data_dir()), args.json)


def cmd_scan(args: argparse.Namespace) -> int:
    from tools.scan.cli import main  # deferred: heavy (pymodbus), only for scan

    return main(args, load_config, default_data_dir)


def cmd_config_check(args: argparse.Namespace) -> int:
    issues = cfg.check(args.file, board_infos())
    for issue in issues:
        print(issue)
    if issues:
        print(f"{len(issues)} error(s) in {args.file}")
        return 2
    c = cfg.load(args.file, board_infos())
    print(
        f"{args.file}: OK - cabinet {c.cabinet_id}, board {c.board}, {len(c.buses)} buses, "
        f"{len(c.devices)} devices, {len(c.points())} points (sha256 {c.sha256[:12]})"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cabinet", description="street-cabinet agent and tools")
    p.add_argument("--version", action="version", version=f"cabinet-agent {agent.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run the agent")
    entry.add_run_arguments(r)
    r.add_argument(
        "--with-ingest",
        action="store_true",
        help="also run a local ingest (default broker 127.0.0.1:1883) so verified rows arrive",
    )
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="live points and bus health of the running agent")
    common(s, config=False)
    s.add_argument("--json", action="store_true", help="print one snapshot as JSON")
    s.set_defaults(func=cmd_status)

    sc = sub.add_parser("scan", help="probe a bus for unit ids and recognize profiles")
    common(sc)
    sc.add_argument("--bus", help="a bus of the config (uses its settings)")
    sc.add_argument("--port", help="serial device to scan (RTU)")
    sc.add_argument("--host", help="Modbus TCP host to scan")
    sc.add_argument("--tcp-port", type=int, default=502)
    sc.add_argument("--baudrate", type=int, default=9600)
    sc.add_argument("--parity", choices=("N", "E", "O"), default="N")
    sc.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    sc.add_argument("--units", default="1-247", help='unit ids, e.g. "1-20,100"')
    sc.add_argument("--timeout-ms", type=float, default=100.0)
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_scan)

    sm = sub.add_parser("sim", help="run the simulated cabinet alone")
    entry.add_sim_arguments(sm)
    sm.set_defaults(func=entry.cmd_sim)

    add_ingest(sub)
    add_provision(sub)
    add_cmd(sub)
    add_control(sub, lambda a: Path(a.data_dir or default_data_dir()), common)
    add_doctor(sub, common, lambda a: Path(a.data_dir or default_data_dir()), board_infos)

    add_ota(sub)

    c = sub.add_parser("config", help="config tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    cc = csub.add_parser("check", help="validate a config file; exit 2 on errors")
    cc.add_argument("file")
    cc.set_defaults(func=cmd_config_check)
    add_config_push(csub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
