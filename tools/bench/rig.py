"""The rig's time: how long a simulated day takes, and up to which speed the decisions hold.

    python -m tools.bench rig [--json] [--seconds N] [--reference-s N]

1. `day_s`: the example cabinet and the agent, each its own process, on virtual time
   (boards/sim/vtime) as fast as the machine allows, for `--seconds` simulated seconds
   (default a whole day, 86,400: about 14 minutes here); `day_s` is the wall time scaled to
   one day (exact when a whole day ran), with the CPU seconds of each process.
2. `max_faithful_speed`: the same cabinet through a scripted window (`FAULTS`: door, flood,
   a silent meter and its return, the mains failing and back, a stuck contactor) once in real
   time (no coordinator, the reference) and once on virtual time as fast as possible; the two
   decision, alarm and point-quality timelines (tools/rig/timeline.py) are compared. If
   they are the same, "as fast as possible" is faithful, and `max_faithful_speed` is the
   speed the day of 1. reached with that same setting (there is no faster setting to
   try; the short run's own `virtual_speed` is lower: a second of start-up weighs on 90 s);
   otherwise 0, with the differences in `differences`.

Targets (issue 15): `day_s` <= 60, `max_faithful_speed` >= 1440.
"""

from __future__ import annotations

import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from agent.config import load
from boards.sim.vtime import rig
from tools.rig import collect, timeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "boards" / "sim" / "cabinet.toml"
DAY_S = 86_400.0
TOLERANCE_S = 6.0  # the meters' 5-s poll period, plus a second of phase
REFERENCE_S = 90.0

# (simulated second, the simulator's control message): each one makes the agent decide something
FAULTS: tuple[tuple[float, dict[str, Any]], ...] = (
    (5, {"cmd": "set", "input": "door_open", "value": True}),
    (10, {"cmd": "set", "input": "flood", "value": True}),
    (15, {"cmd": "fault", "device": "meter_seg2", "kind": "silent"}),
    (30, {"cmd": "set", "input": "door_open", "value": False}),
    (35, {"cmd": "set", "input": "mains_ok", "value": False}),
    (50, {"cmd": "clear", "device": "meter_seg2"}),
    (55, {"cmd": "set", "input": "flood", "value": False}),
    (70, {"cmd": "set", "input": "mains_ok", "value": True}),
)
START = "2026-11-18T23:30:00+00:00"  # a winter night at the example's site: lamps on, seg3 dimmed at 00:00


def scripted_config(work: Path, faults: tuple[tuple[float, dict[str, Any]], ...] = FAULTS) -> Path:
    """The example cabinet with `faults` as its [[sim.script]]."""
    doc = tomllib.loads(EXAMPLE.read_text())
    doc["sim"]["start"] = START
    doc["sim"]["script"] = [{"at_s": float(at), **msg} for at, msg in faults]
    path = work / "cabinet.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def run_once(config: Path, work: Path, seconds: float, real: bool) -> tuple[dict[str, Any], list[timeline.Entry]]:
    """One run of `config` (rig.run) and the agent's timeline."""
    args = rig.parser().parse_args(
        ["--config", str(config), "--seconds", str(seconds), "--check-every", str(seconds), "--data-dir", str(work)]
        + (["--real"] if real else [])
    )
    out = rig.run(args)
    entries = timeline.timeline(collect.readings(work / "agent" / "outbox.db"), load(config))
    return out, entries


def faithful(seconds: float = REFERENCE_S, keep: Path | None = None) -> dict[str, Any]:
    """The reference in real time and the virtual run, compared (module doc, 2)."""
    work = keep or Path(tempfile.mkdtemp(prefix="bench-rig-"))
    try:
        config = scripted_config(work)
        ref_out, ref = run_once(config, work / "real", seconds, real=True)
        vt_out, vt = run_once(config, work / "virtual", seconds, real=False)
        end = min(ref[-1].t if ref else 0.0, vt[-1].t if vt else 0.0, seconds - 2 * TOLERANCE_S)
        diffs = timeline.compare(timeline.until(ref, end), timeline.until(vt, end), TOLERANCE_S)
        speed = vt_out["virtual_per_wall"]
        return {
            "reference_s": seconds,
            "decisions": len(timeline.until(ref, end)),
            "same_decisions": not diffs,
            "differences": diffs[:20],
            "virtual_speed": speed,
            "reference_cpu_s": ref_out["cpu_s"],
            "timeline": [str(e) for e in timeline.until(ref, end)],
        }
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def day(seconds: float = DAY_S) -> dict[str, Any]:
    """The example cabinet for `seconds` simulated seconds as fast as possible (module doc, 1)."""
    work = Path(tempfile.mkdtemp(prefix="bench-rig-day-"))
    try:
        args = rig.parser().parse_args(
            ["--seconds", str(seconds), "--check-every", str(max(seconds / 4, 60.0)), "--data-dir", str(work)]
        )
        out = rig.run(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scale = DAY_S / out["virtual_s"]
    cpu = {k: v for k, v in out["cpu_s"].items() if v is not None}
    return {
        "simulated_s": out["virtual_s"],
        "wall_s": out["wall_s"],
        "day_s": round(out["wall_s"] * scale, 1),
        "cpu_s": cpu,
        "cpu_day_s": round(sum(cpu.values()) * scale, 1),
        "steps": out["coordinator"],
        "all_good": out["ok"],
    }


def run(seconds: float | None = None, reference_s: float | None = None) -> dict[str, Any]:
    d = day(seconds or DAY_S)
    f = faithful(reference_s or REFERENCE_S)
    f["max_faithful_speed"] = round(DAY_S / d["day_s"], 1) if f["same_decisions"] else 0.0
    return {
        **d,
        **{k: v for k, v in f.items() if k != "timeline"},
        "met": {"day_s<=60": d["day_s"] <= 60.0, "max_faithful_speed>=1440": f["max_faithful_speed"] >= 1440},
    }
