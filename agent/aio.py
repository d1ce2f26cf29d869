"""asyncio helpers that stay correct under cancellation on Python 3.11.

On 3.11, `asyncio.wait_for` can swallow a cancellation that races with the awaited
thing finishing (fixed in 3.12), and a loop that waits that way may then never stop.
`wait_within` and `wait_event` use asyncio.wait instead, which always lets
CancelledError through; `cancel_all` cancels again until tasks are really done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any


async def wait_within(aw: Awaitable[Any], timeout: float) -> tuple[bool, Any]:
    """(True, result) if `aw` finished within `timeout` seconds, else (False, None) (it is cancelled)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        return False, None
    return True, task.result()


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True if `event` was set within `timeout` seconds."""
    if event.is_set():
        return True
    return (await wait_within(event.wait(), timeout))[0]


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], rounds: int = 100) -> None:
    """Cancel tasks and wait until they are done, cancelling again if a cancellation
    was swallowed (see above)."""
    tasks = list(tasks)
    pending = [t for t in tasks if not t.done()]
    for _ in range(rounds):
        if not pending:
            break
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=0.1)
        pending = [t for t in pending if not t.done()]
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" noise
