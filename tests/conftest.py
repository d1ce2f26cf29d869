"""Shared test helpers: condition waits (no fixed sleeps), small device profiles, config issues."""

from __future__ import annotations

import asyncio
import time

import hypothesis  # noqa: F401 - imported at collection: hypothesis's pytest plugin imports it at the end of a
import pytest  # run otherwise, and CPython 3.11 can fail compiling it then ("AST constructor recursion depth mismatch")

from drivers.profiles.base import DataType, DeviceProfile, Limits, RegisterPoint, Table

TEST_PROFILE = DeviceProfile(
    "testdev",
    (
        RegisterPoint("relay1", Table.COIL, 0, DataType.BOOL, writable=True),
        RegisterPoint("relay2", Table.COIL, 1, DataType.BOOL, writable=True),
        RegisterPoint("voltage", Table.INPUT, 0, DataType.FLOAT32, unit="V"),
        RegisterPoint("temp", Table.INPUT, 2, DataType.INT16, unit="°C", scale=0.1),
        RegisterPoint("setpoint", Table.HOLDING, 0, DataType.UINT16, writable=True),
        RegisterPoint("mode", Table.HOLDING, 1, DataType.UINT16, writable=True),
    ),
    limits=Limits(max_gap=4),
)

TEST_VALUES = {"voltage": 230.2, "temp": 21.5, "setpoint": 7, "mode": 1}


async def wait_until(cond, timeout: float = 5.0, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


def issues_of(text: str, boards=None) -> list:
    """The issues of a config text that must not load (as file "cab.toml")."""
    from agent import config as cfg

    with pytest.raises(cfg.ConfigError) as e:
        cfg.loads(text, "cab.toml", boards)
    return e.value.issues


def find(issues, section, key):
    """The first issue naming [section] key (an assertion error listing all if none)."""
    hits = [i for i in issues if i.section == section and i.key == key]
    assert hits, f"no issue for [{section}] {key} in:\n" + "\n".join(map(str, issues))
    return hits[0]


@pytest.fixture
def profile() -> DeviceProfile:
    return TEST_PROFILE
