"""The anti-condensation heater's rules for the climate controller (docs/climate.md).

Highest first: never on at or above `max_c` (allowed again `max_band_k` lower); on at
or below `min_c` (off again `min_band_k` higher); on while there is a condensation
risk: the dew-point margin T - Td below `on_margin_k` or RH above `on_rh`, until the
margin is above `off_margin_k` and RH below `off_rh`; else off. With a failed
temperature sensor the last good reading decides for at most `hold_s`; with a failed
humidity sensor the last good dew point does, as long. Pure: `now` is monotonic time.
"""

from __future__ import annotations

from agent.control.alarms.model import Hysteresis
from agent.control.climate.parts import SensorWatch, rh_from_dew_point
from agent.control.climate.settings import HeaterSettings


class HeaterRules:
    """The heater's wish (on/off and why) each step; see the module docstring."""

    __slots__ = ("_cold_h", "_hot_h", "_last_td", "_last_td_at", "cold", "damp", "h", "hold_s", "hot")

    def __init__(self, heater: HeaterSettings, hold_s: float) -> None:
        self.h = heater
        self.hold_s = hold_s
        self._cold_h = Hysteresis(heater.min_c, heater.min_c + heater.min_band_k)
        self._hot_h = Hysteresis(heater.max_c, heater.max_c - heater.max_band_k)
        self.cold = self.hot = self.damp = False
        self._last_td: float | None = None  # the last good dew point and when it was seen
        self._last_td_at = -float("inf")

    def want(
        self, now: float, t: float | None, rh: float | None, td: float | None, starting: bool, tw: SensorWatch
    ) -> tuple[bool, str]:
        """On or off, and why. `t`, `rh`, `td`: this step's good values (None: none);
        `starting`: no temperature yet; `tw` watches the temperature (its last good reading)."""
        h, hold = self.h, self.hold_s
        if td is not None:
            self._last_td, self._last_td_at = td, now
        basis = ""
        if t is None:
            if starting or tw.last is None or tw.last_at is None:
                return False, "waiting for the temperature sensor"
            if now - tw.last_at > hold:
                return False, f"temperature sensor failed more than {hold:g} s ago: heater off"
            t, basis = tw.last, " (last good reading)"
        if td is None and self._last_td is not None and now - self._last_td_at <= hold:
            td, rh = self._last_td, None
            basis = basis or " (last good dew point)"
        self.cold = self._cold_h.next(self.cold, t)
        self.hot = self._hot_h.next(self.hot, t)
        if td is not None:
            margin = t - td
            rh_now = rh if rh is not None else rh_from_dew_point(t, td)
            if self.damp:
                self.damp = not (margin > h.off_margin_k and rh_now < h.off_rh)
            else:
                self.damp = margin < h.on_margin_k or rh_now > h.on_rh
            damp_text = f"dew-point margin {margin:.1f} K, RH {rh_now:.0f} %"
        else:
            self.damp = False
            damp_text = "no humidity"
        if self.hot:
            return False, f"{t:.1f} °C: heater blocked at {h.max_c:g} °C{basis}"
        if self.cold:
            return True, f"{t:.1f} °C: below minimum {h.min_c:g} °C{basis}"
        if self.damp:
            return True, f"condensation risk: {damp_text}{basis}"
        return False, f"dry: {damp_text}{basis}"
