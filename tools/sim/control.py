"""`cabinet sim-control`: send one control message to the running simulated cabinet.

    cabinet sim-control [--wait S] [--json] fault DEVICE --kind KIND [--delay-ms MS] [--exception-code N] [--every N]
    cabinet sim-control clear DEVICE
    cabinet sim-control vanish BUS | restore BUS | refuse BUS [--off]
    cabinet sim-control set INPUT true|false
    cabinet sim-control gps MODE
    cabinet sim-control circuit NAME [--failed SHARE] [--stuck closed|open|none] [--cut true|false]
    cabinet sim-control state | read DEVICE | endpoints

The simulator (`cabinet sim`, or the one `cabinet run` starts without a config)
listens on `<data dir>/sim/control.sock`; the vocabulary is boards/sim/commands.py
and docs/simulator.md. `--wait S` retries for up to S seconds until the simulator
answers, so `cabinet sim-control --wait 30 state` is the way to wait for it to be up.
Output for people by default, the simulator's whole reply with `--json`.
Exit codes: 0 done, 1 no simulator answering, 2 bad arguments or a message the
simulator refused (unknown device, bus, circuit ...).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from agent.runtime.entry import default_data_dir
from boards.sim.commands import FAULT_KINDS, GPS_MODES, PLANT_INPUTS

SOCKET = Path("sim") / "control.sock"
EXIT_OK, EXIT_NO_SIM, EXIT_REFUSED = 0, 1, 2
EPILOG = "exit codes: 0 done, 1 no simulator answering, 2 bad arguments or a message the simulator refused"


class NoSimulator(Exception):
    """Nobody answers at the control socket."""


def _choice(known: dict[str, str], what: str) -> Any:
    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; known: {', '.join(known)}")
        return text

    return parse


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "on", "yes", "1"):
        return True
    if low in ("false", "off", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share 0..1 (e.g. 0.5 = half the lamps)")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 3600.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds 0..3600")
    return v


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """The connection and output options, accepted before and after the message name."""
    d: Any = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument(
        "--data-dir",
        **d,
        help="the simulator's state directory (default ~/.local/state/cabinet-agent, or $CABINET_DATA_DIR)",
    )
    p.add_argument("--socket", **d, help="the control socket itself (default <data dir>/sim/control.sock)")
    p.add_argument(
        "--wait",
        type=_seconds,
        **({"default": 0.0} if top else d),
        metavar="SECONDS",
        help="retry for up to SECONDS until the simulator answers (it is up once it does); default 0: try once",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        **({"default": 10.0} if top else d),
        metavar="SECONDS",
        help="how long to wait for the answer to the message (default 10)",
    )
    p.add_argument("--json", action="store_true", **d, help="print the simulator's whole reply as JSON")


def add_parsers(sub: Any) -> None:
    """`cabinet sim-control` and its messages, on the `cabinet` command table."""
    sc = sub.add_parser(
        "sim-control",
        help="send a control message (fault, plant input, read) to the running simulated cabinet",
        description=(
            "Send one control message to the running simulated cabinet (`cabinet sim`, or the one "
            "`cabinet run` starts without a config) over <data dir>/sim/control.sock. "
            "`cabinet sim-control --wait 30 state` waits until the simulator is up. "
            "Reference: docs/simulator.md."
        ),
        epilog=EPILOG,
    )
    _common(sc, top=True)
    msgs = sc.add_subparsers(dest="message", required=True, metavar="MESSAGE")

    def msg(name: str, text: str) -> argparse.ArgumentParser:
        p = msgs.add_parser(name, help=text, description=text, epilog=EPILOG)
        _common(p, top=False)
        p.set_defaults(func=main, message=name)
        return p

    p = msg("fault", "make a device misbehave on its bus until `clear`")
    p.add_argument("device", help="a device of the simulated cabinet's config, e.g. meter_main")
    p.add_argument("--kind", required=True, choices=FAULT_KINDS, help="what the device does wrong")
    p.add_argument("--delay-ms", type=float, help="delay every reply by this many milliseconds (0..600000)")
    p.add_argument("--exception-code", type=int, help="kind exception: the Modbus exception code 1..255 (default 4)")
    p.add_argument("--every", type=int, help="spoil only every N-th request to the device (default 1: all)")
    msg("clear", "make a device healthy again").add_argument("device", help="the device to clear")
    msg("vanish", "unplug an RS-485 line: its serial port disappears").add_argument("bus", help="an RTU bus")
    msg("restore", "plug a vanished RS-485 line back in").add_argument("bus", help="an RTU bus")
    p = msg("refuse", "make a Modbus TCP endpoint refuse connections")
    p.add_argument("bus", help="a TCP bus, e.g. dali")
    p.add_argument("--off", action="store_true", help="accept connections again")
    p = msg("set", "set a plant input: door, flood, mains, UPS battery, fan, heater")
    p.add_argument(
        "input",
        type=_choice(PLANT_INPUTS, "plant input"),
        help="one of: " + "; ".join(f"{k} ({v})" for k, v in PLANT_INPUTS.items()),
    )
    p.add_argument("value", type=_bool, help="true or false (also on/off, yes/no, 1/0)")
    p = msg("gps", "change what the simulated GPS receiver sends")
    p.add_argument(
        "mode",
        type=_choice(GPS_MODES, "GPS mode"),
        help="one of: " + "; ".join(f"{k} ({v})" for k, v in GPS_MODES.items()),
    )
    p = msg("circuit", "lamp failures, stuck contactors and a cut cable of a lighting circuit")
    p.add_argument("circuit", help="a [[sim.circuits]] name, e.g. segment1")
    p.add_argument("--failed", type=_share, help="share 0..1 of the circuit's lamps that draw nothing (0 = repaired)")
    p.add_argument(
        "--stuck",
        choices=("closed", "open", "none"),
        help="the contactor stays closed (welded) or open (jammed) whatever its relay does; none = repaired",
    )
    p.add_argument(
        "--cut", type=_bool, help="true: the cable is cut (no current, the supply still there); false: mended"
    )
    msg("state", "show the plant: light, temperatures, inputs, circuits, injected faults, line counters")
    msg("read", "show every register value of a device: its points and configuration registers").add_argument(
        "device", help="a device of the simulated cabinet's config, e.g. climate"
    )
    msg("endpoints", "show where the simulated buses, the GPS and the pins are")


def request(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request for the parsed command line."""
    m = args.message
    if m in ("fault", "clear", "read"):
        req: dict[str, Any] = {"cmd": m, "device": args.device}
        if m == "fault":
            req["kind"] = args.kind
            for opt, key in (("delay_ms", "delay_ms"), ("exception_code", "exception_code"), ("every", "every")):
                if getattr(args, opt) is not None:
                    req[key] = getattr(args, opt)
        return req
    if m in ("vanish", "restore"):
        return {"cmd": m, "bus": args.bus}
    if m == "refuse":
        return {"cmd": m, "bus": args.bus, "on": not args.off}
    if m == "set":
        return {"cmd": m, "input": args.input, "value": args.value}
    if m == "gps":
        return {"cmd": m, "mode": args.mode}
    if m == "circuit":
        req = {"cmd": m, "circuit": args.circuit}
        if args.failed is not None:
            req["failed"] = args.failed
        if args.stuck is not None:
            req["stuck"] = None if args.stuck == "none" else args.stuck
        if args.cut is not None:
            req["cut"] = args.cut
        return req
    return {"cmd": m}


