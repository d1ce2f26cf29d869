"""Hostile bytes at the pole node (CPython, hypothesis): whatever arrives, the node never
raises, answers only with a well-formed frame for its own unit id, and never leaves its
holding registers out of bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from boards.pole_node import regmap, rtu
from boards.pole_node.node import PoleNode
from tests.micropython.common import MemFlash

UNIT = 7


def _with_crc_sometimes(body: bytes, fix: bool) -> bytes:
    return rtu.with_crc(body) if fix else body


frames = st.one_of(
    st.binary(max_size=300),
    st.builds(
        _with_crc_sometimes,
        st.builds(
            lambda unit, fc, rest: bytes((unit, fc)) + rest,
            st.sampled_from([0, UNIT, UNIT + 1]),
            st.sampled_from([1, 3, 4, 5, 6, 15, 16, 43, 0x83]),
            st.binary(max_size=40),
        ),
        st.booleans(),
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frames, max_size=20))
def test_any_bytes(sequence: list[bytes]) -> None:
    node = PoleNode(UNIT, MemFlash(), 0)
    for t, frame in enumerate(sequence):
        reply = node.request(frame, t * 10)
        if reply is not None:
            assert rtu.crc_ok(reply) and reply[0] == UNIT, reply
            assert reply[1] == frame[1] or reply[1] == frame[1] | 0x80
            if reply[1] & 0x80:
                assert reply[2] in (1, 2, 3) and len(reply) == 5
        assert regmap.check_block(node.holding) is None
        node.update(t * 10 + 5, 230.0, 0.26, 60.0, 0.95, 5, 0, False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.integers(min_value=0, max_value=60))
def test_any_flash_content_boots(garbage: bytes, cut: int) -> None:
    flash = MemFlash()
    flash.files["settings.a"] = garbage
    flash.files["settings.b"] = garbage[:cut]
    flash.files["counters.a"] = garbage[cut:]
    node = PoleNode(UNIT, flash, 0)
    assert regmap.check_block(node.holding) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=80), st.integers(min_value=0, max_value=30000)), max_size=40))
def test_framer_any_stream(chunks: list[tuple[bytes, int]]) -> None:
    """Any bytes at any pace: the framer never raises, never holds more than an ADU, and a
    request sent after a clear silence is always delivered whole."""
    f = rtu.Framer(9600)
    now = 0
    for data, pause in chunks:
        now += pause
        f.feed(data, now)
        while f.poll(now) is not None:
            pass
        assert len(f.buf) <= rtu.MAX_ADU
    good = rtu.with_crc(bytes((UNIT, 4, 0, 0, 0, 2)))
    now += rtu.Framer.STALL_US + 1
    while f.poll(now) is not None:  # whatever was left ends at this silence
        pass
    assert f.feed(good, now) is None
    assert f.poll(now) == good
