"""The pole node: MicroPython firmware for a light-pole controller on the cabinet's RS-485 line.

Two halves. The pure modules (regmap, rtu, slave, failsafe, detect, metering, settings,
node) use only the subset of Python that MicroPython runs (no typing, dataclasses or
__future__ at run time; annotations only, which MicroPython ignores) and take time as a
number of milliseconds, so CPython imports and tests them too. The hardware modules
(hw_bus, hw_sense, hw_store, main) are thin wrappers over `machine` and run only on the
board. Imports inside the package are relative: on the board the package is `pole_node`.
"""

VERSION = (1, 0)
