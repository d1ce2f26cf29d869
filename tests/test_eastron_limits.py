"""Eastron meters take at most 40 parameters (80 registers) per request (issue 14).

The SDM630 profile declared 100 registers, latent while the largest planned read was
76 registers; any config polling a denser set of registers would have sent reads the
meter refuses. The planner must never plan a longer read for these profiles, and the
simulated meter refuses one as the real meter does.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import profiles
from drivers.modbus.planner import plan
from drivers.profiles import sdm630
from drivers.profiles.base import DataType, RegisterPoint, Table

EASTRON = ("sdm630", "sdm120")


@pytest.mark.parametrize("name", EASTRON)
def test_the_limit_is_the_manuals_40_parameters(name):
    assert profiles.get(name).build({}).limits.max_registers == 80


def _dense(n: int) -> tuple[RegisterPoint, ...]:
    """n float32 parameters back to back from input 0 (a denser map than any group)."""
    return tuple(RegisterPoint(f"p{i}", Table.INPUT, 2 * i, DataType.FLOAT32) for i in range(n))


@pytest.mark.parametrize("name", EASTRON)
def test_the_planner_never_plans_a_longer_read(name):
    prof = profiles.get(name).build({})
    dense = plan(_dense(120), prof.limits)  # 240 registers of parameters
    assert max(b.count for b in dense) == 80
    assert all(b.count <= 80 for b in plan(prof.points, prof.limits))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(sdm630.GROUPS)), min_size=1, max_size=6, unique=True))
def test_no_group_choice_of_the_sdm630_plans_more_than_80(groups):
    prof = profiles.get("sdm630").build({"groups": groups})
    assert all(b.count <= 80 for b in plan(prof.points, prof.limits))


def test_the_simulated_sdm630_refuses_81_registers_like_the_meter():
    from boards.sim.store import IllegalValue, RegisterStore

    store = RegisterStore(profiles.get("sdm630").build({}))  # serves input 0x0000..0x0159
    assert len(store.read(Table.INPUT, 0, 80)) == 80
    with pytest.raises(IllegalValue) as e:
        store.read(Table.INPUT, 0, 81)
    assert e.value.code == 3
