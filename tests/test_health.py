"""Per-device backoff (drivers.modbus.health): the delay for any number of consecutive
failures is finite, capped, never shrinks as failures grow, and is the documented
`min(max_s, initial_s * factor ** (failures - 1))` with jitter (issue 13: a long outage
must not overflow and crash a bus's poll task)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.health import DeviceHealth

MAX_FAILURES = 10**6

backoffs = st.fixed_dictionaries(
    {
        "initial_s": st.floats(min_value=1e-3, max_value=3600.0),
        "ratio": st.floats(min_value=1.0, max_value=1e6),  # max_s / initial_s
        "factor": st.floats(min_value=1.0, max_value=1000.0),
        "jitter": st.floats(min_value=0.0, max_value=0.99),
        "seed": st.integers(min_value=0, max_value=2**32),
    }
)


def health(b: dict[str, float], failures: int) -> DeviceHealth:
    h = DeviceHealth(b["initial_s"], b["initial_s"] * b["ratio"], b["factor"], b["jitter"], seed=int(b["seed"]))
    h.failures = failures
    return h


def old_delay(b: dict[str, float], failures: int) -> float:
    """The formula before issue 13, with the same jitter draw (raises OverflowError)."""
    if failures == 0:
        return 0.0
    max_s = b["initial_s"] * b["ratio"]
    base = min(max_s, b["initial_s"] * b["factor"] ** (failures - 1))
    return base * (1.0 + b["jitter"] * (2 * random.Random(int(b["seed"])).random() - 1))


@settings(max_examples=300, deadline=None)
@given(backoffs, st.integers(min_value=0, max_value=MAX_FAILURES))
def test_delay_is_finite_and_capped_for_any_failure_count(b, failures):
    h = health(b, failures)
    d = h.delay()
    assert math.isfinite(d)
    assert 0.0 <= d <= h.max_s * (1.0 + h.jitter)


@settings(max_examples=300, deadline=None)
@given(backoffs, st.integers(min_value=0, max_value=MAX_FAILURES), st.integers(min_value=0, max_value=MAX_FAILURES))
def test_delay_never_shrinks_as_failures_grow(b, m, n):
    fewer, more = sorted((m, n))
    # the same seed: both draw the same jitter, so only the failure count differs
    assert health(b, fewer).delay() <= health(b, more).delay()


@settings(max_examples=300, deadline=None)
@given(backoffs, st.integers(min_value=0, max_value=MAX_FAILURES))
def test_delay_is_the_old_formula_wherever_that_did_not_overflow(b, failures):
    try:
        expected = old_delay(b, failures)
    except OverflowError:
        return
    assert health(b, failures).delay() == expected


def test_a_long_outage_keeps_failing_at_the_cap():
    h = DeviceHealth(1.0, 60.0, 2.0, jitter=0.1, seed="m1")
    now = 0.0
    for _ in range(1100):  # 2.0 ** 1024 overflowed at the 1,025th failure
        h.failure(now, "no response")
        now = h.next_try
    assert h.failures == 1100 and h.state == "failing"
    assert 60.0 * 0.9 <= h.delay() <= 60.0 * 1.1


@pytest.mark.parametrize(
    "kw",
    [
        dict(initial_s=0.0),
        dict(initial_s=2.0, max_s=1.0),
        dict(factor=0.5),
        dict(jitter=1.0),
        dict(max_s=math.inf),
        dict(initial_s=math.nan),
        dict(factor=math.inf),
    ],
)
def test_bad_backoff_settings_are_refused(kw):
    with pytest.raises(ValueError, match="backoff"):
        DeviceHealth(**kw)
