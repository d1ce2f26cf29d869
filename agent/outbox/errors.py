"""What the outbox says back: its errors (a file it will not use, a closed or failed
outbox) and a sealed batch."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import Priority


class OutboxError(RuntimeError):
    """The outbox cannot be used (closed, or its writer failed)."""


class OutboxFileError(OutboxError):
    """The file is not an outbox this code may use; it was left untouched."""


class OutboxCorrupt(OutboxFileError):
    pass


class OutboxForeign(OutboxFileError):
    pass


class OutboxTooNew(OutboxFileError):
    pass


class OutboxBusy(OutboxFileError):
    pass


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed batch: its sequence number, signed-to-be payload, readings, priority, seal time."""

    seq: int
    payload: bytes
    count: int
    priority: Priority
    created_t: float
