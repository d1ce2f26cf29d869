"""docs/pole-node.md shows the register map the firmware serves: the tables generated from
boards/pole_node/regmap.py stand in the page verbatim."""

from __future__ import annotations

from pathlib import Path

from boards.pole_node import regmap
from tools.pole import regdoc

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pole-node.md"


def test_the_page_holds_the_generated_register_tables() -> None:
    assert regdoc.tables() in PAGE.read_text(encoding="utf-8"), (
        "docs/pole-node.md: the register tables differ from `python -m tools.pole.regdoc`"
    )


def test_the_tables_cover_the_whole_map() -> None:
    text = regdoc.tables()
    covered = sum(row[2] for row in regmap.INPUTS)
    assert covered == regmap.INPUT_COUNT
    assert [row[0] for row in regmap.HOLDING] == list(range(regmap.HOLDING_COUNT))
    for row in regmap.INPUTS:
        assert f"| `{row[1]}` |" in text
    for bit, name, _ in regmap.STATUS_BITS:
        assert getattr(regmap, name.upper()) == 1 << bit