def send(path: Path, req: dict[str, Any], *, wait: float, timeout: float) -> dict[str, Any]:
    """One request, one reply; retries connecting for `wait` seconds. NoSimulator if nobody answers."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(path))
                s.sendall(json.dumps(req).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("the simulator closed the connection")
                    data += chunk
            reply = json.loads(data)
            if not isinstance(reply, dict):
                raise ValueError("the reply is not a JSON object")
            return reply
        except (FileNotFoundError, ConnectionRefusedError) as e:
            if time.monotonic() >= deadline:
                why = "no such socket" if isinstance(e, FileNotFoundError) else "connection refused"
                raise NoSimulator(why) from None
            time.sleep(0.1)
        except (OSError, ValueError) as e:
            raise NoSimulator(str(e) or type(e).__name__) from None


def main(args: argparse.Namespace) -> int:
    path = Path(args.socket) if args.socket else Path(args.data_dir or default_data_dir()) / SOCKET
    try:
        reply = send(path, request(args), wait=args.wait, timeout=args.timeout)
    except NoSimulator as e:
        print(
            f"cabinet sim-control: no simulator answering at {path} ({e}); "
            "start one with `cabinet sim` (or `cabinet run` without --config), or give --wait SECONDS",
            file=sys.stderr,
        )
        return EXIT_NO_SIM
    try:
        if args.json:
            print(json.dumps(reply, indent=2, default=str))
        if not reply.get("ok"):
            print(f"cabinet sim-control: {args.message}: {reply.get('error', 'refused')}", file=sys.stderr)
            return EXIT_REFUSED
        if not args.json:
            print(human(args.message, reply))
    except BrokenPipeError:  # `| head`
        pass
    return EXIT_OK


def human(message: str, reply: dict[str, Any]) -> str:
    """The reply for people: a table for state/read/endpoints, else what was done."""
    if message == "state":
        return _state(reply.get("state", {}))
    if message == "read":
        values = reply.get("values", {})
        width = max((len(k) for k in values), default=3)
        rows = [f"{k:<{width}}  {_show(v)}" for k, v in values.items()]
        return "\n".join([str(reply.get("done", "")), f"{'KEY':<{width}}  VALUE", *rows])
    if message == "endpoints":
        ep = reply.get("endpoints", {})
        rows = [f"{bus:<10} {w[0]:<4} {' '.join(map(str, w[1:]))}" for bus, w in ep.get("buses", {}).items()]
        gps, pins = f"gps        pty  {ep.get('gps') or '-'}", f"pins       dir  {ep.get('pins')}"
        return "\n".join(["BUS        KIND WHERE", *rows, gps, pins])
    return str(reply.get("done", "done"))


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.7g}"
    return str(v)


def _onoff(v: Any) -> str:
    return "on" if v else "off"


def _state(st: dict[str, Any]) -> str:
    air = f"outside {st.get('ambient_c', 0):.1f} °C, cabinet {st.get('cabinet_c', 0):.1f} °C"
    inputs = (
        f"door {'open' if st.get('door_open') else 'closed'}, flood {_onoff(st.get('flood'))}, "
        f"mains {'ok' if st.get('mains_ok') else 'lost'}, fan {_onoff(st.get('fan_on'))}, "
        f"heater {_onoff(st.get('heater_on'))}"
    )
    lines = [
        f"light       {st.get('lux', 0):.1f} lx",
        f"air         {air} {st.get('cabinet_rh', 0):.0f} %RH",
        f"inputs      {inputs}",
    ]
    for name, c in st.get("circuits", {}).items():
        extra = st.get("circuit_faults", {}).get(name)
        note = ""
        if extra:
            parts = [f"{extra['failed']:.0%} lamps failed"] if extra.get("failed") else []
            parts += [f"contactor stuck {extra['stuck']}"] if extra.get("stuck") else []
            parts += ["cable cut"] if extra.get("cut") else []
            note = " (" + ", ".join(parts) + ")"
        lines.append(f"circuit     {name}: {_onoff(c.get('on'))}, {c.get('power_w', 0):.0f} W{note}")
    faults = st.get("faults", {})
    lines.append("faults      " + (", ".join(f"{d} {f['kind']}" for d, f in faults.items()) if faults else "none"))
    lines.append(f"gps         {st.get('gps_mode', '?')}")
    for name, stats in st.get("lines", {}).items():
        shown = ", ".join(f"{k} {v}" for k, v in stats.items() if v)
        lines.append(f"line        {name}: {shown or 'idle'}")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    """`python -m tools.sim.control MESSAGE ...`: the same command outside the `cabinet` table."""
    p = argparse.ArgumentParser(prog="cabinet")
    add_parsers(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = p.parse_args(["sim-control", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(run())
