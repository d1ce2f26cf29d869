"""Loading and validating the cabinet config (one TOML file per cabinet).

`load(path)` returns a Config or raises ConfigError carrying every issue found;
`check(path)` returns the issues. Each issue names the file, the section and key,
the value given and what is allowed. The sections are `agent.config.loader.SECTIONS`,
parsed in that order by the modules of this package; an unknown section is an error.

Importing this package is cheap: the parsers (agent.config.loader and the section
modules, which import the controllers' settings types) are imported on the first
`load`, `loads` or `check`, so a command that only talks to the running agent
(`cabinet status`) does not pay for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agent.config.model import (  # noqa: F401 - the package's vocabulary
    BoardInfo,
    Bus,
    Config,
    Device,
    Gps,
    Input,
    Output,
    RtuBus,
    Sim,
    Site,
    TcpBus,
)
from agent.config.schema import ConfigError, ConfigIssue

__all__ = ["BoardInfo", "Config", "ConfigError", "ConfigIssue", "check", "load", "loads"]

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "boards" / "sim" / "cabinet.toml"


def loads(text: str | bytes, source: str = "<config>", boards: Mapping[str, BoardInfo] | None = None) -> Config:
    from agent.config import loader  # deferred: the parsers import the controllers' settings

    return loader.loads(text, source, boards)


def load(path: str | Path, boards: Mapping[str, BoardInfo] | None = None) -> Config:
    from agent.config import loader  # deferred: see loads

    return loader.load(path, boards)


def check(path: str | Path, boards: Mapping[str, BoardInfo] | None = None) -> list[ConfigIssue]:
    from agent.config import loader  # deferred: see loads

    return loader.check(path, boards)
