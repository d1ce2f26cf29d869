"""The inputs of `cabinet ota rollout` (tools/ota/rollout/session.py): the fleet file, the
cabinets' retained birth messages, the keys that verify their statuses, the options of a
new rollout (checked before connecting) and the saved state it resumes from.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ota.fsutil import write_atomic
from ota.status import check_deployment
from tools.operator.commands import KeyLookup, cabinet_keys, duration
from tools.ota.rollout.plan import Plan, Rollout


def default_deployment(target: str, version: str) -> str:
    """The deployment id when --deployment is not given: the target's name without
    `.bundle` (with the version appended unless it holds it), made a valid id (ota.status:
    other characters become '-', at most 64). The same target and version give the same
    id, so running the same command again resumes (--state) or is a duplicate offer."""
    base = target[: -len(".bundle")] if target.endswith(".bundle") else target
    if version not in base:
        base = f"{base}-{version}"
    dep = re.sub(r"[^A-Za-z0-9._-]+", "-", base).lstrip("._-")[:64].rstrip("-")
    return check_deployment(dep or "rollout")


def deployment_of(a: argparse.Namespace) -> str:
    """--deployment checked as cabinets check it, or the default for --target and --version."""
    if a.deployment is None:
        return default_deployment(a.target, a.version)
    try:
        return check_deployment(a.deployment)
    except ValueError as e:
        raise ValueError(f"--deployment: {e}") from None


def load_fleet(path: str) -> dict[str, dict[str, Any]]:
    from agent.wire.cose import check_cabinet  # deferred: heavy (cryptography)

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, list):
        raise ValueError(f'{path}: a JSON list of {{"id", "tags"}}')
    out: dict[str, dict[str, Any]] = {}
    for item in doc:
        if not isinstance(item, dict):
            raise ValueError(f"{path}: {item!r} is not an object")
        out[check_cabinet(item.get("id"))] = {"tags": item.get("tags") or [], "version": item.get("version")}
    return out


def parse_birth(topic: str, payload: bytes) -> tuple[str, dict[str, Any]] | None:
    """(cabinet id, birth map) of a retained `<prefix>/cab/<id>/state` message, or None if junk."""
    from agent.wire.cose import topic_cabinet  # deferred: heavy (cryptography)

    try:
        cab = topic_cabinet(topic, "state")
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    tags = doc.get("tags")
    tags = [t for t in tags if isinstance(t, str) and t] if isinstance(tags, list) else []
    version = doc.get("version") if isinstance(doc.get("version"), str) else None
    return cab, {"tags": tags, "version": version, "online": doc.get("online") is not False}


def key_lookup(a: argparse.Namespace) -> KeyLookup:
    """kid -> (cabinet or None for any, public key): tools.operator.commands's keys plus --cabinet-keys."""
    # deferred: heavy (cryptography)
    from agent.uplink.keys import parse_public_key
    from agent.wire import cose

    found = cabinet_keys(a)
    if a.cabinet_keys:
        doc = json.loads(Path(a.cabinet_keys).read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"{a.cabinet_keys}: a JSON object {{cabinet id: public key hex}}")
        for cab, text in doc.items():
            if not isinstance(text, str) or len(text) != 64:
                raise ValueError(f"{a.cabinet_keys}: {cab}: 64 hex characters")
            k = parse_public_key(text)
            found[cose.key_id(k)] = (cose.check_cabinet(cab), k)
    return found


def plan_options(a: argparse.Namespace) -> dict[str, Any]:
    """The Plan and Rollout options of a new rollout, checked before connecting; "cabinets"
    is empty when they are to be discovered."""
    from agent.wire.cose import check_cabinet  # deferred: heavy (cryptography)

    deployment = deployment_of(a)
    cabinets = load_fleet(a.fleet) if a.fleet else {}
    for cab in a.ids:
        cabinets.setdefault(check_cabinet(cab), {"tags": [], "version": None})
    waves = [int(x) for x in a.waves.split(",") if x.strip()]
    plan_kw = {
        "cabinets": cabinets,
        "plan": {
            "waves": waves,
            "canary_tag": a.canary_tag,
            "include_tags": a.tag,
            "exclude_tags": a.exclude_tag,
        },
        "deployment": deployment,
        "target": a.target,
        "version": a.version,
        "success_pct": a.success,
        "max_failure_pct": a.max_failures,
        "min_cabinets": a.min_cabinets,
        "cabinet_timeout_s": duration(a.cabinet_timeout),
        "soak_s": duration(a.soak),
        "batch": a.batch,
    }
    Plan({}, **plan_kw["plan"])  # the options are checked before connecting
    Rollout(Plan({}), **{k: v for k, v in plan_kw.items() if k not in ("cabinets", "plan")})
    return plan_kw


def resume(a: argparse.Namespace) -> Rollout:
    """The rollout saved in --state, which must be this deployment's."""
    ro = Rollout.from_dict(json.loads(Path(a.state).read_text(encoding="utf-8")))
    want = deployment_of(a)
    if (ro.deployment, ro.target, ro.version) != (want, a.target, a.version):
        raise ValueError(
            f"{a.state} is deployment {ro.deployment} ({ro.target} {ro.version}), not {want} ({a.target} {a.version})"
        )
    return ro


def save(path: str, ro: Rollout) -> None:
    write_atomic(path, json.dumps(ro.to_dict()).encode())
