"""The pole node's register map as Markdown tables, from boards/pole_node/regmap.py (the
firmware's own tables). docs/pole-node.md holds this text verbatim (tests/test_pole_docs.py).

    python -m tools.pole.regdoc     print the tables
"""

from __future__ import annotations

from boards.pole_node import regmap


def tables() -> str:
    lines = [
        "Input registers (FC 04):",
        "",
        "| register | name | words | unit | TALQ / meaning |",
        "|---|---|---|---|---|",
    ]
    for address, name, words, unit, meaning in regmap.INPUTS:
        span = f"{address}–{address + words - 1}" if words > 1 else str(address)
        lines.append(f"| {span} | `{name}` | {words} | {unit} | {meaning} |")
    lines += ["", "Status bits (input register 16):", "", "| bit | name | set when |", "|---|---|---|"]
    lines += [f"| {bit} | `{name}` | {meaning} |" for bit, name, meaning in regmap.STATUS_BITS]
    lines += [
        "",
        "Holding registers (FC 03 read, FC 06 / FC 16 write):",
        "",
        "| register | name | range | default | unit | meaning |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {address} | `{name}` | {low}..{high} | {default} | {unit} | {meaning} |"
        for address, name, low, high, default, unit, meaning in regmap.HOLDING
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(tables(), end="")
