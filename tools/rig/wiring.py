"""What the runner takes from a scenario to start a run: the config text the agent under
test runs, which plant circuit is which lighting segment, and an empty `RunRecord` with
the run's facts filled in. Pure apart from reading the config file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tools.rig.record import RunRecord, RunSite
from tools.rig.scenario import Scenario


def new_record(sc: Scenario) -> RunRecord:
    """The record of a run of `sc` before anything happened: names, site, span, speed,
    segments and the photocell's thresholds (for the report)."""
    light = sc.config.lighting
    pc = light.photocell if light is not None else None
    return RunRecord(
        scenario=sc.name,
        scenario_file=sc.file,
        config_id=sc.config.cabinet_id,
        site=RunSite(sc.site.latitude, sc.site.longitude, sc.site.timezone),
        start=sc.start,
        end=sc.end,
        speed=sc.speed,
        segments=sc.segments,
        photocell=(pc.on_lux, pc.off_lux) if pc is not None else None,
    )


def segment_circuits(sc: Scenario) -> dict[str, str]:
    """Lighting segment -> the `[[sim.circuits]]` circuit it switches (by its contactor's relay,
    else by its meter): the plant's energy per circuit becomes the record's per segment."""
    light = sc.config.lighting
    if light is None:
        return {}
    out = {}
    for seg in light.segments:
        meter = seg.power.partition(".")[0] if seg.power else None
        for c in sc.config.sim.circuits:
            if c.relay == seg.contactor or (c.relay is None and meter is not None and c.meter == meter):
                out[seg.name] = c.name
                break
    return out


def config_text(sc: Scenario) -> str:
    """The text of the config the agent under test runs: the scenario's config file, with its
    `[site]` table replaced by the scenario's when the scenario has one. ValueError when the
    config writes its site other than as a `[site]` table of its own (the rig cannot patch it)."""
    text = Path(sc.config_path).read_text(encoding="utf-8")
    if sc.site == sc.config.site:
        return text
    lines = text.splitlines(keepends=True)
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*\[\s*site\s*\]\s*(#.*)?", line.rstrip("\n"))]
    if len(heads) != 1:
        raise ValueError(f"{sc.config_path}: no [site] table to replace with the scenario's [site]")
    end = next((i for i in range(heads[0] + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    site = sc.site
    table = (
        f"[site]  # from the scenario {sc.file}\n"
        f"latitude = {site.latitude!r}\nlongitude = {site.longitude!r}\nelevation = {site.elevation!r}\n"
        f"timezone = {json.dumps(site.timezone)}\n\n"
    )
    return "".join(lines[: heads[0]]) + table + "".join(lines[end:])
