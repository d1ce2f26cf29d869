"""What the outbox reports (for `agent.outbox.writer.Outbox`): its stats, read by status and
self-telemetry, and the `event.outbox.evicted` reading it puts when readings were
evicted from the store or dropped from the queue.

The event (Priority.EVENT, a JSON object as its value) carries the counts since the
previous one: `evicted_rows` and `dropped_rows` by priority (alarm, event, telemetry),
`evicted_batches`, and the store's `cap_bytes` and `disk_full` at that moment.
"""

from __future__ import annotations

import json
from typing import Any

from agent.model import Priority, Quality, Reading
from agent.outbox.policy import age
from agent.outbox.queue import WriteQueue
from agent.outbox.schema import PRIOS
from agent.outbox.store import Store

EVICTED_POINT = "event.outbox.evicted"
NAMES = tuple(p.name.lower() for p in Priority)


def counts(st: Store, q: WriteQueue) -> tuple[int, ...]:
    """Evicted rows by priority, evicted batches, dropped rows by priority: what the event reports."""
    return (*st.evicted, st.evicted_batches, *q.dropped)


def evicted_event(st: Store, before: tuple[int, ...], after: tuple[int, ...], t: float) -> Reading:
    d = [a - b for a, b in zip(after, before, strict=True)]
    body = {
        "evicted_rows": dict(zip(NAMES, d[:3], strict=True)),
        "evicted_batches": d[3],
        "dropped_rows": dict(zip(NAMES, d[4:], strict=True)),
        "cap_bytes": st.cap,
        "disk_full": st.full,
    }
    return Reading(EVICTED_POINT, t, json.dumps(body, sort_keys=True), Quality.GOOD)


def stats(st: Store, q: WriteQueue, now: float, failing: bool) -> dict[str, Any]:
    """Counts for self-telemetry and the uplink (`now`: monotonic). Rows and bytes describe the
    committed store; `oldest_unsent_t` is the wall time `t` of the oldest stored
    (unacknowledged) reading; `oldest_pending_age_s` (monotonic, inf after a restart) and
    `pending_priority` (the highest Priority waiting, or None) describe unsealed rows;
    evicted_* are lifetime totals kept in the file; appended/committed/acked_rows/commits/
    dropped_rows/disk_full_events/write_errors count since start(). The disk: `cap_bytes` is
    the cap now (`disk_cap_bytes` the one planned for the disk, lowered while `disk_full`),
    `reserve_bytes` the reserve held, `writes_failing` whether commits fail now."""
    ages = [a for a in (age(now, st.pending_since[p]) for p in PRIOS if st.pending[p]) if a is not None]
    highest = next((Priority(p) for p in PRIOS if st.pending[p]), None)
    return {
        "rows_pending": sum(st.pending),
        "rows_pending_by_priority": dict(zip(NAMES, st.pending, strict=True)),
        "rows_sealed": st.sealed_rows,
        "batches_unacked": st.batches,
        "bytes": st.bytes,
        "max_bytes": st.policy.max_bytes,
        "cap_bytes": st.cap,
        "disk_cap_bytes": st.plan.cap,
        "disk_budget_bytes": st.plan.budget,
        "reserve_bytes": st.reserve.held,
        "disk_full": st.full,
        "disk_full_events": st.full_events,
        "writes_failing": failing,
        "oldest_unsent_t": st.oldest_t,
        "oldest_pending_age_s": max(ages) if ages else None,
        "pending_priority": highest,
        "evicted_rows": dict(zip(NAMES, st.evicted, strict=True)),
        "evicted_batches": st.evicted_batches,
        "dropped_rows": dict(zip(NAMES, q.dropped, strict=True)),
        "appended": q.appended,
        "committed": q.committed,
        "acked_rows": st.acked_rows,
        "queue_len": q.uncommitted,
        "commits": st.commits,
        "next_seq": st.next_seq,
        "boot_epoch": st.boot_epoch,
        "write_errors": st.write_errors,
        "last_error": st.last_error,
    }
