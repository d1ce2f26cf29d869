"""`cabinet pole build|flash`: make a pole node's bundle, copy it to the node.

    cabinet pole build --address N [--out DIR] [--baudrate B] [--parity N|E|O] [--config FILE]
    cabinet pole flash --port DEV [--bundle DIR] [--dry-run]

Exit codes: 0 done, 1 a flashing step failed, 2 bad input (a config value, an incomplete bundle).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tools.pole import bundle, flash

DEFAULT_OUT = "pole-bundle"


def add_parsers(sub: Any) -> None:
    pole = sub.add_parser("pole", help="the pole node's firmware: build its bundle, flash it with mpremote")
    psub = pole.add_subparsers(dest="pole_command", required=True, metavar="SUBCOMMAND")
    b = psub.add_parser(
        "build",
        help="compile the firmware to .mpy and write the node's config for one address",
        epilog="exit codes: 0 built, 2 a bad value (named with its key)",
    )
    b.add_argument(
        "--address", type=int, metavar="N", help="the node's Modbus unit id, 1..247 (required unless in --config)"
    )
    b.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"the bundle folder, emptied first (default {DEFAULT_OUT})"
    )
    b.add_argument("--baudrate", type=int, metavar="B", help="the RS-485 line's baud rate (default 9600)")
    b.add_argument("--parity", choices=("N", "E", "O"), help="the line's parity (default N)")
    b.add_argument(
        "--config", metavar="FILE", help="a JSON file of node config keys (pins, calibration); options override it"
    )
    b.set_defaults(func=build_main)
    f = psub.add_parser(
        "flash",
        help="copy a bundle to a node on a USB serial port with mpremote",
        epilog="exit codes: 0 flashed, 1 an mpremote call failed, 2 an incomplete bundle",
    )
    f.add_argument("--port", required=True, metavar="DEV", help="the node's USB serial port, e.g. /dev/ttyACM0")
    f.add_argument("--bundle", default=DEFAULT_OUT, metavar="DIR", help=f"the bundle folder (default {DEFAULT_OUT})")
    f.add_argument("--dry-run", action="store_true", help="print the mpremote calls, run none")
    f.set_defaults(func=flash_main)


def build_main(args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {}
    if args.config:
        try:
            loaded = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"cabinet pole build: {args.config}: {e}", file=sys.stderr)
            return 2
        if not isinstance(loaded, dict):
            print(f"cabinet pole build: {args.config}: expected a JSON object", file=sys.stderr)
            return 2
        settings.update(loaded)
    for key in ("address", "baudrate", "parity"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if "address" not in settings:
        print("cabinet pole build: --address N is required (the node's Modbus unit id, 1..247)", file=sys.stderr)
        return 2
    try:
        manifest = bundle.build(Path(args.out), settings)
    except bundle.BundleError as e:
        print(f"cabinet pole build: {e}", file=sys.stderr)
        return 2
    print(
        f"pole bundle for address {manifest['address']} at {manifest['baudrate']} Bd, firmware "
        f"{manifest['firmware_version']}: {len(manifest['files'])} files in {args.out}"
    )
    return 0


def flash_main(args: argparse.Namespace) -> int:
    try:
        bundle.verify(Path(args.bundle))
    except bundle.BundleError as e:
        print(f"cabinet pole flash: {e}", file=sys.stderr)
        return 2
    return flash.run(Path(args.bundle), args.port, args.dry_run)
