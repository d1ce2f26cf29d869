"""The runtime's own entry: `python -m agent run|sim`.

The cabinet needs two commands of its own, without the tools for the other users:
`run` (what the launcher, `cabinet-boot`, starts in a release slot) and `sim` (the
simulated cabinet that `run` starts as a child on board "sim"). The `cabinet`
command table (tools/cli/table.py) builds its `run` and `sim` from the same
argument definitions here, so both spellings take the same options.

This module is also where the runtime meets the board profiles (boards/): it turns
the board registry into the `BoardInfo`s the config checks against.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import agent
from agent import config as cfg
from agent import logs
from agent.clock import Clock, ScaledClock
from agent.logs import LEVELS as LOG_LEVELS
from agent.runtime.datadir import DataDirBusy, DataDirLock
from boards.registry import boards

if TYPE_CHECKING:
    from agent.runtime.run import IngestStarter


def default_data_dir() -> Path:
    """--data-dir, else $CABINET_DATA_DIR, else ~/.local/state/cabinet-agent."""
    env = os.environ.get("CABINET_DATA_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "cabinet-agent"


def data_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or default_data_dir())


def board_infos() -> dict[str, cfg.BoardInfo]:
    """Every known board's ports and pins, as the config checks them."""
    return {b.name: cfg.BoardInfo(b.name, frozenset(b.ports), frozenset(b.pins)) for b in boards().values()}


def load_config(path: str | None) -> cfg.Config:
    """The config at `path` (or the embedded example); prints every issue and exits 2 on errors."""
    try:
        return cfg.load(path or cfg.EXAMPLE, board_infos())
    except cfg.ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        print(f"{len(e.issues)} error(s) in {path or cfg.EXAMPLE}", file=sys.stderr)
        raise SystemExit(2) from None


def add_common(sp: argparse.ArgumentParser, config: bool = True) -> None:
    """--config and --data-dir, as every command that looks at a cabinet takes them."""
    if config:
        sp.add_argument("--config", help="cabinet config (TOML); default: the simulated example cabinet")
    sp.add_argument("--data-dir", help="state directory (default $CABINET_DATA_DIR, else ~/.local/state/cabinet-agent)")


def add_run_arguments(r: argparse.ArgumentParser) -> None:
    add_common(r)
    r.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default: [agent] log_level)")
    r.add_argument("--log-format", choices=("text", "json"), help="log format (default: [agent] log_format)")
    r.add_argument("--speed", type=float, help="simulated board only: run time this many times faster")
    r.add_argument(
        "--broker",
        metavar="ADDRESS",
        help="send batches to this MQTT broker: mqtts://HOST[:PORT] (TLS, port 8883), mqtt://HOST[:PORT] "
        "(plain, port 1883) or HOST[:PORT] (TLS as [uplink] says); overrides [uplink] broker, port and tls",
    )


def add_sim_arguments(sm: argparse.ArgumentParser) -> None:
    add_common(sm)
    sm.add_argument("--speed", type=float, help="simulated time runs this many times faster")
    sm.add_argument("--ready-file", help="write the endpoints as JSON here once serving")
    sm.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    sm.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default info)")


def cmd_run(args: argparse.Namespace, ingest: IngestStarter | None = None) -> int:
    """`run`: the agent until SIGTERM/SIGINT. `ingest` starts a local cloud ingest beside it."""
    from agent.remote.config_apply import boot_guard  # deferred: heavy (the whole runtime: pymodbus...)
    from agent.runtime.run import run

    data_dir = data_dir_of(args)
    infos = board_infos()
    return run(
        lambda: load_config(args.config),
        data_dir=data_dir,
        boards=infos,
        guard=lambda: boot_guard(data_dir, infos),  # a pushed config that cannot start
        log_level=args.log_level,
        log_format=args.log_format,
        speed=args.speed,
        broker=args.broker,
        ingest=ingest,
        virtual=virtual_clock(),
    )


def virtual_clock() -> Clock | None:
    """With `$VTIME_SOCKET` set, this process joins that coordinator's virtual time
    (boards/sim/vtime, docs/virtual-time.md) before its event loop exists, and its clock
    is the virtual one; else None (real time, or the simulated board's scaled time)."""
    if not os.environ.get("VTIME_SOCKET"):
        return None
    from boards.sim.vtime.loop import VirtualClock, install  # deferred: only under a rig

    clock = VirtualClock(install())
    unset = os.environ.get("VTIME_CLOCK_UNSET_UNTIL")  # a rig's clock_unset (boards/sim/unset_clock.py)
    if unset:
        from boards.sim.unset_clock import UnsetUntil, parse_until

        return UnsetUntil(clock, parse_until(unset))
    return clock


def cmd_sim(args: argparse.Namespace) -> int:
    """`sim`: the simulated cabinet alone, until SIGTERM/SIGINT or its parent is gone."""
    from boards.sim.cabinet import start_time  # deferred: heavy (pymodbus servers), only for `sim`
    from boards.sim.main import main

    config = load_config(args.config)
    logs.setup(args.log_level, config.agent.log_format)
    clock = virtual_clock() or ScaledClock(
        args.speed or config.sim.speed, start=start_time(config.sim.start, time.time())
    )
    sim_dir = data_dir_of(args) / "sim"
    try:
        with DataDirLock(sim_dir, "simulator"):
            return main(
                config,
                sim_dir=sim_dir,
                clock=clock,
                ready_file=args.ready_file,
                parent_pid=args.parent_pid,
                log_level=args.log_level,
            )
    except DataDirBusy as e:
        print(f"cabinet sim: {e}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent", description="the cabinet agent's runtime: run, sim")
    p.add_argument("--version", action="version", version=f"cabinet-agent {agent.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="run the agent")
    add_run_arguments(r)
    r.set_defaults(func=cmd_run)
    sm = sub.add_parser("sim", help="run the simulated cabinet alone")
    add_sim_arguments(sm)
    sm.set_defaults(func=cmd_sim)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
