"""Where the buses of a config are reached from this machine, for `cabinet scan` and
`cabinet doctor`, and whether the running agent is already master of one.

Board "sim": the simulated cabinet's own endpoints - its ptys and loopback ports, from
`<data-dir>/sim/endpoints.json`, which `cabinet sim` writes (and `cabinet run` for the
simulator it starts) - and only while that simulator answers on its control socket
(`<data-dir>/sim/control.sock`): the host and port values of the example config are
placeholders there, never probed. Any other board: RTU port names resolved through the
board profile, TCP gateways at the host and port of the config.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from agent.runtime.status_api import SOCKET_NAME, request
from boards.registry import boards as known_boards

SIM_HINT = (
    "start the simulated cabinet: `cabinet sim` (the simulated devices alone) or `cabinet run` "
    "(the agent, which starts them), with the same --data-dir"
)


class SimNotRunning(RuntimeError):
    """Board "sim" and no simulated cabinet answers in this data dir (the message says where)."""


def sim_endpoints(data_dir: Path) -> dict[str, Any]:
    """The running simulated cabinet's endpoints ({"buses": {name: ["rtu", pty] | ["tcp", host, port]},
    "gps", "pins", ...}); SimNotRunning when none runs.

    `cabinet sim` holds `simulator.lock` and serves `control.sock` while it runs: an endpoints
    file with a lock file but no answering control socket, or older than the socket, is left
    over from an earlier run. A simulator started in-process (tests, rigs) has neither; its
    endpoints file is taken as it is."""
    sim = Path(data_dir) / "sim"
    control, ready, lock = sim / "control.sock", sim / "endpoints.json", sim / "simulator.lock"
    if control.exists() or lock.exists():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2.0)
                s.connect(str(control))
        except OSError as e:
            raise SimNotRunning(
                f"the simulated cabinet is not running: nothing answers on {control} ({e.strerror or e})"
            ) from None
    elif not ready.exists():
        raise SimNotRunning(f"the simulated cabinet is not running: no {control}")
    try:
        if control.exists() and ready.stat().st_mtime < control.stat().st_mtime:
            raise ValueError("older than the running simulator")
        doc = json.loads(ready.read_text())
        if not isinstance(doc.get("buses"), dict):
            raise ValueError("no buses")
    except (OSError, ValueError, AttributeError) as e:
        raise SimNotRunning(
            f"the simulated cabinet answers on {control} but its endpoints file {ready} is missing or unreadable "
            f"({e}): restart it with this version's `cabinet sim`"
        ) from None
    return doc


def bus_endpoints(config: Any, data_dir: Path) -> dict[str, tuple]:
    """bus name -> ("rtu", device path) or ("tcp", host, port), as reached from here; buses
    not listed keep the config's own port or host. SimNotRunning on board "sim" without a simulator."""
    if config.board == "sim":
        return {k: tuple(v) for k, v in sim_endpoints(data_dir)["buses"].items()}
    board = known_boards().get(config.board)
    ports = dict(board.ports) if board else {}
    return {n: ("rtu", ports.get(b.port) or b.port) for n, b in config.buses.items() if b.kind == "rtu"}


def agent_rtu_masters(data_dir: Path) -> dict[str, str]:
    """The RTU lines the running agent polls: real device path -> bus name ({} when no agent answers)."""
    try:
        doc = request(Path(data_dir) / SOCKET_NAME, "/status", timeout=2.0)
    except OSError:
        return {}
    return {
        os.path.realpath(str(b.get("target"))): str(b.get("name"))
        for b in doc.get("buses", [])
        if b.get("kind") == "rtu" and b.get("target")
    }
