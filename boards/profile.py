"""What a board profile is: which serial ports and pins a cabinet controller model has.

A config names ports and pins by the board's names ("rs485-1", "door"); the board
maps them to device paths and Blinka pin names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    ports: Mapping[str, str]  # port name -> device path ("" = assigned at run time)
    pins: Mapping[str, str]  # pin name -> Blinka pin name (real boards) or pin file name (sim)
    dio: str = "blinka"  # digital I/O backend: "blinka" or "files"
    notes: tuple[str, ...] = field(default_factory=tuple)
