"""The uplink's reconnect backoff (agent/uplink/backoff.py): pure, overflow-free."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.uplink.backoff import Backoff


def test_doubles_from_initial_to_the_cap_and_resets_on_success() -> None:
    b = Backoff(1.0, 300.0, jitter=0.0)
    assert b.delay() == 0.0
    assert [b.failure("refused") for _ in range(11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert b.reason == "refused"
    b.success()
    assert b.failures == 0 and b.reason is None and b.delay() == 0.0
    assert b.failure("timeout") == 1.0


@given(
    failures=st.integers(1, 10**6),
    initial=st.floats(0.01, 10),
    ratio=st.floats(1, 10**4),
    factor=st.floats(1, 10),
    jitter=st.floats(0, 0.99),
)
def test_any_number_of_failures_gives_a_finite_delay_within_the_jittered_cap(
    failures: int, initial: float, ratio: float, factor: float, jitter: float
) -> None:
    b = Backoff(initial, initial * ratio, factor=factor, jitter=jitter, seed="CAB-1")
    b.failures = failures
    d = b.delay()
    assert initial * (1 - jitter) * (1 - 1e-9) <= d <= initial * ratio * (1 + jitter) * (1 + 1e-9)


def test_the_jitter_spreads_a_fleet_but_is_the_same_for_one_cabinet() -> None:
    first = [Backoff(1.0, 300.0, seed=f"CAB-{i}").failure("x") for i in range(50)]
    assert len({round(d, 6) for d in first}) > 40 and all(0.7 <= d <= 1.3 for d in first)
    assert Backoff(1.0, 300.0, seed="CAB-7").failure("x") == Backoff(1.0, 300.0, seed="CAB-7").failure("x")


@pytest.mark.parametrize(
    ("initial", "max_s", "factor", "jitter"), [(0, 1, 2, 0), (2, 1, 2, 0), (1, 2, 0.5, 0), (1, 2, 2, 1.0)]
)
def test_nonsense_settings_are_refused(initial: float, max_s: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial, max_s, factor=factor, jitter=jitter)
