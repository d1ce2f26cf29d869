"""One command-line style (issue 14): real subcommands, help on every option.

Walks the whole `cabinet` parser tree: every subcommand has a help line, every option
and positional a help text, and no command picks its action from a positional choice
(`cabinet ingest stats` must be a subcommand with its own `--help`, not a value of a
positional `action`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.cli.table import parser


def _walk(p: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")


def _subcommand_helps(p: argparse.ArgumentParser) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
            for name in action.choices:
                out[name] = helps.get(name)
    return out


PARSERS = list(_walk(parser(), "cabinet"))


def test_the_tree_is_walked() -> None:
    names = {path for path, _ in PARSERS}
    assert {"cabinet run", "cabinet status", "cabinet ingest", "cabinet ota rollout"} <= names


@pytest.mark.parametrize("path,p", PARSERS, ids=[path for path, _ in PARSERS])
def test_every_option_has_help(path: str, p: argparse.ArgumentParser) -> None:
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in p._actions
        if not isinstance(a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction) and not a.help
    ]
    assert not missing, f"`{path}`: options without help text: {missing}"


@pytest.mark.parametrize("path,p", PARSERS, ids=[path for path, _ in PARSERS])
def test_every_subcommand_has_help(path: str, p: argparse.ArgumentParser) -> None:
    missing = [name for name, text in _subcommand_helps(p).items() if not text]
    assert not missing, f"`{path}`: subcommands without help: {missing}"


@pytest.mark.parametrize("path,p", PARSERS, ids=[path for path, _ in PARSERS])
def test_no_action_picked_by_a_positional_choice(path: str, p: argparse.ArgumentParser) -> None:
    chosen = [
        a.dest
        for a in p._actions
        if not a.option_strings and a.choices and not isinstance(a, argparse._SubParsersAction)
    ]
    assert not chosen, f"`{path}`: positional choices {chosen} should be subcommands with their own --help"


def test_the_reference_page_is_current() -> None:
    from tools.cli import reference

    page = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    assert page.read_text() == reference.render(), "docs/cli.md is stale: python -m tools.cli.reference > docs/cli.md"
