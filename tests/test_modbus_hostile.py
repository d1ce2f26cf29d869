"""Hostile Modbus replies: the engine owns its framing errors (drivers.modbus.framing).

A fault campaign saw pymodbus 3.16 raise inside asyncio's `data_received` on replies
with a wrong function code, a wrong byte count, an MBAP length shorter than the PDU or
flipped bits: one "Fatal error: protocol.data_received() call failed" traceback per
reply, each dropping the connection. Here a hostile TCP server on a free loopback port
and a hostile RTU device on a pty answer the engine's real requests with mutated
replies (seeded, a bounded number of requests) interleaved with good ones. Nothing may
reach the loop's exception handler, good replies after bad ones decode to the values
sent, every bad frame fails its request at once with its reason and is counted per
unit, and the engine keeps working. The pure checks and the guarded framer are also
fed thousands of mutated byte streams directly (fast, no sockets).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from agent.clock import WallClock
from agent.config.model import Backoff, Device
from agent.field.poller import BusPoller
from agent.model import Point, Quality, Reading
from boards.sim.ptys import close_pty, open_raw_pty, point_link
from boards.sim.rtu_frames import crc_ok, with_crc
from drivers.modbus.engine import BusEngine, ModbusFault
from drivers.modbus.framing import BadFrameError, FrameGuard
from drivers.modbus.health import FrameHealth
from drivers.modbus.replies import Expected, expected_reply, mbap_problem, pdu_problem
from tests.conftest import TEST_PROFILE, wait_until

pytestmark = pytest.mark.chaos  # the fuzzers belong to the chaos suite (docs/reliability.md)

TABLES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
UNIT = 1

# ----------------------------------------------------------------------------- helpers


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Every call of the running loop's exception handler, recorded (and nothing else runs)."""
    loop = asyncio.get_running_loop()
    calls: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: calls.append(ctx))
    try:
        yield calls
    finally:
        loop.set_exception_handler(old)


