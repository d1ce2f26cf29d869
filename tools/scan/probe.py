"""`cabinet scan`: probe a bus for unit ids and recognize known device profiles.

For each unit id it sends the probe reads the profiles declare (each distinct read
once), treats any answer - even an exception - as "a device is here", and asks
every profile how confident it is that the answers are its own. Units that stay
silent on the first reads are skipped quickly. Shows a progress bar on a terminal.
Run it with the agent stopped on RTU lines: one master per line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from drivers import profiles
from drivers.modbus.engine import BusEngine, ModbusFault

MIN_CONFIDENCE = 0.2  # below this a device is listed as unknown, with its candidates


@dataclass
class Found:
    unit: int
    profile: str | None
    confidence: float
    candidates: list[tuple[str, float]] = field(default_factory=list)
    answered: int = 0


async def _probe_read(engine: BusEngine, unit: int, read: Any, cache: dict) -> Any:
    key = (read.table.value, read.address, read.count)
    if key not in cache:
        try:
            cache[key] = await engine.read(unit, read.table.value, read.address, read.count)
        except ModbusFault as f:
            if f.bus_level:
                raise
            cache[key] = f.code if f.kind == "exception" else None
    return cache[key]


async def scan(
    engine: BusEngine,
    units: Iterable[int],
    *,
    silent_reads: int = 2,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[Found]:
    """Probe `units` on `engine`; `silent_reads` unanswered reads in a row mean nobody is there."""
    probes = [(s.name, s.probe) for s in (profiles.get(n) for n in profiles.names()) if s.probe is not None]
    units = list(units)
    found: list[Found] = []
    for i, unit in enumerate(units, 1):
        cache: dict = {}
        silent = 0
        present = False
        results: dict[str, list[Any]] = {}
        for name, probe in probes:
            res = []
            for read in probe.reads:
                r = await _probe_read(engine, unit, read, cache)
                res.append(r)
                if r is None and not present:
                    silent += 1
                    if silent >= silent_reads:
                        break
                elif r is not None:
                    present = True
            results[name] = res
            if silent >= silent_reads and not present:
                break
        if present:
            scores = []
            for name, probe in probes:
                res = [await _probe_read(engine, unit, rd, cache) for rd in probe.reads]
                try:
                    scores.append((name, float(probe.recognize(res))))
                except Exception:  # noqa: BLE001 - a profile's judge must not end the scan
                    scores.append((name, 0.0))
            scores.sort(key=lambda s: -s[1])
            best = scores[0] if scores and scores[0][1] >= MIN_CONFIDENCE else (None, scores[0][1] if scores else 0.0)
            found.append(
                Found(
                    unit,
                    best[0],
                    round(best[1], 2),
                    [(n, round(c, 2)) for n, c in scores if c > 0][:3],
                    sum(1 for v in cache.values() if v is not None),
                )
            )
        if progress:
            progress(i, len(units), len(found))
    return found


def progress_bar(stream=sys.stderr) -> Callable[[int, int, int], None]:
    def show(done: int, total: int, nfound: int) -> None:
        if not stream.isatty():
            return
        width = 30
        filled = int(width * done / total) if total else width
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} units, {nfound} found")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def parse_units(text: str) -> list[int]:
    """ "1-10,20,30-32" -> unit ids; each 1..247."""
    units: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if not (1 <= a <= b <= 247):
            raise ValueError(f"unit range {part!r} outside 1..247")
        units.extend(range(a, b + 1))
    return units


def report(found: list[Found], as_json: bool) -> str:
    if as_json:
        return json.dumps([f.__dict__ for f in found], indent=2)
    if not found:
        return "no devices answered"
    lines = [f"{'UNIT':>4}  {'PROFILE':<14} CONF  OTHER CANDIDATES"]
    for f in found:
        others = ", ".join(f"{n} {c:.2f}" for n, c in f.candidates if n != f.profile)
        lines.append(f"{f.unit:>4}  {f.profile or 'unknown':<14} {f.confidence:.2f}  {others}")
    return "\n".join(lines)
