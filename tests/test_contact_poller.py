"""agent/field/inputs.py DioPoller: contacts at their poll period, outputs read back every
second, and timers that float rounding put a hair apart read in one wake-up."""

from __future__ import annotations

import asyncio

from agent.clock import SimClock
from agent.config.model import Input, Output
from agent.field.inputs import DioPoller
from agent.model import Point, Reading
from drivers.dio import MemoryDIO


def point(name: str) -> Point:
    return Point(name=name)


async def test_inputs_and_output_readback_share_their_wake_ups():
    clock = SimClock()
    wakes: list[tuple[float, list[str]]] = []

    async def sink(readings: list[Reading], now: float) -> None:
        wakes.append((now, sorted(r.point for r in readings)))

    inputs = [Input(f"in{i}", f"p{i}", poll_s=0.2, point=point(f"dio.in{i}")) for i in range(3)]
    outputs = [Output("fan", "q0", point=point("dio.fan"))]
    poller = DioPoller(inputs, outputs, MemoryDIO(), clock, sink)
    task = asyncio.create_task(poller.run())
    for _ in range(100):  # 10 s in 0.1-s steps
        await clock.advance(0.1)
    task.cancel()
    times = [t for t, _ in wakes]
    assert len(times) == len(set(times)) == 50  # every 0.2 s for 10 s: one wake-up each, none extra
    with_fan = [t for t, names in wakes if "dio.fan" in names]
    assert len(with_fan) == 10  # the readback every second rides on an input's wake-up
    assert all({"dio.in0", "dio.in1", "dio.in2"} <= set(names) for _, names in wakes)