def fatal_records(records: list[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if "Fatal error" in r.getMessage() or (r.name == "asyncio" and r.levelno >= logging.ERROR)
    ]


def bad_frame_warnings(records: list[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.name == "drivers.modbus" and r.levelno == logging.WARNING and "bad frame" in r.getMessage()
    ]


def genuine(fc: int, count: int, rng: random.Random) -> tuple[list[Any], bytes]:
    """Fresh values for a read and the good reply PDU (function code, byte count, data)."""
    if fc in (1, 2):
        bits = [rng.random() < 0.5 for _ in range(count)]
        data = bytearray((count + 7) // 8)
        for i, bit in enumerate(bits):
            if bit:
                data[i // 8] |= 1 << (i % 8)
        return bits, bytes((fc, len(data))) + bytes(data)
    regs = [rng.randrange(65536) for _ in range(count)]
    return regs, bytes((fc, 2 * count)) + b"".join(struct.pack(">H", r) for r in regs)


def mbap(tid: int, unit: int, pdu: bytes, *, pid: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", tid, pid, len(pdu) + 1 if length is None else length, unit) + pdu


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(out) * 8)
        out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def other_fc(fc: int, rng: random.Random) -> int:
    return rng.choice(
        [f for f in (1, 2, 3, 4, 5, 6, 15, 16, 0x2B, 0x45, 0x7F, 0x81, 0x83, 0x84) if f not in (fc, fc | 0x80)]
    )


def other_byte_count(bc: int, rng: random.Random) -> int:
    return rng.choice([b for b in range(61) if b != bc])


# What each mutation must do to the engine's request: "good" (the values sent), a bad
# frame of a kind (fails at once with "bad_frame: <kind> ..."), "fail" (any device-level
# fault, e.g. a timeout: CRC, cut short, garbage) or "any" (flipped data bits cannot be
# told from good ones on TCP; flipped ids make pymodbus skip the frame).
Mutation = Callable[[int, int, bytes, random.Random], bytes]

TCP_MUTATIONS: dict[str, tuple[int, str, Mutation]] = {
    "good": (45, "good", lambda tid, unit, pdu, rng: mbap(tid, unit, pdu)),
    "wrong_fc": (
        8,
        "wrong function code",
        lambda tid, unit, pdu, rng: mbap(tid, unit, bytes((other_fc(pdu[0], rng),)) + pdu[1:]),
    ),
    "byte_count": (
        8,
        "byte count",
        lambda tid, unit, pdu, rng: mbap(
            tid, unit, bytes((pdu[0], bc := other_byte_count(pdu[1], rng))) + rng.randbytes(bc)
        ),
    ),
    "mbap_short": (
        8,
        "length",
        lambda tid, unit, pdu, rng: mbap(tid, unit, pdu, length=rng.randrange(2, len(pdu) + 1)),
    ),
    "mbap_long": (
        8,
        "length",
        lambda tid, unit, pdu, rng: mbap(tid, unit, pdu, length=len(pdu) + 1 + rng.randint(1, 9)),
    ),
    "protocol_id": (6, "protocol id", lambda tid, unit, pdu, rng: mbap(tid, unit, pdu, pid=rng.randrange(1, 65536))),
    "bit_flips": (8, "any", lambda tid, unit, pdu, rng: flip_bits(mbap(tid, unit, pdu), rng)),
    "garbage": (6, "fail", lambda tid, unit, pdu, rng: rng.randbytes(len(pdu) + 7)),
    "truncated": (3, "fail", lambda tid, unit, pdu, rng: (a := mbap(tid, unit, pdu))[: rng.randrange(1, len(a))]),
}


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    return with_crc(bytes((unit,)) + pdu)


def rtu_other_fc(unit: int, pdu: bytes, rng: random.Random) -> bytes:
    """A frame with a valid CRC and another function code: a reply to another read, an
    exception reply for another code or with code 0x80 (pymodbus 3.16 raises on that
    one), a file-record reply, or a code nobody knows."""
    fc = rng.choice([f for f in (1, 2, 3, 4) if f != pdu[0]])
    pick = rng.random()
    if pick < 0.2:
        return rtu_frame(unit, bytes((rng.choice((fc | 0x80, 0x80)), 2)))
    if pick < 0.4:
        n = rng.randint(1, 12)
        return rtu_frame(unit, bytes((rng.choice((20, 21)), n)) + rng.randbytes(n))
    if pick < 0.55:
        return rtu_frame(unit, bytes((0x45,)) + pdu[1:])
    return rtu_frame(unit, bytes((fc, len(pdu) - 2)) + pdu[2:])


def rtu_broken_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes((frame[-1] ^ 0x5A,))


RTU_MUTATIONS: dict[str, tuple[int, str, Mutation]] = {
    "good": (45, "good", lambda _tid, unit, pdu, rng: rtu_frame(unit, pdu)),
    "wrong_fc": (15, "wrong function code", lambda _tid, unit, pdu, rng: rtu_other_fc(unit, pdu, rng)),
    "byte_count": (
        12,
        "byte count",
        lambda _tid, unit, pdu, rng: rtu_frame(
            unit, bytes((pdu[0], bc := other_byte_count(pdu[1], rng))) + rng.randbytes(bc)
        ),
    ),
    "bit_flips": (8, "any", lambda _tid, unit, pdu, rng: with_crc(flip_bits(bytes((unit,)) + pdu, rng))),
    "crc": (3, "fail", lambda _tid, unit, pdu, rng: rtu_broken_crc(rtu_frame(unit, pdu))),
    "garbage": (3, "fail", lambda _tid, unit, pdu, rng: rtu_broken_crc(rng.randbytes(len(pdu) + 3))),
    "truncated": (3, "fail", lambda _tid, unit, pdu, rng: (f := rtu_frame(unit, pdu))[: rng.randrange(1, len(f))]),
}


class Plan:
    """Which mutation each reply gets: seeded, weighted; `only_good` for the final stretch."""

    def __init__(self, mutations: dict[str, tuple[int, str, Mutation]], seed: int) -> None:
        self.mutations = mutations
        self.rng = random.Random(seed)
        self.only_good = False
        self.log: list[tuple[str, list[Any]]] = []  # per request answered: (mutation, values sent)

    def reply(self, tid: int, unit: int, fc: int, count: int) -> bytes:
        values, pdu = genuine(fc, count, self.rng)
        names = list(self.mutations)
        name = "good" if self.only_good else self.rng.choices(names, [self.mutations[n][0] for n in names])[0]
        self.log.append((name, values))
        return self.mutations[name][2](tid, unit, pdu, self.rng)


class HostileTcp:
    """A Modbus TCP device on a free loopback port that answers each read per the plan."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                tid, _pid, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                fc, _addr, count = struct.unpack(">BHH", await reader.readexactly(length - 1))
                writer.write(self.plan.reply(tid, unit, fc, count))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class HostileRtu:
    """A Modbus RTU device behind a pty (`link`) that answers each read per the plan."""

    def __init__(self, link: Path, plan: Plan) -> None:
        self.link = link
        self.plan = plan
        self.buf = b""
        self.fds: tuple[int, int] | None = None

    def start(self) -> None:
        master, slave, name = open_raw_pty()
        self.fds = (master, slave)
        point_link(self.link, name)
        asyncio.get_running_loop().add_reader(master, self._on_request)

    def stop(self) -> None:
        if self.fds is not None:
            close_pty(asyncio.get_running_loop(), *self.fds)
            self.fds = None

    def _on_request(self) -> None:
        assert self.fds is not None
        try:
            self.buf += os.read(self.fds[0], 4096)
        except OSError:
            return
        while len(self.buf) >= 8:  # FC 1-4 requests are 8 bytes
            frame, self.buf = self.buf[:8], self.buf[8:]
            if not crc_ok(frame):
                self.buf = b""
                return
            unit, fc, _addr, count = struct.unpack(">BBHH", frame[:6])
            os.write(self.fds[0], self.plan.reply(0, unit, fc, count))


async def drive(engine: BusEngine, plan: Plan, requests: int, seed: int) -> list[tuple[str, str, Any]]:
    """`requests` random reads; per answered request (mutation, expectation, result or ModbusFault)."""
    rng = random.Random(seed)
    outcomes = []
    for _ in range(requests):
        table = rng.choice(list(TABLES))
        count = rng.randint(1, 40) if TABLES[table] in (1, 2) else rng.randint(1, 20)
        before = len(plan.log)
        try:
            result: Any = await engine.read(UNIT, table, rng.randrange(100), count)
        except ModbusFault as f:
            result = f
        answered = plan.log[before:]
        assert len(answered) <= 1, answered
        if answered:
            name, values = answered[0]
            expect = plan.mutations[name][1]
            outcomes.append(
                (name, expect, result if isinstance(result, ModbusFault) or expect != "good" else (result, values))
            )
    return outcomes


def check_outcomes(outcomes: list[tuple[str, str, Any]]) -> Counter[str]:
    """Each outcome as its mutation requires; returns the bad-frame kinds the faults named."""
    faulted: Counter[str] = Counter()
    for name, expect, result in outcomes:
        if isinstance(result, ModbusFault):
            assert result.device_level, (name, result.kind, result.reason)
            if result.kind == "bad_frame":
                faulted[result.reason.split(":", 1)[1].split("(", 1)[0].strip()] += 1
        if expect == "good":
            assert not isinstance(result, ModbusFault), (name, result.reason)
            got, sent = result
            assert got == sent, name
        elif expect == "fail":
            assert isinstance(result, ModbusFault), name
        elif expect != "any":
            assert isinstance(result, ModbusFault), (name, result)
            assert result.kind == "bad_frame" and result.reason.startswith(f"bad_frame: {expect} ("), (
                name,
                result.reason,
            )
    return faulted


# ----------------------------------------------------------------------------- pure checks


@pytest.mark.parametrize(
    "pdu,exp,declared,kind",
    [
        (bytes((3, 4, 0, 1, 0, 2)), expected_reply(3, 2), 6, None),
        (bytes((0x83, 2)), expected_reply(3, 2), 2, None),
        (bytes((4, 4, 0, 1, 0, 2)), expected_reply(3, 2), 6, "wrong function code"),
        (bytes((0x45, 4)), expected_reply(3, 2), 2, "wrong function code"),
        (bytes((0x84, 2)), expected_reply(3, 2), 2, "wrong function code"),
        (bytes((3, 3, 0, 1, 0)), expected_reply(3, 2), 5, "byte count"),
        (bytes((1, 2, 0xFF, 1)), expected_reply(1, 8), 4, "byte count"),
        (bytes((3, 4, 0, 1)), expected_reply(3, 2), 4, "length"),  # cut short by its framing
        (bytes((3, 4, 0, 1, 0, 2, 9)), expected_reply(3, 2), 7, "length"),
        (bytes((3,)), expected_reply(3, 2), 1, "length"),
        (bytes((0x83, 2, 0)), expected_reply(3, 2), 3, "length"),
        (bytes((5, 0, 1, 0xFF, 0)), expected_reply(5, 1), 5, None),
        (bytes((16, 0, 1, 0)), expected_reply(16, 2), 4, "length"),
        (bytes((3, 4, 0)), expected_reply(3, 2), 6, None),  # still arriving
    ],
)
def test_pdu_problem(pdu: bytes, exp: Expected, declared: int, kind: str | None) -> None:
    problem = pdu_problem(pdu, exp, declared)
    assert (problem.kind if problem else None) == kind, problem
    if problem is not None:
        assert str(problem).startswith(f"bad_frame: {kind} (")


def test_mbap_problem() -> None:
    exp = expected_reply(3, 2)
    good = mbap(7, 1, bytes((3, 4, 0, 1, 0, 2)))
    assert mbap_problem(good, 7, 1, exp) is None
    assert mbap_problem(good[:9], 7, 1, exp) is None  # the rest is on its way
    assert mbap_problem(good, 8, 1, exp) is None  # another transaction: pymodbus skips it
    assert mbap_problem(good, 7, 2, exp) is None  # another unit: the same
    short = mbap(7, 1, bytes((3, 4, 0, 1, 0, 2)), length=5)
    assert str(mbap_problem(short, 7, 1, exp)) == "bad_frame: length (MBAP length 5, expected 7)"
    problem = mbap_problem(mbap(7, 1, bytes((3, 4, 0, 1, 0, 2)), pid=0x1234), 7, 1, exp)
    assert problem is not None and problem.kind == "protocol id"
    problem = mbap_problem(mbap(7, 1, b"", length=0), 7, 1, exp)
    assert problem is not None and problem.kind == "length"
    assert mbap_problem(mbap(7, 1, bytes((0x83, 2))), 7, 1, exp) is None


def test_frame_health_logs_once_per_state_change() -> None:
    h = FrameHealth(quiet_s=10)
    assert h.bad(0.0, "length", "bad_frame: length (x)") is True
    assert [h.bad(t, "byte count", "bad_frame: byte count (y)") for t in (1.0, 2.0, 3.0)] == [False] * 3
    assert h.good(5.0) is False  # too soon after the last bad frame
    assert h.good(13.0) is True and h.good(14.0) is False
    assert h.bad(20.0, "length", "bad_frame: length (z)") is True
    snap = h.snapshot(21.0)
    assert snap["bad_frames"] == 5 and snap["bad_frame_kinds"] == {"length": 2, "byte count": 3}
    assert snap["last_bad_frame"] == "bad_frame: length (z)" and snap["last_bad_frame_s_ago"] == 1.0


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_no_byte_stream_raises_in_data_received(kind: str) -> None:
    """Thousands of mutated replies (seeded), fed in random chunks straight into the client
    protocol's data_received: nothing raises, and whatever reaches the pending request is
    the reply it asked for (or an exception reply, or a BadFrameError)."""
    loop = asyncio.get_running_loop()
    client: Any
    if kind == "tcp":
        client = AsyncModbusTcpClient("127.0.0.1", port=1, framer=FramerType.SOCKET)
        mutations = TCP_MUTATIONS
    else:
        client = AsyncModbusSerialClient("/nonexistent/tty", framer=FramerType.RTU)
        mutations = RTU_MUTATIONS
    ctx = client.ctx
    guard = FrameGuard(client, "fuzz", loop.time)
    plan = Plan(mutations, seed=13)
    rng = random.Random(14)
    outcomes: Counter[str] = Counter()
    with loop_errors() as errors:
        for i in range(3000):
            fc = rng.choice((1, 2, 3, 4))
            count = rng.randint(1, 40) if fc in (1, 2) else rng.randint(1, 20)
            tid = 0 if kind == "rtu" else 1 + i % 60000
            guard.expect(UNIT, fc, count)
            ctx.request_dev_id, ctx.request_transaction_id = UNIT, tid
            ctx.recv_buffer = b""  # what pymodbus does when it sends a request
            ctx.response_future = loop.create_future()
            stream = plan.reply(tid, UNIT, fc, count)
            if rng.random() < 0.2:  # junk before or after the reply
                stream = rng.randbytes(rng.randint(1, 12)) + stream if rng.random() < 0.5 else stream + rng.randbytes(5)
            while stream:
                cut = rng.randint(1, len(stream))
                ctx.data_received(stream[:cut])
                stream = stream[cut:]
            guard.settle()
            fut = ctx.response_future
            if not fut.done():
                outcomes["waiting"] += 1
                fut.cancel()
            elif isinstance(fut.exception(), BadFrameError):
                outcomes["bad frame"] += 1
            else:
                pdu = fut.result()
                assert pdu.function_code in (fc, fc | 0x80), (i, pdu)
                if not pdu.isError():
                    got = pdu.bits if fc in (1, 2) else pdu.registers
                    assert len(got) >= count if fc in (1, 2) else len(got) == count, (i, pdu)
                outcomes["reply"] += 1
    assert errors == []
    assert outcomes["bad frame"] > 300 and outcomes["reply"] > 1000, outcomes
    assert guard.total >= outcomes["bad frame"]


# ----------------------------------------------------------------------------- over real transports


@pytest.mark.integration
async def test_tcp_hostile_replies_are_dropped_counted_and_the_engine_keeps_polling(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    plan = Plan(TCP_MUTATIONS, seed=2024)
    server = HostileTcp(plan)
    port = await server.start()
    engine = BusEngine.tcp("hostile", "127.0.0.1", port, timeout_ms=500, reconnect_initial_s=0.05)
    try:
        with loop_errors() as errors:
            outcomes = await drive(engine, plan, 200, seed=7)
            plan.only_good = True
            after = await drive(engine, plan, 20, seed=8)
        assert errors == [], errors[:3]
        assert fatal_records(caplog.records) == []
        faulted = check_outcomes(outcomes)
        check_outcomes(after)
        assert [e for _, e, _ in after] == ["good"] * 20 and engine.state == "up"
        seen = Counter(name for name, _, _ in outcomes)
        assert all(seen[name] > 0 for name in TCP_MUTATIONS), seen
        # counted per unit with the kind, as the faults said
        frames = engine.frame_snapshot(UNIT)
        assert frames["bad_frames"] == engine.snapshot()["bad_frames"] >= sum(faulted.values())
        for kind_, n in faulted.items():
            assert frames["bad_frame_kinds"][kind_] >= n, (kind_, frames)
        for name in ("wrong_fc", "byte_count", "mbap_short", "mbap_long", "protocol_id"):
            assert faulted[TCP_MUTATIONS[name][1]] >= seen[name], (name, faulted, seen)
        assert engine.snapshot()["bad_frames_by_unit"][UNIT]["bad_frames"] == frames["bad_frames"]
        # the connection is kept (resynchronised); pymodbus hangs up only after 4 timeouts in a row
        timeouts = sum(1 for _, _, r in outcomes if isinstance(r, ModbusFault) and r.kind != "bad_frame")
        assert server.connections <= 1 + timeouts // 4, (server.connections, timeouts)
        # logged once (the unit started sending bad frames), not once per reply
        assert len(bad_frame_warnings(caplog.records)) == 1, bad_frame_warnings(caplog.records)
    finally:
        await engine.close()
        await server.stop()


@pytest.mark.integration
async def test_rtu_hostile_replies_are_dropped_counted_and_the_engine_keeps_polling(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    plan = Plan(RTU_MUTATIONS, seed=2025)
    device = HostileRtu(tmp_path / "ttyHostile", plan)
    device.start()
    engine = BusEngine.rtu("hostile-rtu", str(device.link), baudrate=115200, timeout_ms=250)
    try:
        with loop_errors() as errors:
            outcomes = await drive(engine, plan, 150, seed=9)
            plan.only_good = True
            after = await drive(engine, plan, 20, seed=10)
        assert errors == [], errors[:3]
        assert fatal_records(caplog.records) == []
        faulted = check_outcomes(outcomes)
        check_outcomes(after)
        assert [e for _, e, _ in after] == ["good"] * 20 and engine.state == "up"
        seen = Counter(name for name, _, _ in outcomes)
        assert all(seen[name] > 0 for name in RTU_MUTATIONS), seen
        frames = engine.frame_snapshot(UNIT)
        assert frames["bad_frames"] >= sum(faulted.values())
        for name in ("wrong_fc", "byte_count"):
            assert faulted[RTU_MUTATIONS[name][1]] >= seen[name], (name, faulted, seen)
        assert len(bad_frame_warnings(caplog.records)) == 1, bad_frame_warnings(caplog.records)
    finally:
        await engine.close()
        device.stop()


@pytest.mark.integration
async def test_poller_shows_bad_frames_per_device(caplog) -> None:
    """`cabinet status` sees them: the poller's device snapshot carries the engine's
    bad-frame counters for the device's unit, and its points the reason."""
    caplog.set_level(logging.INFO)
    mutations = {name: TCP_MUTATIONS[name] for name in ("good", "wrong_fc", "mbap_short")}
    plan = Plan(mutations, seed=5)
    server = HostileTcp(plan)
    port = await server.start()
    engine = BusEngine.tcp("gw", "127.0.0.1", port, timeout_ms=500)
    points = {p.key: Point(f"m1.{p.key}", unit=p.unit, source="m1", stale_after_s=5) for p in TEST_PROFILE.points}
    readings: list[Reading] = []

    async def sink(batch: list[Reading], _mono: float) -> None:
        readings.extend(batch)

    clock = WallClock()
    poller = BusPoller(
        engine,
        [Device("m1", "gw", UNIT, TEST_PROFILE.name, TEST_PROFILE, 0.02, points)],
        clock,
        sink,
        Backoff(0.02, 0.05),
    )
    try:
        with loop_errors() as errors:
            task = asyncio.create_task(poller.run())
            await wait_until(lambda: poller.snapshot(clock.monotonic())[0]["bad_frames"] >= 6, timeout=20)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert errors == []
        dev = poller.snapshot(clock.monotonic())[0]
        assert set(dev["bad_frame_kinds"]) <= {"wrong function code", "length"}, dev
        assert dev["last_bad_frame"].startswith("bad_frame: ") and dev["polls"] > dev["bad_frames"]
        assert any(r.reason and r.reason.startswith("bad_frame: ") for r in readings)
        assert any(r.quality is Quality.GOOD for r in readings)
        assert len(bad_frame_warnings(caplog.records)) == 1
    finally:
        await engine.close()
        await server.stop()
