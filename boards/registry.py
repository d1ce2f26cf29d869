"""Board profiles: which serial ports and pins a cabinet controller model has.

A config names ports and pins by the board's names ("rs485-1", "door"); the board
maps them to device paths and Blinka pin names. The sim board's ports are created
at run time by the simulated cabinet.
"""

from __future__ import annotations

from boards.profile import BoardProfile
from boards.rpi4_rs485 import BOARD as RPI4
from boards.sim.board import BOARD as SIM

__all__ = ["BoardProfile", "boards", "get"]


def boards() -> dict[str, BoardProfile]:
    return {b.name: b for b in (RPI4, SIM)}


def get(name: str) -> BoardProfile:
    try:
        return boards()[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}; known: {', '.join(sorted(boards()))}") from None
