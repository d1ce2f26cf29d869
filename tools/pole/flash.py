"""`cabinet pole flash`: copy a bundle to a node over USB with mpremote.

The running firmware feeds a hardware watchdog that nothing can stop, so mpremote cannot
just interrupt it and copy for longer than the watchdog's 8 s. The calls therefore are:
put /maintenance on the board and reset it (the boot file then does not start the
firmware), copy the package, the config and the boot file, remove /maintenance, reset.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from boards.pole_node import config as node_config
from tools.pole.bundle import MAINTENANCE

PORT_BACK_S = 15.0  # a reset board's USB serial port comes back within this


def mpremote() -> str:
    here = Path(sys.executable).parent / "mpremote"
    return str(here) if here.exists() else (shutil.which("mpremote") or "mpremote")


def calls(bundle: Path, port: str, exe: str = "mpremote") -> list[list[str]]:
    """The mpremote calls that flash `bundle` to the board on `port`, in order."""
    c = [exe, "connect", port]
    return [
        [*c, "exec", f'open("{MAINTENANCE}", "w").close()'],
        [*c, "reset"],
        [*c, "fs", "cp", "-r", str(bundle / "pole_node"), ":"],
        [*c, "fs", "cp", str(bundle / node_config.FILE), ":" + node_config.FILE],
        [*c, "fs", "cp", str(bundle / "main.py"), ":main.py"],
        [*c, "exec", f'import os; os.remove("{MAINTENANCE}")'],
        [*c, "reset"],
    ]


def wait_for_port(port: str, timeout_s: float = PORT_BACK_S, sleep: Callable[[float], None] = time.sleep) -> bool:
    """After a reset: wait for the port to disappear and come back (USB re-enumeration)."""
    sleep(1.0)
    waited = 1.0
    while waited < timeout_s:
        if os.path.exists(port):
            return True
        sleep(0.25)
        waited += 0.25
    return os.path.exists(port)


def run(bundle: Path, port: str, dry_run: bool, out: Callable[[str], None] = print) -> int:
    """Flash (or with `dry_run` print the calls); 0 done, 1 a call failed."""
    steps = calls(bundle, port, mpremote())
    for argv in steps:
        out(shlex.join(argv))
        if dry_run:
            continue
        done = subprocess.run(argv, check=False)
        if done.returncode != 0:
            out(f"cabinet pole flash: failed (exit {done.returncode}): {shlex.join(argv)}")
            return 1
        if argv[-1] == "reset" and not wait_for_port(port):
            out(f"cabinet pole flash: {port} did not come back after the reset")
            return 1
    return 0
