"""The config a provisioned cabinet starts with: a template (boards/sim/cabinet.toml by
default, or `cabinet provision --template FILE`) with its [cabinet] id set and an [uplink]
section pointing at the provisioned files.

The template's own [uplink] settings are kept (batch_max_age_s, ack_timeout_s, keepalive_s,
client_id ...), except the ones provisioning decides: broker, port, tls, ca, cert, key and
signing_key always; topic_prefix and ingest_key when given. The [uplink] section is written
anew (its comments are not kept); every other part of the template is kept as written,
comments included.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

ALWAYS_SET = ("broker", "port", "tls", "ca", "cert", "key", "signing_key")
DEFAULT_PREFIX = "city/v1"
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def default_template() -> str:
    return resources.files("boards").joinpath("sim", "cabinet.toml").read_text(encoding="utf-8")


def read_template(template: Path | str | None) -> tuple[str, dict[str, Any], str]:
    """(text, parsed, where) of the template; ValueError naming the file when it is not one."""
    where = str(template or "boards/sim/cabinet.toml")
    try:
        text = Path(template).read_text(encoding="utf-8") if template is not None else default_template()
    except OSError as e:
        raise ValueError(f"--template {where}: cannot read it: {e.strerror or e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where}: not valid TOML: {e}") from None
    if not isinstance(raw.get("cabinet"), dict):
        raise ValueError(f"{where}: has no [cabinet] section")
    return text, raw, where


def template_uplink(raw: dict[str, Any]) -> dict[str, Any]:
    """The template's [uplink] settings (sub-tables are no settings: dropped)."""
    up = raw.get("uplink")
    return {k: v for k, v in up.items() if not isinstance(v, dict)} if isinstance(up, dict) else {}


def cabinet_config(
    cabinet_id: str,
    *,
    broker_host: str,
    broker_port: int,
    tls: bool = True,
    topic_prefix: str | None = None,
    template: Path | str | None = None,
    ingest_key: str | None = None,
) -> str:
    """The config text (module doc). `topic_prefix` None: the template's, else city/v1."""
    text, raw, where = read_template(template)
    kept = template_uplink(raw)
    base = Path(template).resolve().parent if template is not None else None
    if (
        "ingest_key" in kept
        and ingest_key is None
        and base is not None
        and isinstance(kept["ingest_key"], str)
        and not re.fullmatch(r"[0-9a-fA-F]{64}", kept["ingest_key"])
    ):
        kept["ingest_key"] = str(base / kept["ingest_key"])  # a key file beside the template
    uplink: dict[str, Any] = {"broker": broker_host, "port": broker_port, "tls": tls}
    if tls:
        uplink.update(ca="ca.crt", cert="tls.crt", key="tls.key")
    uplink["signing_key"] = "signing.key"
    uplink["topic_prefix"] = topic_prefix or kept.get("topic_prefix") or DEFAULT_PREFIX
    if ingest_key is not None:
        uplink["ingest_key"] = ingest_key.lower()
    extra = {k: v for k, v in kept.items() if k not in (*ALWAYS_SET, *uplink)}
    text = _set_cabinet_id(_drop_table(text, "uplink"), cabinet_id, where)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Provisioned for cabinet {cabinet_id} by `cabinet provision` on {stamp}.\n"
        f"# Keys and certificates live next to this file; keep the directory private.\n\n"
        + text.rstrip("\n")
        + "\n\n"
        + uplink_section(uplink, extra)
    )
    check = tomllib.loads(text)  # what we wrote must parse and say what we meant
    if check["cabinet"].get("id") != cabinet_id or check.get("uplink") != {**uplink, **extra}:
        raise ValueError(f"{where}: could not set [cabinet] id / [uplink] in this template")
    return text


def uplink_section(uplink: dict[str, Any], extra: dict[str, Any]) -> str:
    notes = {
        "tls": "plain MQTT: no certificates (a trial, or a closed network)" if not uplink["tls"] else "",
        "ca": "paths relative to this file's directory",
        "ingest_key": "verifies the ingest's acknowledgements",
    }
    lines = ["[uplink]"]
    for k, v in uplink.items():
        note = notes.get(k)
        lines.append(f"{k} = {toml_value(v)}" + (f"   # {note}" if note else ""))
    if extra:
        lines.append("# kept from the template:")
        lines += [f"{k} = {toml_value(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ValueError(f"[uplink] value {v!r}: a {type(v).__name__}, which provisioning cannot copy")


def _set_cabinet_id(text: str, cabinet_id: str, where: str) -> str:
    lines = text.splitlines(keepends=True)
    section = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            section = m.group(1).replace('"', "").replace(" ", "")
            continue
        if section == "cabinet" and re.match(r"\s*id\s*=", line):
            # keep a trailing comment: id = "OLD"   # comment
            m = re.match(r"""\s*id\s*=\s*(?:"(?:[^"\\]|\\.)*"|'[^']*'|\S+)(\s*#.*)?\s*$""", line)
            comment = m.group(1) if m and m.group(1) else ""
            lines[i] = f'id = "{cabinet_id}"' + comment + "\n"
            return "".join(lines)
    # no id key yet: add it right under the [cabinet] header
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m and m.group(1).strip() == "cabinet":
            lines.insert(i + 1, f'id = "{cabinet_id}"\n')
            return "".join(lines)
    raise ValueError(f"{where}: no [cabinet] header found")


def _drop_table(text: str, name: str) -> str:
    """`text` without the [name] table and its [name.*] sub-tables (header to next other header)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        m = _HEADER.match(line)
        if m:
            t = m.group(1).replace('"', "").replace(" ", "")
            skipping = t == name or t.startswith(name + ".")
        if not skipping:
            out.append(line)
    return "".join(out)
