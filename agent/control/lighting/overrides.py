"""Overrides: a person or the city cloud sets a segment on, off or to a level for a while.

Owns the override table. TALQ semantics: no numeric priority, the last override set
for a segment wins (it replaces the one before, which does not come back), an
explicit cancel returns the segment to its program, and every override has a start
(default: now) and an expiry (default: now + `default_expiry_s`, 8 h unless
configured). "Forever" must be asked for explicitly (`forever=True`).

Times: start and expiry are UTC. An override set while the clock is unknown runs on
a monotonic deadline and gets its UTC expiry as soon as the clock is known. After a
restart (`from_dict`) expired overrides are dropped; with the clock still unknown, a
restored timed override cannot be checked and stays dormant (not applied) until the
clock is known, while "forever" ones apply.

`to_dict()` / `from_dict()` give a JSON-safe form; the asyncio wrapper writes it to
the data dir after every change (`changed` counts changes). Pure: times are passed in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

UTC = dt.UTC
DEFAULT_EXPIRY_S = 8 * 3600.0
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Override:
    on: bool
    level: float | None = None  # None: on at 100 % (see `target`)
    start: float | None = None  # UTC seconds; None = when set (clock unknown)
    expires: float | None = None  # UTC seconds; None with forever=False: not known yet (clock unknown)
    forever: bool = False
    source: str = "local"
    note: str = ""
    set_at: float | None = None  # UTC seconds when it was set, if known
    deadline_mono: float | None = None  # runtime only: expiry on the monotonic clock

    @property
    def target(self) -> float:
        """The level it asks for: 0 for off, `level` or 100 for on."""
        if not self.on:
            return 0.0
        return 100.0 if self.level is None else self.level

    def describe(self) -> str:
        what = "off" if not self.on else f"on {self.target:g} %"
        until = "forever" if self.forever else (_iso(self.expires) if self.expires is not None else "(clock unknown)")
        return f"override {what} until {until} by {self.source}" + (f": {self.note}" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "level": self.level,
            "start": _iso(self.start),
            "expires": _iso(self.expires),
            "forever": self.forever,
            "source": self.source,
            "note": self.note,
            "set_at": _iso(self.set_at),
        }


class Overrides:
    """Per segment, the override that won last."""

    def __init__(self, segments: Iterable[str], default_expiry_s: float = DEFAULT_EXPIRY_S) -> None:
        self.segments = tuple(segments)
        self.default_expiry_s = default_expiry_s
        self._slots: dict[str, Override] = {}
        self.changed = 0

    def set(
        self,
        *,
        on: bool,
        utc: float | None,
        mono: float,
        level: float | None = None,
        segments: Iterable[str] | None = None,
        start: float | None = None,
        expires: float | None = None,
        duration_s: float | None = None,
        forever: bool = False,
        source: str = "local",
        note: str = "",
    ) -> Override:
        """Set an override on `segments` (None = all); ValueError for a bad request.

        Expiry: `expires` (UTC seconds), or `duration_s` from the start, or `forever`,
        else the default expiry.
        """
        targets = self._targets(segments)
        if level is not None:
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= 100:
                raise ValueError(f"level must be 0..100 %, got {level!r}")
            if level == 0:
                on, level = False, None
        if sum(x is not None and x is not False for x in (expires, duration_s, forever or None)) > 1:
            raise ValueError("give at most one of expires, duration_s, forever")
        if duration_s is not None and not (isinstance(duration_s, (int, float)) and 0 < duration_s < math.inf):
            raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
        begin, exp, deadline = self._span(utc, mono, start, expires, duration_s, forever)
        ov = Override(
            on=bool(on),
            level=None if level is None else float(level),
            start=begin,
            expires=exp,
            forever=forever,
            source=source,
            note=note,
            set_at=utc,
            deadline_mono=deadline,
        )
        for seg in targets:
            self._slots[seg] = ov
        self.changed += 1
        return ov

    def _span(
        self,
        utc: float | None,
        mono: float,
        start: float | None,
        expires: float | None,
        duration_s: float | None,
        forever: bool,
    ) -> tuple[float | None, float | None, float | None]:
        """(start, expiry in UTC seconds, expiry on the monotonic clock) of a new override;
        ValueError when the clock cannot place it."""
        begin = start if start is not None else utc
        if start is not None and utc is None:
            raise ValueError("a start time needs a known clock")
        if forever:
            return begin, None, None
        if expires is not None:
            if utc is None:
                raise ValueError("an absolute expiry needs a known clock; give duration_s")
            exp = float(expires)
            if begin is not None and exp <= begin:
                raise ValueError("expires must be after the start")
            return begin, exp, None
        span = float(duration_s if duration_s is not None else self.default_expiry_s)
        return begin, None if begin is None else begin + span, mono + span if start is None else None

    def cancel(self, segments: Iterable[str] | None = None) -> list[str]:
        """Cancel the overrides of `segments` (None = all); the segments that had one."""
        gone = [seg for seg in self._targets(segments) if self._slots.pop(seg, None) is not None]
        if gone:
            self.changed += 1
        return gone

    def active(self, segment: str, utc: float | None, mono: float) -> Override | None:
        if not self._slots:
            return None
        ov = self._slots.get(segment)
        if ov is None:
            return None
        if ov.forever:
            return ov if ov.start is None or utc is None or utc >= ov.start else None
        if utc is not None:
            if ov.expires is None and ov.deadline_mono is not None:  # set with no clock: now we know
                ov = replace(ov, expires=utc + (ov.deadline_mono - mono), start=ov.start or utc)
                self._fill(segment, ov)
            if ov.start is not None and utc < ov.start:
                return None
            return ov if ov.expires is not None and utc < ov.expires else None
        if ov.deadline_mono is not None:
            return ov if mono < ov.deadline_mono else None
        return None  # restored with no clock: cannot tell whether it expired

    def _fill(self, segment: str, new: Override) -> None:
        old = self._slots[segment]
        for seg, o in self._slots.items():
            if o is old:
                self._slots[seg] = new

    def prune(self, utc: float | None, mono: float) -> list[tuple[str, Override]]:
        """Drop expired overrides; returns (segment, override) for each dropped."""
        out = []
        for seg, ov in list(self._slots.items()):
            if ov.forever:
                continue
            expired = (utc is not None and ov.expires is not None and utc >= ov.expires) or (
                utc is None and ov.deadline_mono is not None and mono >= ov.deadline_mono
            )
            if expired:
                del self._slots[seg]
                out.append((seg, ov))
        if out:
            self.changed += 1
        return out

    def __len__(self) -> int:
        return len(self._slots)

    def items(self) -> dict[str, Override]:
        return dict(self._slots)

    def _targets(self, segments: Iterable[str] | None) -> tuple[str, ...]:
        if segments is None:
            return self.segments
        if isinstance(segments, str):
            segments = (segments,)
        segs = tuple(segments)
        unknown = [s for s in segs if s not in self.segments]
        if unknown or not segs:
            raise ValueError(f"unknown segment(s) {unknown or segs!r}; segments: {', '.join(self.segments)}")
        return segs

    # -- persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "segments": {seg: ov.to_dict() for seg, ov in sorted(self._slots.items())}}

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        segments: Iterable[str],
        utc: float | None,
        default_expiry_s: float = DEFAULT_EXPIRY_S,
    ) -> tuple[Overrides, list[str]]:
        """Rebuild from `to_dict()`; expired entries, unknown segments and malformed
        entries are dropped. Returns (overrides, notes on what was dropped)."""
        out = cls(segments, default_expiry_s)
        notes: list[str] = []
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            return out, ["override file ignored: unknown format"] if data else []
        raw = data.get("segments")
        for seg, d in raw.items() if isinstance(raw, Mapping) else ():
            if seg not in out.segments:
                notes.append(f"{seg}: no such segment any more")
                continue
            try:
                ov = Override(
                    on=bool(d["on"]),
                    level=_level(d.get("level")),
                    start=_ts(d.get("start")),
                    expires=_ts(d.get("expires")),
                    forever=bool(d.get("forever", False)),
                    source=str(d.get("source", "local")),
                    note=str(d.get("note", "")),
                    set_at=_ts(d.get("set_at")),
                )
            except (KeyError, TypeError, ValueError) as e:
                notes.append(f"{seg}: malformed override dropped ({e})")
                continue
            if not ov.forever and ov.expires is None:
                notes.append(f"{seg}: override without expiry dropped")
                continue
            if not ov.forever and utc is not None and ov.expires is not None and utc >= ov.expires:
                notes.append(f"{seg}: {ov.describe()} expired while stopped")
                continue
            out._slots[seg] = ov
        return out, notes


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, UTC).isoformat()


def _ts(v: Any) -> float | None:
    if v is None:
        return None
    t = dt.datetime.fromisoformat(v)
    if t.tzinfo is None:
        raise ValueError(f"time without UTC offset: {v!r}")
    return t.timestamp()


def _level(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
        raise ValueError(f"bad level {v!r}")
    return float(v)
