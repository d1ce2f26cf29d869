"""The poller: one task per bus, polling its devices on their periods.

PollSchedule (pure) decides which device is next: the earliest due, never one in
backoff before its retry time, without drift (due += period; missed cycles are
skipped and counted). BusPoller runs the plan of each device through the bus
engine, decodes every block, and hands Readings to the sink. A device that stops
answering goes to backoff and its points to quality bad with the reason; a block
the device refuses with exception 2/3 is split into one request per point, once,
so one unimplemented register cannot spoil its neighbours. Transitions are
logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agent.clock import Clock
from agent.config.model import Device
from agent.model import Quality, Reading
from drivers.modbus import codec
from drivers.modbus.codec import BlockDecoder
from drivers.modbus.engine import BusEngine, ModbusFault
from drivers.modbus.health import DeviceHealth
from drivers.modbus.planner import Block, plan

log = logging.getLogger("agent.poller")

Sink = Callable[[list[Reading], float], Awaitable[None]]


class PollSchedule:
    """Which device to poll next. Pure: times are passed in."""

    def __init__(self) -> None:
        self._period: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self.skipped: dict[str, int] = {}

    def add(self, name: str, period: float, first_due: float) -> None:
        self._period[name] = period
        self._due[name] = first_due
        self.skipped[name] = 0

    def next(self, not_before: Callable[[str], float] = lambda _: 0.0) -> tuple[str, float]:
        """(device, time it should run): earliest of max(due, not_before(device))."""
        best = None
        for name, due in self._due.items():
            t = max(due, not_before(name))
            if best is None or t < best[1]:
                best = (name, t)
        if best is None:
            raise LookupError("no devices scheduled")
        return best

    def done(self, name: str, now: float) -> None:
        """The poll of `name` finished at `now`: schedule the next one on the grid."""
        period = self._period[name]
        due = self._due[name] + period
        if due <= now:
            missed = int((now - due) // period) + 1
            self.skipped[name] += missed
            due += missed * period
        self._due[name] = due

    def due(self, name: str) -> float:
        return self._due[name]


class DeviceState:
    """A device on a bus: its plan, decoders and health."""

    def __init__(self, device: Device, backoff: Any) -> None:
        self.device = device
        self.health = DeviceHealth(backoff.initial_s, backoff.max_s, backoff.factor, seed=device.name)
        self.blocks: list[tuple[Block, BlockDecoder, bool]] = []
        self.names = {rp.key: device.points[rp.key].name for rp in device.profile.points}
        self.polls = 0
        self.last_duration = 0.0
        self.split: list[str] = []
        for block in plan(device.profile.points, device.profile.limits):
            self.blocks.append((block, BlockDecoder(block.start, block.count, block.points), False))

    def split_block(self, index: int) -> None:
        block, _, _ = self.blocks[index]
        singles = []
        for p in block.points:
            b = Block(block.table, p.address, p.width, (p,))
            singles.append((b, BlockDecoder(b.start, b.count, b.points), True))
        self.blocks[index : index + 1] = singles
        self.split.append(f"{block.table.value} {block.start}+{block.count}")


class BusPoller:
    def __init__(self, engine: BusEngine, devices: Sequence[Device], clock: Clock, sink: Sink, backoff: Any) -> None:
        self.engine = engine
        self.clock = clock
        self.sink = sink
        self.devices = {d.name: DeviceState(d, backoff) for d in devices}
        self.schedule = PollSchedule()
        now = clock.monotonic()
        for d in devices:
            self.schedule.add(d.name, d.poll_s, now)
        self.cycles = 0

    @property
    def plan_size(self) -> int:
        return sum(len(s.blocks) for s in self.devices.values())

    async def run(self) -> None:
        if not self.devices:
            return
        while True:
            name, at = self.schedule.next(self._not_before)
            if at > self.clock.monotonic():
                await self.clock.sleep_until(at)
            await self.poll(name)
            self.schedule.done(name, self.clock.monotonic())

    def _not_before(self, name: str) -> float:
        h = self.devices[name].health
        return h.next_try if h.state == "failing" else 0.0

    async def poll(self, name: str) -> None:
        """Poll every block of one device once and emit its readings."""
        st = self.devices[name]
        dev = st.device
        started = self.clock.monotonic()
        readings: list[Reading] = []
        i = 0
        while i < len(st.blocks):
            block, decoder, was_split = st.blocks[i]
            try:
                values = await self.engine.read(dev.unit, block.table.value, block.start, block.count)
            except ModbusFault as f:
                if f.bus_level:
                    readings = self._all_bad(st, f.reason)
                    break
                if f.device_level:
                    if st.health.failure(self.clock.monotonic(), f.reason):
                        log.warning(
                            "device %s (bus %s unit %d) not answering: %s; retrying with backoff",
                            name,
                            self.engine.name,
                            dev.unit,
                            f.reason,
                        )
                    readings = self._all_bad(st, f.reason)
                    break
                if f.code in (2, 3) and len(block.points) > 1 and not was_split:
                    st.split_block(i)
                    log.warning(
                        "device %s refused block %s %d+%d (%s); reading its points one by one",
                        name,
                        block.table.value,
                        block.start,
                        block.count,
                        f.reason,
                    )
                    continue  # retry the same index, now the first single-point block
                t = self.clock.now()
                readings.extend(Reading(st.names[p.key], t, None, Quality.BAD, f.reason) for p in block.points)
                i += 1
                continue
            t = self.clock.now()
            try:
                decoded = decoder.decode(values)
            except ValueError as e:  # a reply that passed the engine but cannot be decoded
                readings.extend(Reading(st.names[p.key], t, None, Quality.BAD, str(e)) for p in block.points)
            else:
                names = st.names
                for p, value, reason in decoded:
                    if reason is None:
                        readings.append(Reading(names[p.key], t, value, Quality.GOOD))
                    else:
                        readings.append(Reading(names[p.key], t, value, Quality.BAD, reason))
            i += 1
        else:
            was_failing = st.health.state == "failing"
            if st.health.success(self.clock.monotonic()) and was_failing:
                log.info("device %s (bus %s unit %d) answering again", name, self.engine.name, dev.unit)
        st.polls += 1
        now = self.clock.monotonic()
        st.last_duration = now - started
        if readings:
            await self.sink(readings, now)

    def _all_bad(self, st: DeviceState, reason: str) -> list[Reading]:
        t = self.clock.now()
        return [Reading(n, t, None, Quality.BAD, reason) for n in st.names.values()]

    async def write(self, device: str, key: str, value: Any) -> None:
        """Write one writable point (verified by read-back). Raises ModbusFault/KeyError/ValueError."""
        st = self.devices[device]
        rp = st.device.profile.point(key)
        if not rp.writable:
            raise ValueError(f"point {device}.{key} is not writable")
        regs = codec.encode(rp, value)
        await self.engine.write(st.device.unit, rp.table.value, rp.address, regs)

    def snapshot(self, mono: float) -> list[dict[str, Any]]:
        out = []
        for name, st in self.devices.items():
            out.append(
                {
                    "name": name,
                    "bus": self.engine.name,
                    "unit": st.device.unit,
                    "profile": st.device.profile_name,
                    "poll_s": st.device.poll_s,
                    "requests_per_poll": len(st.blocks),
                    "polls": st.polls,
                    "skipped_cycles": self.schedule.skipped[name],
                    "last_poll_ms": round(st.last_duration * 1000, 1),
                    "split_blocks": st.split,
                    **st.health.snapshot(mono),
                    **self.engine.frame_snapshot(st.device.unit),  # bad frames: total, by kind, last reason
                }
            )
        return out
