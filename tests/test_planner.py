"""Request planner: plan invariants, exact minimality against a brute-force solver,
worked examples (SDM630-like map, limits, forbidden ranges, nested points), errors
and a large pathological input."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.modbus.planner import Block, PlanError, plan
from drivers.profiles.base import DataType, Limits, RegisterPoint, Table

TABLE_ORDER = {t: i for i, t in enumerate((Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT))}


@dataclass(frozen=True, eq=False)  # identity equality: two points on one register stay two points
class P:
    key: str
    table: Table
    address: int
    width: int = 1

    @property
    def end(self) -> int:
        return self.address + self.width


def hr(key: str, address: int, dtype: DataType = DataType.UINT16, **kw) -> RegisterPoint:
    return RegisterPoint(key, Table.HOLDING, address, dtype, **kw)


def ranges(blocks: list[Block]) -> list[tuple[Table, int, int]]:
    return [(b.table, b.start, b.count) for b in blocks]


# --- an independent checker of every rule a plan must keep -----------------------


def check_plan(points: list, limits: Limits, blocks: list[Block]) -> None:
    covered = {t: bytearray(0x10000) for t in Table}
    for p in points:
        covered[p.table][p.address : p.address + p.width] = b"\x01" * p.width
    forbidden = {t: bytearray(0x10000) for t in Table}
    for t, a, e in limits.forbidden:
        forbidden[t][a:e] = b"\x01" * (e - a)

    assert [(TABLE_ORDER[b.table], b.start) for b in blocks] == sorted((TABLE_ORDER[b.table], b.start) for b in blocks)
    assigned: Counter[int] = Counter()  # id(point) -> blocks holding it
    furthest_end = dict.fromkeys(Table, -1)  # of the earlier blocks of each table
    for b in blocks:
        assert b.end == b.start + b.count
        assert 1 <= b.count <= limits.max_count(b.table)
        assert b.points, "a block without points reads for nothing"
        assert list(b.points) == sorted(b.points, key=lambda p: (p.address, p.address + p.width))
        for p in b.points:
            assigned[id(p)] += 1
            assert p.table == b.table and b.start <= p.address and p.address + p.width <= b.end
            # assigned to the first block that contains it (earlier blocks start no later)
            assert furthest_end[b.table] < p.address + p.width
        assert b.start == min(p.address for p in b.points)
        assert b.end == max(p.address + p.width for p in b.points)
        assert not any(forbidden[b.table][b.start : b.end]), f"block {b} reads a forbidden address"
        run = longest = 0
        for c in covered[b.table][b.start : b.end]:
            run = 0 if c else run + 1
            longest = max(longest, run)
        assert longest <= limits.max_gap, f"block {b} reads {longest} unused addresses in a row"
        furthest_end[b.table] = max(furthest_end[b.table], b.end)
    assert assigned == Counter(id(p) for p in points), "every point in exactly one block"


# --- an independent exact solver: shortest path over sets of covered points ---------


def brute_force(points: list, limits: Limits) -> tuple[int, int]:
    """(fewest blocks, fewest registers read among those) by Dijkstra over bitmasks of
    covered points, trying every range from a point start to a point end and testing
    its feasibility address by address."""
    total_blocks = total_regs = 0
    for table in Table:
        pts = [p for p in points if p.table == table]
        if not pts:
            continue
        covered = {a for p in pts for a in range(p.address, p.address + p.width)}
        bad = {a for t, s, e in limits.forbidden if t == table for a in range(s, e)}

        def feasible(s: int, e: int, table: Table = table, bad: set[int] = bad, covered: set[int] = covered) -> bool:
            if e - s > limits.max_count(table) or any(a in bad for a in range(s, e)):
                return False
            run = 0
            for a in range(s, e):
                run = 0 if a in covered else run + 1
                if run > limits.max_gap:
                    return False
            return True

        candidates = []
        for s in {p.address for p in pts}:
            for e in {p.address + p.width for p in pts}:
                if s < e and feasible(s, e):
                    mask = sum(1 << i for i, p in enumerate(pts) if s <= p.address and p.address + p.width <= e)
                    candidates.append((mask, e - s))
        full = (1 << len(pts)) - 1
        best = {0: (0, 0)}
        heap = [(0, 0, 0)]
        while heap:
            n, regs, mask = heapq.heappop(heap)
            if mask == full:
                break
            if best[mask] < (n, regs):
                continue
            for cmask, count in candidates:
                new = mask | cmask
                if new != mask and (n + 1, regs + count) < best.get(new, (1 << 30, 0)):
                    best[new] = (n + 1, regs + count)
                    heapq.heappush(heap, (n + 1, regs + count, new))
        assert full in best, "brute force found no plan (the test instance is invalid)"
        total_blocks += best[full][0]
        total_regs += best[full][1]
    return total_blocks, total_regs


@st.composite
def instances(draw, max_points: int = 10, max_address: int = 30):
    limits_kw = dict(
        max_registers=draw(st.integers(1, 10)), max_bits=draw(st.integers(1, 10)), max_gap=draw(st.integers(0, 4))
    )
    forbidden = tuple(
        (t, a, a + n)
        for t, a, n in draw(
            st.lists(
                st.tuples(st.sampled_from(list(Table)), st.integers(0, max_address), st.integers(1, 4)), max_size=3
            )
        )
    )
    limits = Limits(**limits_kw, forbidden=forbidden)
    tables = draw(st.lists(st.sampled_from(list(Table)), min_size=1, max_size=2, unique=True))
    points = []
    for i in range(draw(st.integers(0, max_points))):
        table = draw(st.sampled_from(tables))
        width = 1 if table.is_bits else draw(st.integers(1, min(4, limits.max_registers)))
        address = draw(st.integers(0, max_address))
        if not any(t == table and a < address + width and address < e for t, a, e in forbidden):
            points.append(P(f"p{i}", table, address, width))
    return points, limits


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_plan_is_valid_and_minimal_against_brute_force(instance):
    points, limits = instance
    blocks = plan(points, limits)
    check_plan(points, limits, blocks)
    fewest, regs = brute_force(points, limits)
    assert len(blocks) == fewest
    assert sum(b.count for b in blocks) == regs  # the tie-break: fewest registers among fewest blocks


@settings(max_examples=150, deadline=None)
@given(instances(max_points=60, max_address=300), st.randoms(use_true_random=False))
def test_plan_is_valid_on_bigger_instances_and_ignores_input_order(instance, rnd):
    points, limits = instance
    blocks = plan(points, limits)
    check_plan(points, limits, blocks)
    shuffled = list(points)
    rnd.shuffle(shuffled)
    assert ranges(plan(shuffled, limits)) == ranges(blocks)


# --- worked examples -----------------------------------------------------------------


def test_no_points_no_blocks():
    assert plan([], Limits()) == []


def test_twenty_contiguous_holding_registers_are_one_block():
    points = [hr(f"r{a}", a) for a in range(20)]
    blocks = plan(points, Limits())
    assert ranges(blocks) == [(Table.HOLDING, 0, 20)]
    assert blocks[0].points == tuple(points)
    assert blocks[0].end == 20


def sdm630_points() -> list[RegisterPoint]:
    """float32 values at 0x0000..0x0050 step 2 plus total energy at 0x0156/0x0158."""
    points = [RegisterPoint(f"v{a:04x}", Table.INPUT, a, DataType.FLOAT32) for a in range(0x0000, 0x0052, 2)]
    points += [
        RegisterPoint("import_kwh", Table.INPUT, 0x0156, DataType.FLOAT32),
        RegisterPoint("export_kwh", Table.INPUT, 0x0158, DataType.FLOAT32),
    ]
    return points


def test_sdm630_like_map_is_two_blocks():
    points = sdm630_points()
    blocks = plan(points, Limits(max_gap=10))
    assert ranges(blocks) == [(Table.INPUT, 0x0000, 0x52), (Table.INPUT, 0x0156, 4)]
    assert [p.key for p in blocks[1].points] == ["import_kwh", "export_kwh"]
    check_plan(points, Limits(max_gap=10), blocks)


def test_max_registers_60_splits_without_cutting_a_float():
    points = sdm630_points()
    limits = Limits(max_registers=60)
    blocks = plan(points, limits)
    assert len(blocks) == 3
    assert all(b.count <= 60 for b in blocks)
    assert sum(b.count for b in blocks) == 0x52 + 4  # no unused register read
    check_plan(points, limits, blocks)


def test_hundred_registers_with_limit_60_is_two_blocks():
    blocks = plan([hr(f"r{a}", a) for a in range(100)], Limits(max_registers=60))
    assert [b.count for b in blocks] in ([60, 40], [40, 60])
    assert blocks[0].end == blocks[1].start


def test_forbidden_range_splits_a_run():
    points = [hr(f"a{a}", a) for a in range(10)] + [hr(f"b{a}", a) for a in range(12, 20)]
    assert ranges(plan(points, Limits())) == [(Table.HOLDING, 0, 20)]  # gap of 2 is read through
    limits = Limits(forbidden=((Table.HOLDING, 10, 12),))
    assert ranges(plan(points, limits)) == [(Table.HOLDING, 0, 10), (Table.HOLDING, 12, 8)]
    other_table = Limits(forbidden=((Table.INPUT, 10, 12),))
    assert ranges(plan(points, other_table)) == [(Table.HOLDING, 0, 20)]


def test_gap_rule_boundary():
    pts = [hr("a", 0), hr("b", 11)]  # 10 unused registers between them
    assert len(plan(pts, Limits(max_gap=10))) == 1
    assert len(plan(pts, Limits(max_gap=9))) == 2
    adjacent = [hr("a", 0), hr("b", 1), hr("c", 3)]
    assert ranges(plan(adjacent, Limits(max_gap=0))) == [(Table.HOLDING, 0, 2), (Table.HOLDING, 3, 1)]


def test_tables_are_never_merged_and_come_in_table_order():
    points = [
        RegisterPoint("in", Table.INPUT, 0),
        hr("hold", 1),
        RegisterPoint("di", Table.DISCRETE, 0, DataType.BOOL),
        RegisterPoint("coil", Table.COIL, 1, DataType.BOOL),
    ]
    blocks = plan(points, Limits())
    assert [(b.table, b.start, b.count, b.points[0].key) for b in blocks] == [
        (Table.COIL, 1, 1, "coil"),
        (Table.DISCRETE, 0, 1, "di"),
        (Table.HOLDING, 1, 1, "hold"),
        (Table.INPUT, 0, 1, "in"),
    ]


def test_bits_of_one_status_register_and_overlapping_points():
    bits = [hr(f"status.{b}", 5, bit=b) for b in range(16)]
    word = hr("status", 5)
    wide = hr("counter", 4, DataType.UINT32)  # covers 4..5, so the status register too
    points = [*bits, word, wide]
    blocks = plan(points, Limits())
    assert ranges(blocks) == [(Table.HOLDING, 4, 2)]
    assert blocks[0].points[0] is wide
    assert Counter(id(p) for p in blocks[0].points) == Counter(id(p) for p in points)
    check_plan(points, Limits(), blocks)


def test_nested_point_may_split_differently_than_its_neighbours():
    # with max_registers=4 the uint64 at 2 cannot share a block with the register at 0
    points = [hr("a", 0), hr("big", 2, DataType.UINT64), hr("inner", 3), hr("z", 6)]
    limits = Limits(max_registers=4)
    blocks = plan(points, limits)
    check_plan(points, limits, blocks)
    assert len(blocks) == 3


def test_ties_prefer_fewer_registers():
    # two blocks either way; [0,1) + [8,13) reads 6 registers, [0,9) + [12,13) reads 10
    points = [hr("a", 0), hr("b", 8), hr("c", 12)]
    assert ranges(plan(points, Limits(max_registers=10))) == [(Table.HOLDING, 0, 1), (Table.HOLDING, 8, 5)]
    # [0,3) + [9,12) reads 6; [0,1) + [2,12) and [0,10) + [11,12) read 11
    points = [hr("a", 0), hr("b", 2), hr("c", 9), hr("d", 11)]
    assert ranges(plan(points, Limits(max_registers=10))) == [(Table.HOLDING, 0, 3), (Table.HOLDING, 9, 3)]
    # found by a differential run against brute_force(): 3 blocks, 10 registers at best
    points = [hr("a", 1)] + [hr(k, a, DataType.UINT32) for k, a in (("b", 4), ("c", 7), ("d", 8), ("e", 11))]
    assert ranges(plan(points, Limits(max_registers=5, max_gap=4))) == [
        (Table.HOLDING, 1, 5),
        (Table.HOLDING, 7, 3),
        (Table.HOLDING, 11, 2),
    ]


def test_accepts_any_iterable_and_any_point_like_object():
    blocks = plan((P(f"c{i}", Table.COIL, i) for i in range(3)), Limits())
    assert ranges(blocks) == [(Table.COIL, 0, 3)]


def test_block_is_frozen():
    block = plan([hr("a", 0)], Limits())[0]
    with pytest.raises(AttributeError):
        block.start = 3  # type: ignore[misc]


# --- errors --------------------------------------------------------------------------


def test_point_wider_than_the_limit():
    with pytest.raises(PlanError) as err:
        plan([hr("a", 0), hr("energy", 0x0156, DataType.FLOAT64)], Limits(max_registers=2))
    assert err.value.key == "energy"
    msg = str(err.value)
    assert "'energy'" in msg and "342" in msg and "0x0156" in msg and "max_registers=2" in msg


def test_point_overlapping_a_forbidden_range():
    limits = Limits(forbidden=((Table.HOLDING, 100, 110),))
    with pytest.raises(PlanError) as err:
        plan([hr("ok", 0), hr("power", 99, DataType.FLOAT32)], limits)
    assert err.value.key == "power"
    msg = str(err.value)
    assert "'power'" in msg and "99" in msg and "forbidden" in msg and "100..109" in msg
    # the same range in another table does not matter
    assert plan([RegisterPoint("power", Table.INPUT, 99, DataType.FLOAT32)], limits)


def test_bit_table_point_must_be_one_bit():
    with pytest.raises(PlanError) as err:
        plan([P("relays", Table.COIL, 0, width=8)], Limits())
    assert err.value.key == "relays" and "width 8" in str(err.value)


def test_point_outside_the_address_space():
    with pytest.raises(PlanError) as err:
        plan([P("far", Table.HOLDING, 0xFFFF, width=2)], Limits())
    assert err.value.key == "far" and "65535" in str(err.value)


@pytest.mark.parametrize(
    "limits, words",
    [
        (Limits(max_registers=0), "max_registers"),
        (Limits(max_registers=126), "max_registers"),
        (Limits(max_bits=0), "max_bits"),
        (Limits(max_bits=2001), "max_bits"),
        (Limits(max_gap=-1), "max_gap"),
        (Limits(forbidden=((Table.HOLDING, 10, 10),)), "forbidden"),
        (Limits(forbidden=(("holding", 1, 2),)), "forbidden"),  # type: ignore[arg-type]  # a str, on purpose
    ],
)
def test_bad_limits(limits, words):
    with pytest.raises(PlanError) as err:
        plan([hr("a", 0)], limits)
    assert err.value.key is None and words in str(err.value)
    with pytest.raises(PlanError):
        plan([], limits)  # limits are checked even without points


# --- large, pathological input ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CountingPoint:
    """A point that counts how often the planner reads it."""

    key: str
    table: Table
    _address: int
    _width: int
    reads: list

    @property
    def address(self) -> int:
        self.reads[0] += 1
        return self._address

    @property
    def width(self) -> int:
        self.reads[0] += 1
        return self._width


def test_hundred_thousand_pathological_points_plan_in_near_linear_work():
    """Not timed. 100k points: 30k identical points on one register, runs of nested and
    overlapping points, 2k coils, 200 forbidden ranges; the plan must be valid, and the
    planner must read each point's attributes a constant number of times."""
    rnd = random.Random(7)
    reads = [0]
    points: list = []
    forbidden = tuple((Table.HOLDING, a, a + 3) for a in range(1000, 60000, 300))
    bad = {a for _, s, e in forbidden for a in range(s, e)}

    def add(table: Table, address: int, width: int) -> None:
        if not any(a in bad for a in range(address, address + width)) or table is not Table.HOLDING:
            points.append(CountingPoint(f"p{len(points)}", table, address, width, reads))

    for _ in range(30_000):
        add(Table.HOLDING, 500, 1)
    while len(points) < 98_000:
        a = rnd.randrange(0, 65_000)
        for w in (4, 2, 1, 1):  # a float64 with nested halves and registers
            add(Table.HOLDING, a + rnd.randrange(0, 5 - w), w)
    for a in range(0, 4000, 2):
        add(Table.COIL, a, 1)
    limits = Limits(max_gap=3, forbidden=forbidden)

    blocks = plan(points, limits)

    assert reads[0] <= 4 * len(points)
    check_plan(points, limits, blocks)
    assert len(blocks) < len(points) // 10
