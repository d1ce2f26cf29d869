"""Request planner: the fewest block reads that cover every point of one device.

Owns `plan()`, `Block`, `PointLike` and `PlanError`. Pure code: points and limits in,
blocks out; the bus engine sends one read request (FC01/02/03/04) per Block and
decodes `Block.points` from the answer. A point is anything `PointLike` (key, table,
address, width; a RegisterPoint in the agent); a Block holds the caller's own point
objects, so `plan(register_points, ...)` gives `Block[RegisterPoint]`s.

Definitions, for each table T of one device (tables are never mixed):
  coverage C(T)  the addresses covered by at least one point of the device in T
                 (all points of the device, not only those of one block).
  a range [s, e) of T is *feasible* when
    (1) e - s <= limits.max_count(T),
    (2) no address of it lies in a forbidden range of T, and
    (3) every maximal run of its addresses outside C(T) has length <= limits.max_gap
        (the gap rule; Telegraf's max_insert, Kura's minimumGapSize).
  a *plan* is a list of feasible Blocks; every point is assigned to exactly one
  block that contains it wholly, and each block starts at the start of one of its
  points and ends at the end of one of its points (no leading or trailing unused
  registers or bits).

`plan()` returns a plan with the fewest blocks and, among those, the fewest
registers (bits) read in total (sum of counts). Blocks come sorted by table
(COIL, DISCRETE, HOLDING, INPUT) and start; within a table starts and ends both
strictly increase. A point goes to the first block that contains it; `Block.points`
is in address order (address, then end, then input order). Same ranges for any
input order.

Why this is exact (proof sketch). Feasibility depends on the range alone (C is
global) and is hereditary: a sub-range of a feasible range is feasible ((1), (2)
trivially; (3) because its uncovered runs are pieces of the bigger range's runs).
  a) A point inside another point (nested, overlapping bits, identical points) is in
     every block that holds the outer one, so only *maximal* points matter; sorted by
     start they are sorted by end too.
  b) The maximal points inside a block form a consecutive run i..j; shrinking the
     block to [start_i, end_j) keeps it feasible and reads no more. Where two runs
     overlap, trim one the same way. So some optimal plan is a partition of the
     maximal points into consecutive runs.
  c) Run i..j is feasible iff end_j <= reach(start_i), with reach(s) = min(s +
     max_count, first forbidden address > s, first start >= s of an uncovered run
     longer than max_gap). A point starts at s, so neither starts *at* s. reach is
     nondecreasing in s and end_j increases with j, so for each j the feasible i form
     a window whose left edge only moves right.
  DP[j+1] = min over i in the window of DP[i] + (1 block, end_j - start_i), compared
  as (blocks, registers); a sliding-window minimum (monotone deque) makes it O(n).
  With the sorts and bisects: O(n log n + f log f) for n points and f forbidden
  ranges, whatever the nesting or duplication; no search over subsets.
  (The block count alone is also what the greedy "start at the leftmost unassigned
  point, stretch to reach()" gives: by heredity an optimal block holding that point
  can be moved to start there and is then no longer than the greedy block; repeat.
  The DP gets the same count plus the register tie-break.)

Errors: PlanError (a ValueError) names the point key, table, address and the limit:
a point wider than max_count, a point overlapping a forbidden range, a bit-table
point with width != 1, a point outside 0..65535, and bad limits (max_registers
outside 1..125, max_bits outside 1..2000 (the Modbus maxima), max_gap < 0, a
forbidden entry that is not (Table, start, end) with 0 <= start < end <= 65536).
Limits are checked even when there are no points. No points -> no blocks.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeGuard, TypeVar

from drivers.profiles.base import Limits, Table

ADDRESS_SPACE = 0x10000
PROTOCOL_MAX = {False: 125, True: 2000}  # per request: registers (FC03/04), bits (FC01/02)


class PointLike(Protocol):
    """What the planner reads of a point (RegisterPoint, or any object with these);
    `plan()` still checks each value, since a point may come from anywhere."""

    @property
    def key(self) -> object: ...
    @property
    def table(self) -> Table: ...
    @property
    def address(self) -> int: ...
    @property
    def width(self) -> int: ...


PointT = TypeVar("PointT", bound=PointLike)


class PlanError(ValueError):
    """Points or limits that cannot be planned. `key` names the point (None for limits)."""

    def __init__(self, key: Any, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Block(Generic[PointT]):
    """One read request: `count` registers (or bits) of `table` from `start`."""

    table: Table
    start: int
    count: int
    points: tuple[PointT, ...]  # the points assigned to this block, in address order

    @property
    def end(self) -> int:
        return self.start + self.count


# A point as the planner sorts it: (address, end, input index, point).
_Item = tuple[int, int, int, PointT]


def plan(points: Iterable[PointT], limits: Limits) -> list[Block[PointT]]:
    """The fewest blocks covering `points` within `limits` (see the module doc)."""
    forbidden = _check_limits(limits)
    by_table: dict[Table, list[_Item[PointT]]] = {t: [] for t in Table}
    for index, point in enumerate(points):
        table, address, end = _check_point(point, limits)
        by_table[table].append((address, end, index, point))
    blocks: list[Block[PointT]] = []
    for table in Table:
        if by_table[table]:
            blocks.extend(_plan_table(table, by_table[table], limits, forbidden[table]))
    return blocks


def _where(table: Table, address: int, end: int | None = None) -> str:
    span = f"{address}" if end is None or end - address <= 1 else f"{address}..{end - 1}"
    return f"{table.value} {span} (0x{address:04X})"


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_limits(limits: Limits) -> dict[Table, list[tuple[int, int]]]:
    """Validate `limits`; return the forbidden ranges per table, sorted."""
    for name, bits in (("max_registers", False), ("max_bits", True)):
        value = getattr(limits, name)
        if not _is_int(value) or not 1 <= value <= PROTOCOL_MAX[bits]:
            raise PlanError(None, f"limits: {name} must be an integer 1..{PROTOCOL_MAX[bits]}, got {value!r}")
    if not _is_int(limits.max_gap) or limits.max_gap < 0:
        raise PlanError(None, f"limits: max_gap must be an integer >= 0, got {limits.max_gap!r}")
    forbidden: dict[Table, list[tuple[int, int]]] = {t: [] for t in Table}
    for entry in limits.forbidden:
        ok = (
            isinstance(entry, tuple)
            and len(entry) == 3
            and isinstance(entry[0], Table)
            and _is_int(entry[1])
            and _is_int(entry[2])
            and 0 <= entry[1] < entry[2] <= ADDRESS_SPACE
        )
        if not ok:
            raise PlanError(
                None,
                f"limits: forbidden range {entry!r} must be (Table, start, end) "
                f"with 0 <= start < end <= {ADDRESS_SPACE}, end exclusive",
            )
        forbidden[entry[0]].append((entry[1], entry[2]))
    for ranges in forbidden.values():
        ranges.sort()
    return forbidden


def _check_point(point: PointLike, limits: Limits) -> tuple[Table, int, int]:
    key = getattr(point, "key", None)
    table, address, width = (getattr(point, a, None) for a in ("table", "address", "width"))
    if not isinstance(table, Table):
        raise PlanError(key, f"point {key!r}: table {table!r} is not a Modbus table")
    if not _is_int(address) or not _is_int(width) or width < 1 or address < 0 or address + width > ADDRESS_SPACE:
        raise PlanError(
            key,
            f"point {key!r}: {table.value} address {address!r} width {width!r} "
            f"does not fit the address space 0..{ADDRESS_SPACE - 1}",
        )
    if table.is_bits and width != 1:
        raise PlanError(
            key, f"point {key!r} at {_where(table, address)}: a {table.value} point is one bit, got width {width}"
        )
    limit = limits.max_count(table)
    if width > limit:
        name = "max_bits" if table.is_bits else "max_registers"
        raise PlanError(
            key,
            f"point {key!r} at {_where(table, address, address + width)} is {width} wide, "
            f"more than {name}={limit}: it cannot be read in one request",
        )
    return table, address, address + width


def _check_forbidden(table: Table, items: list[_Item[PointT]], forbidden: list[tuple[int, int]]) -> list[int]:
    """Raise if a point overlaps a forbidden range; return the sorted forbidden starts."""
    merged: list[list[int]] = []
    for start, end in forbidden:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    starts = [m[0] for m in merged]
    for address, end, _, point in items:
        k = bisect_left(starts, end) - 1  # last merged range starting before the point's end
        if k >= 0 and merged[k][1] > address:
            f0, f1 = next((a, b) for a, b in forbidden if a < end and b > address)
            key = getattr(point, "key", None)
            raise PlanError(
                key,
                f"point {key!r} at {_where(table, address, end)} overlaps the forbidden "
                f"range {_where(table, f0, f1)}, which must never be read",
            )
    return starts


def _plan_table(
    table: Table, items: list[_Item[PointT]], limits: Limits, forbidden: list[tuple[int, int]]
) -> list[Block[PointT]]:
    forbidden_starts = _check_forbidden(table, items, forbidden)
    items.sort(key=lambda it: (it[0], it[1], it[2]))
    # Maximal points (not inside another point): strictly increasing starts and ends.
    starts: list[int] = []
    ends: list[int] = []
    for address, end, _, _ in sorted(items, key=lambda it: (it[0], -it[1], it[2])):
        if not ends or end > ends[-1]:  # the longest of equal starts comes first
            starts.append(address)
            ends.append(end)
    # Starts of uncovered runs longer than max_gap.
    big_gaps: list[int] = []
    covered_to = ends[0]
    for address, end in zip(starts, ends, strict=True):
        if address - covered_to > limits.max_gap:
            big_gaps.append(covered_to)
        covered_to = max(covered_to, end)
    max_count = limits.max_count(table)
    reach = []
    for s in starts:
        r = s + max_count
        k = bisect_right(forbidden_starts, s)
        if k < len(forbidden_starts):
            r = min(r, forbidden_starts[k])
        k = bisect_left(big_gaps, s)
        if k < len(big_gaps):
            r = min(r, big_gaps[k])
        reach.append(r)
    runs = _best_runs(starts, ends, reach)
    block_ranges = [(starts[i], ends[j]) for i, j in runs]
    block_ends = [e for _, e in block_ranges]
    assigned: list[list[PointT]] = [[] for _ in block_ranges]
    for _, end, _, point in items:  # already in address order
        assigned[bisect_left(block_ends, end)].append(point)
    return [Block(table, s, e - s, tuple(pts)) for (s, e), pts in zip(block_ranges, assigned, strict=True)]


def _best_runs(starts: list[int], ends: list[int], reach: list[int]) -> list[tuple[int, int]]:
    """Partition maximal points 0..n-1 into consecutive runs (i, j), minimising
    (runs, sum of ends[j] - starts[i]); run i..j allowed iff ends[j] <= reach[i]."""
    n = len(starts)
    cost: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    parent = [0] * (n + 1)
    window: deque[int] = deque()  # candidate first points, keys increasing front to back
    lo = 0
    for j in range(n):
        key_j = (cost[j][0], cost[j][1] - starts[j])
        while window and (cost[window[-1]][0], cost[window[-1]][1] - starts[window[-1]]) >= key_j:
            window.pop()
        window.append(j)
        while reach[lo] < ends[j]:
            lo += 1
        while window[0] < lo:
            window.popleft()
        i = window[0]
        cost[j + 1] = (cost[i][0] + 1, cost[i][1] - starts[i] + ends[j])
        parent[j + 1] = i
    runs = []
    j = n
    while j > 0:
        runs.append((parent[j], j - 1))
        j = parent[j]
    runs.reverse()
    return runs
