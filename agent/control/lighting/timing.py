"""The lighting controller's view of time: UTC seconds from what a caller hands in,
and the local time of day and calendar day (a night is one day) at a UTC instant.

`LocalDay.at(t)` looks the UTC offset up once per 15-minute slot (zone transitions
fall on quarter hours) and, inside one slot and one stretch of local time with the
same date and calendar day, costs only an addition. Pure: the zone comes in, no
clock is read.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

_EPOCH = dt.date(1970, 1, 1)


def utc_seconds(v: dt.datetime | float | None) -> float | None:
    """UTC seconds of an aware datetime or of seconds; None stays None (clock unknown)."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise ValueError("utc must be an aware datetime (or UTC seconds)")
        return v.timestamp()
    return float(v)


class LocalDay:
    """Local time of day and calendar day at UTC instants, for one zone and day start."""

    __slots__ = ("_days", "_offset", "_window", "day_start_s", "tz")

    def __init__(self, tz: ZoneInfo, day_start: dt.time) -> None:
        self.tz = tz
        self.day_start_s = day_start.hour * 3600 + day_start.minute * 60
        self._offset: tuple[int, float] = (-1, 0.0)  # (15-minute UTC slot, UTC offset in it)
        # (UTC slot start, end, offset, local from, local until, local midnight, calendar day): see `at`
        self._window: tuple[float, float, float, float, float, float, dt.date] = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, _EPOCH)
        self._days: dict[int, dt.date] = {}  # days since the epoch -> date

    def at(self, t: float) -> tuple[float, dt.date]:
        """(local time of day in seconds, calendar day) at UTC `t`."""
        t_lo, t_hi, off, lo, hi, base, day = self._window
        if t_lo <= t < t_hi:
            local = t + off
            if lo <= local < hi:
                return local - base, day  # = divmod(local, 86400)[1]: both exact
        slot = int(t // 900)
        if slot != self._offset[0]:
            o = dt.datetime.fromtimestamp(slot * 900.0, self.tz).utcoffset()
            self._offset = (slot, o.total_seconds() if o is not None else 0.0)
        off = self._offset[1]
        local = t + off
        days, tod = divmod(local, 86400.0)
        base = days * 86400.0
        start = self.day_start_s
        lo, hi = (base, base + start) if tod < start else (base + start, base + 86400.0)
        if tod < start:
            days -= 1
        day = self._days.get(int(days)) or self._day(int(days))
        self._window = (slot * 900.0, slot * 900.0 + 900.0, off, lo, hi, base, day)
        return tod, day

    def _day(self, days: int) -> dt.date:
        if len(self._days) > 1024:
            self._days.clear()
        d = self._days[days] = _EPOCH + dt.timedelta(days=days)
        return d
