"""The astronomical clock at the site: tonight's sunset and sunrise, polar day and night.

Owns the sun. Time is split into *astro days*: astro day D runs from solar noon of
local date D to solar noon of D+1, so one night always belongs to one astro day (the
day of its evening), also where the sun sets after local midnight. For each astro
day `night_of(D)` gives the dark interval [dark_from, dark_until):

* normal: dark_from = the first sunset after solar noon of D, dark_until = the first
  sunrise after it (both searched on local dates D and D+1, always in the site's
  IANA time zone, as domain.md §5.2 requires);
* polar night (sun below the horizon at solar noon): dark for the whole astro day;
* polar day (sun above the horizon at solar midnight): no dark interval;
* transitions (the sun sets but does not rise before the next noon, or the other
  way round) are cut at the astro day's ends, so consecutive days join up.

Polar cases are decided from the solar elevation at noon and midnight (which astral
always computes); astral's ValueError for a missing event only means "no such event
that date" and its message is never read. If astral and the elevations disagree
(astral issue #74) the crossing is found from `elevation()` by search. Nothing here
raises for any latitude or date.

Times are floats (seconds since the epoch, UTC) for speed; `Night.as_dict()` gives
ISO strings for status and events. GPS refinement: `refine(fix)`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import elevation as _elevation
from astral.sun import midnight as _midnight
from astral.sun import noon as _noon
from astral.sun import sunrise as _sunrise
from astral.sun import sunset as _sunset

HORIZON = -0.833  # degrees: sunrise/sunset (refraction and the solar disc)
DAY_ELEVATION, NIGHT_ELEVATION = 3.0, -6.0  # phase(): "day" at or above, "night" at or below, else "twilight"
# How fast astral's elevation() can change, for phase(): the geometric elevation changes at most at
# 15 deg/h x cos(latitude) (dh/dt = -cos(lat) sin(azimuth) dH/dt; the declination's drift is far
# below 1e-4 deg/s); the refraction correction adds up to 100 % of that just below the horizon but
# under 7 % at 2.9 deg and above or -6 deg and below. _rate() has 25 % headroom on that; _SLACK
# covers the refraction formula's small steps.
_SLACK = 0.05  # deg


def _rate(latitude: float, twilight: bool) -> float:
    """deg/s: a bound on |d elevation()/dt| at `latitude` (astral clamps it to +-89.8) while the
    sun stays in the twilight band (-6..3 deg) or, twilight=False, outside it."""
    return 1.25 * (2.0 if twilight else 1.1) * 15.1 / 3600.0 * math.cos(math.radians(min(abs(latitude), 89.8))) + 1e-4


UTC = dt.UTC
_DAY = dt.timedelta(days=1)


class GpsFix(NamedTuple):
    """A position fix (what the GPS points give): degrees, metres."""

    latitude: float
    longitude: float
    altitude: float | None = None


@dataclass(frozen=True, slots=True)
class Night:
    """Astro day `day` (local date of the evening): its span and its dark interval (UTC seconds)."""

    day: dt.date
    noon: float  # solar noon of `day`: the span starts here
    next_noon: float  # solar noon of the next day: the span ends here
    sunset: float | None  # the real event, if there is one in the span
    sunrise: float | None
    dark_from: float | None  # None: no darkness in this span (polar day)
    dark_until: float | None  # None exactly when dark_from is; else after dark_from
    kind: str  # "normal", "polar_night", "polar_day"
    noon_elevation: float
    midnight_elevation: float

    def dark(self, t: float) -> bool:
        return self.dark_from is not None and self.dark_until is not None and self.dark_from <= t < self.dark_until

    def as_dict(self) -> dict[str, Any]:
        def iso(x: float | None) -> str | None:
            return None if x is None else dt.datetime.fromtimestamp(x, UTC).isoformat()

        return {
            "day": self.day.isoformat(),
            "kind": self.kind,
            "sunset": iso(self.sunset),
            "sunrise": iso(self.sunrise),
            "dark_from": iso(self.dark_from),
            "dark_until": iso(self.dark_until),
            "noon_elevation": round(self.noon_elevation, 2),
            "midnight_elevation": round(self.midnight_elevation, 2),
        }


class AstroClock:
    """Sun events at one site. `max_refine_km` bounds how far a GPS fix may move it."""

    def __init__(
        self,
        latitude: float,
        longitude: float,
        elevation: float = 0.0,
        timezone: str = "UTC",
        max_refine_km: float = 50.0,
    ) -> None:
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone
        self.configured = (float(latitude), float(longitude), float(elevation))
        self.max_refine_km = max_refine_km
        self.refine_note: str | None = None
        self._set(latitude, longitude, elevation)

    def _set(self, latitude: float, longitude: float, elevation: float) -> None:
        self.latitude, self.longitude, self.elevation_m = float(latitude), float(longitude), float(elevation)
        self._obs = Observer(self.latitude, self.longitude, max(0.0, self.elevation_m))
        self._cache: dict[dt.date, Night] = {}
        self._current: Night | None = None
        self._phase: tuple[float, float, str] = (1.0, -1.0, "")  # [lo, hi]: phase certain there
        self._rates = (_rate(self.latitude, False), _rate(self.latitude, True))

    # -- GPS ----------------------------------------------------------------------------

    def refine(self, fix: Any) -> bool:
        """Move the site to a GPS fix (anything with latitude, longitude, optional altitude).

        Accepted only if it is a plausible position within `max_refine_km` of the
        configured coordinates (a fix far away is a wrong config or a bad receiver:
        `refine_note` says which was refused). Returns True when the site moved.
        """
        try:
            lat, lon = float(fix.latitude), float(fix.longitude)
            alt = getattr(fix, "altitude", None)
            alt = None if alt is None else float(alt)
        except (AttributeError, TypeError, ValueError):
            self.refine_note = f"fix refused: not a position ({fix!r})"
            return False
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            self.refine_note = f"fix refused: latitude/longitude out of range ({lat}, {lon})"
            return False
        if alt is not None and not (math.isfinite(alt) and -500 <= alt <= 9000):
            alt = None
        km = distance_km(self.configured[0], self.configured[1], lat, lon)
        if km > self.max_refine_km:
            self.refine_note = (
                f"fix refused: {km:.1f} km from the configured site (more than {self.max_refine_km:g} km; check [site])"
            )
            return False
        new_alt = self.elevation_m if alt is None else alt
        if (
            abs(lat - self.latitude) < 1e-3
            and abs(lon - self.longitude) < 1e-3
            and abs(new_alt - self.elevation_m) < 50
        ):
            self.refine_note = None
            return False
        self.refine_note = f"site refined by GPS: {lat:.5f}, {lon:.5f} ({km:.2f} km from config)"
        self._set(lat, lon, new_alt)
        return True

    # -- the sun ----------------------------------------------------------------------------

    def elevation(self, t: float) -> float:
        """Solar elevation in degrees (with refraction) at UTC seconds `t`."""
        return _elevation(self._obs, dt.datetime.fromtimestamp(t, UTC))

    def phase(self, t: float) -> str:
        """ "day" / "night" / "twilight" at UTC `t`, exactly as from elevation(t). Each computed
        elevation certifies its phase for as long as the sun cannot have left it (_rate), so
        elevation() runs rarely, except close to the thresholds (astral uses whole seconds: + 1 s)."""
        lo, hi, phase = self._phase
        if lo <= t <= hi:
            return phase
        e = self.elevation(t)
        if e >= DAY_ELEVATION:
            phase, margin = "day", e - DAY_ELEVATION
        elif e <= NIGHT_ELEVATION:
            phase, margin = "night", NIGHT_ELEVATION - e
        else:
            phase, margin = "twilight", min(e - NIGHT_ELEVATION, DAY_ELEVATION - e)
        # while the phase holds the sun stays in its band, where the rate bound for that band holds
        r = max(0.0, (margin - _SLACK) / self._rates[phase == "twilight"] - 1.0)  # seconds either side of t
        self._phase = (t - r, t + r, phase)
        return phase

    def local_date(self, t: float) -> dt.date:
        return dt.datetime.fromtimestamp(t, self.tz).date()

    def night_at(self, t: float) -> Night:
        """The astro day whose span [noon, next_noon) holds `t`."""
        cur = self._current
        if cur is not None and cur.noon <= t < cur.next_noon:
            return cur
        night = self.night_of(self.local_date(t))
        if t < night.noon:
            night = self.night_of(night.day - _DAY)
        elif t >= night.next_noon:
            night = self.night_of(night.day + _DAY)
        self._current = night
        return night

    def night_of(self, day: dt.date) -> Night:
        night = self._cache.get(day)
        if night is None:
            if len(self._cache) > 16:
                self._cache.clear()
            night = self._cache[day] = self._compute(day)
        return night

    def _event(self, fn: Callable[..., dt.datetime], day: dt.date) -> float | None:
        try:
            return fn(self._obs, day, tzinfo=self.tz).timestamp()
        except ValueError:  # no such event on that local date; the elevations decide what that means
            return None

    def _compute(self, day: dt.date) -> Night:
        obs, tz = self._obs, self.tz
        noon = _noon(obs, day, tzinfo=tz).timestamp()
        next_noon = _noon(obs, day + _DAY, tzinfo=tz).timestamp()
        midnight = _midnight(obs, day + _DAY, tzinfo=tz).timestamp()
        if not noon < midnight < next_noon:  # cannot happen with astral 3.2; keep the search sane anyway
            midnight = (noon + next_noon) / 2
        e_noon, e_mid, e_next = self.elevation(noon), self.elevation(midnight), self.elevation(next_noon)

        sunset = _first_in((self._event(_sunset, day), self._event(_sunset, day + _DAY)), noon, next_noon)
        sunrise = _first_in(
            (self._event(_sunrise, day), self._event(_sunrise, day + _DAY)),
            sunset if sunset is not None else noon,
            next_noon,
        )
        dark_from: float | None = sunset
        if dark_from is None:
            if e_noon < HORIZON:
                dark_from = noon
            elif e_mid < HORIZON:
                dark_from = self._crossing(noon, midnight, rising=False)
        dark_until: float | None = sunrise
        if dark_from is None:
            dark_until = None
        elif dark_until is None:
            if e_next < HORIZON:
                dark_until = next_noon
            else:
                dark_until = self._crossing(
                    max(dark_from, midnight if e_mid < HORIZON else dark_from), next_noon, rising=True
                )
        if dark_from is not None and (dark_until is None or dark_until <= dark_from):
            dark_from = dark_until = None
        if dark_from is None:
            kind = "polar_day"
        elif dark_from == noon and dark_until == next_noon:
            kind = "polar_night"
        else:
            kind = "normal"
        return Night(day, noon, next_noon, sunset, sunrise, dark_from, dark_until, kind, e_noon, e_mid)

    def _crossing(self, a: float, b: float, rising: bool) -> float | None:
        """First time in [a, b] the sun crosses the horizon (rising or setting), by scan and bisection."""
        step = 600.0
        t0, e0 = a, self.elevation(a)
        t = a
        while t < b:
            t = min(b, t + step)
            e = self.elevation(t)
            if (e >= HORIZON > e0) if rising else (e < HORIZON <= e0):
                lo, hi = t0, t
                for _ in range(12):
                    mid = (lo + hi) / 2
                    below = self.elevation(mid) < HORIZON
                    if below == rising:
                        lo = mid
                    else:
                        hi = mid
                return hi
            t0, e0 = t, e
        return None


def _first_in(candidates: tuple[float | None, ...], after: float, before: float) -> float | None:
    found = [c for c in candidates if c is not None and after < c < before]
    return min(found) if found else None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))
