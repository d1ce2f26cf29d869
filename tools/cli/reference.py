"""docs/cli.md, written from the command table itself, so the reference cannot drift.

    python -m tools.cli.reference > docs/cli.md     (tests/test_cli_style.py checks it is current)

Every command and subcommand of `cabinet` and `cabinet-boot` with its `--help` text, in
the order of the table, after the exit codes every command keeps.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator

from ota.launcher import parser as boot_parser
from ota.launcher import sub_parser as boot_sub_parser
from tools.cli.table import parser

WIDTH = 100

HEAD = """# Command reference

Generated from the command table by `python -m tools.cli.reference > docs/cli.md`
(`tests/test_cli_style.py` fails when this page and the commands differ). The user guides
are [commissioning.md](commissioning.md) (technicians), [cloud.md](cloud.md) (the city
cloud), [ota.md](ota.md) and [commands.md](commands.md) (operators) and
[rig.md](rig.md) and [simulator.md](simulator.md) (rigs).

## Exit codes

| code | meaning |
|---|---|
| 0 | done; for checks: nothing failed |
| 1 | a runtime failure: nothing answered (agent, simulator, broker, database), a check failed, \
a wait timed out, a command or publish was refused by the cabinet or the broker |
| 2 | a usage or config error: a bad argument, a config with errors, a file that already exists \
without `--force`, a missing optional package |
| 3 | `cabinet ota rollout`: the rollout halted (too many failures) |
| 130 | interrupted (Ctrl-C) |

An expected error is one line on stderr (`cabinet: ...`), never a traceback. Commands that
print data print it for people (tables, the site's local time) and, with `--json`, for
machines.
"""


def _walk(p: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")


def _fixed_width(p: argparse.ArgumentParser) -> None:
    p.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)


def render() -> str:
    out = [HEAD]
    pages = list(_walk(parser(), "cabinet"))
    pages += [
        ("cabinet-boot", boot_parser()),
        *((f"cabinet-boot {c}", boot_sub_parser(c)) for c in ("install", "status")),
    ]
    for path, p in pages:
        _fixed_width(p)
        out.append(f"## `{path}`\n\n```text\n{p.format_help().rstrip()}\n```\n")
    return "\n".join(out)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
