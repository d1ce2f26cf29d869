"""What the outbox says back: its errors (a file it will not use, a closed or failed
outbox, a write the disk refused) and a sealed batch."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agent.model import Priority

SQLITE_FULL = 13
SQLITE_IOERR_SHMSIZE = 4874  # no room to grow the WAL index (-shm): the disk is full


def is_full(e: BaseException) -> bool:
    """True when SQLite failed for want of disk space ("database or disk is full", which
    max_page_count also raises, or no room for the WAL index)."""
    code = getattr(e, "sqlite_errorcode", 0) if isinstance(e, sqlite3.OperationalError) else 0
    return code & 0xFF == SQLITE_FULL or code == SQLITE_IOERR_SHMSIZE


class OutboxError(RuntimeError):
    """The outbox cannot be used (closed, or its writer failed)."""


class OutboxWriteError(OutboxError):
    """A write (seal, ack) failed and was rolled back: nothing changed, the same call may be
    retried later (an I/O error, the disk full)."""


class OutboxFull(OutboxWriteError):
    """The disk is full and the outbox could not make room with what it holds this time;
    it keeps trying, and seal/ack work again once the disk has room."""


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
