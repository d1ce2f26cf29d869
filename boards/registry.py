"""Board profiles: which serial ports and pins a cabinet controller model has.

A config names ports and pins by the board's names ("rs485-1", "door"); the board
maps them to device paths and Blinka pin names. The sim board's ports are created
at run time by the simulated cabinet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    ports: Mapping[str, str]  # port name -> device path ("" = assigned at run time)
    pins: Mapping[str, str]  # pin name -> Blinka pin name (real boards) or pin file name (sim)
    dio: str = "blinka"  # digital I/O backend: "blinka" or "files"
    notes: tuple[str, ...] = field(default_factory=tuple)


def boards() -> dict[str, BoardProfile]:
    from boards.rpi4_rs485 import BOARD as rpi4
    from boards.sim.board import BOARD as sim

    return {b.name: b for b in (rpi4, sim)}


def get(name: str) -> BoardProfile:
    try:
        return boards()[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}; known: {', '.join(sorted(boards()))}") from None
