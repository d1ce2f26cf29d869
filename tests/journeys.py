"""Documented journeys as scripts: the `sh` blocks of a Markdown page, in order.

A fenced block whose info string starts with `sh` is a step of the page's journey:

    ```sh                 run it; it must exit 0
    ```sh no-run          shown to the reader, never executed (say why in the prose)
    ```sh background      started in its own process group; SIGTERM at the end of the journey
    ```sh exit=2          must exit with code 2

All steps of a page run in one bash session (`set -eo pipefail`), so `cd`, `export` and
variables carry from step to step, as in the reader's shell. Two things differ from the
reader's machine, and only these:

- the set-up of README (`python3 -m venv .venv`, `. .venv/bin/activate`, `pip install -e ...`)
  is dropped: the test already runs in such a venv;
- fixed ports and the database name are replaced, so journeys never collide on a shared
  machine: `1883` (MQTT), `8883` (MQTT over TLS for cabinets), `8884` (MQTT over TLS for
  cloud services), `8080` (the OTA repository over HTTP), `8443` (the web console) become
  free ports, `citycloud` (the PostgreSQL database of docs/cloud.md) a fresh database.

This module is pure: parsing and script building, tested in tests/test_journeys.py.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<info>[^`]*)$")
PORTS = ("1883", "8883", "8884", "8080", "8443")
DATABASE = "citycloud"
SETUP = (
    re.compile(r"^python3? -m venv \S+$"),
    re.compile(r"^(\.|source) \S*\.venv/bin/activate$"),
    re.compile(r"^(python3? -m )?pip install( -q)? -e \S+$"),
)
MARK = "@@journey"


class JourneyError(ValueError):
    """A block's info string is malformed (names the file and line)."""


@dataclass(frozen=True)
class Step:
    source: str  # "docs/x.md:12" (line of the opening fence)
    text: str
    mode: str  # "run" | "background" | "no-run"
    exit_code: int = 0


def steps(markdown: str, source: str) -> list[Step]:
    """The `sh` blocks of a page, in order (blocks in other languages are not steps)."""
    out: list[Step] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].split(), i + 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(m["indent"]) :] if lines[i].startswith(m["indent"]) else lines[i])
            i += 1
        i += 1
        if info and info[0] == "sh":
            out.append(_step(info[1:], "\n".join(body), f"{source}:{start}"))
    return out


def _step(tokens: list[str], text: str, where: str) -> Step:
    mode, code = "run", 0
    for token in tokens:
        if token in ("no-run", "background"):
            mode = token
        elif token.startswith("exit=") and token[5:].isdigit():
            code = int(token[5:])
        else:
            raise JourneyError(f"{where}: unknown token {token!r} after ```sh (no-run, background, exit=N)")
    if mode == "background" and code:
        raise JourneyError(f"{where}: a background block has no exit code to expect")
    return Step(where, text, mode, code)


def strip_setup(text: str) -> str:
    """Drop README's venv set-up from each line; a line of nothing else disappears."""
    kept = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("&&")]
        rest = [p for p in parts if not any(rx.match(p) for rx in SETUP)]
        if rest:
            kept.append(" && ".join(rest) if len(rest) < len(parts) else line)
    return "\n".join(kept)


def substitute(text: str, ports: dict[str, int], database: str) -> str:
    for literal, port in ports.items():
        text = re.sub(rf"(?<![\w.]){literal}(?!\w)", str(port), text)
    return re.sub(rf"\b{DATABASE}\b", database, text)


def script(page: list[Step], ports: dict[str, int], database: str, state: Path) -> str:
    """One bash script for a page's journey. Background steps are written to `state`
    (their scripts and logs); each appends its process group id to `state/pids` as it starts,
    and the next step waits for that line."""
    out = ["set -eo pipefail", f"exec 3>>{shlex.quote(str(state / 'marks'))}"]
    n_bg = 0
    for n, step in enumerate(page, 1):
        n_bg += step.mode == "background"
        if step.mode == "no-run":
            continue
        body = substitute(strip_setup(step.text), ports, database)
        out.append(f"echo {shlex.quote(f'{MARK} {n} {step.source} {step.mode}')} >&3")
        if step.mode == "background":
            file = state / f"bg-{n}.sh"
            pids = shlex.quote(str(state / "pids"))
            # $$ of the script run by setsid is its process group, whether setsid forked or not
            file.write_text(f"echo $$ >> {pids}\nset -eo pipefail\n{body}\n")
            log = shlex.quote(str(state / f"bg-{n}.log"))
            out.append(f"setsid bash {shlex.quote(str(file))} >{log} 2>&1 < /dev/null &")
            out.append(
                f"for _ in $(seq 100); do [ $(cat {pids} 2>/dev/null | wc -l) -ge {n_bg} ] && break; sleep 0.05; done"
            )
        elif step.exit_code:
            out += ["set +e", "(", "set -e", body, ")", "rc=$?", "set -e"]
            out.append(
                f'[ "$rc" -eq {step.exit_code} ] || '
                f'{{ echo "{MARK}: {step.source} exited $rc, expected {step.exit_code}" >&2; exit 97; }}'
            )
        else:
            out.append(body)
    out.append(f"echo '{MARK} done' >&3")
    return "\n".join(out) + "\n"
