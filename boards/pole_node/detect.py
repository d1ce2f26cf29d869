"""Local decisions from the node's own measurements: lamp failure, driver fault, day burner,
cycling, tilt; burning time, switch-on count and energy. Pure: `now_ms` is a parameter.

A condition must hold for HOLD_MS before its bit is set and be gone for HOLD_MS before it is
cleared, so one odd sample neither raises nor clears an alarm.
"""

import math

HOLD_MS = 30000
TILT_HOLD_MS = 2000
CYCLE_WINDOW_MS = 3600000
SUPPLY_PRESENT_V = 150.0  # below this the supply is lost: no lamp judgement
BURNING = 0.03  # burning: drawing at least this share of the nominal power (above a driver's standby)
LOW = 0.3  # lamp failure / driver fault: under this share of the power expected at the driven level
NO_CURRENT = 0.05  # lamp failure: under this share of the expected current (else the driver is at fault)


def tilt_decideg(x: int, y: int, z: int) -> int:
    """Tilt from vertical in 0.1 ° from an accelerometer's axes (z along the pole)."""
    horizontal = math.sqrt(x * x + y * y)
    if horizontal == 0 and z == 0:
        return 0
    return int(math.degrees(math.atan2(horizontal, z)) * 10 + 0.5)


class Debounced:
    """A boolean that follows its input only after the input held for `hold_ms`."""

    def __init__(self, hold_ms: int) -> None:
        self.hold_ms = hold_ms
        self.state = False
        self.since: int | None = None

    def update(self, raw: bool, now_ms: int) -> bool:
        if raw == self.state:
            self.since = None
        elif self.since is None:
            self.since = now_ms
        elif now_ms - self.since >= self.hold_ms:
            self.state = raw
            self.since = None
        return self.state


class Detector:
    def __init__(self, now_ms: int) -> None:
        self.lamp_failure = Debounced(HOLD_MS)
        self.driver_fault = Debounced(HOLD_MS)
        self.day_burner = Debounced(HOLD_MS)
        self.tilted = Debounced(TILT_HOLD_MS)
        self.cycling = False
        self.outages: list[int] = []  # times the lamp went out by itself (within the window)
        self.burning = False
        self.last_ms = now_ms
        self.burn_ms = 0  # burning time not yet counted in whole seconds
        self.burn_s = 0  # total burning seconds
        self.energy_mwh = 0.0  # total energy in mWh (float: sub-Wh steps add up)
        self.switch_ons = 0

    def update(
        self,
        now_ms: int,
        level: int,
        volts: float,
        amps: float,
        watts: float,
        nominal_w: int,
        lux: int | None,
        dawn_lux: int,
        tilt: int,
        tilt_alarm_deg: int,
        cycling_count: int,
    ) -> None:
        dt = max(0, now_ms - self.last_ms)
        self.last_ms = now_ms
        supply = volts >= SUPPLY_PRESENT_V
        expected = nominal_w * level / 100.0
        burning = watts >= BURNING * nominal_w
        if self.burning:
            self.burn_ms += dt
            self.burn_s += self.burn_ms // 1000
            self.burn_ms %= 1000
        self.energy_mwh += watts * dt / 3600.0
        if burning and not self.burning:
            self.switch_ons += 1
        if self.burning and not burning and level > 0 and supply:
            self.outages.append(now_ms)  # went out while driven on, with supply: by itself
        self.burning = burning
        while self.outages and now_ms - self.outages[0] > CYCLE_WINDOW_MS:
            self.outages.pop(0)
        if len(self.outages) > cycling_count:
            self.outages.pop(0)
        self.cycling = len(self.outages) >= cycling_count
        low = supply and level > 0 and watts < LOW * expected
        no_current = amps < NO_CURRENT * expected / max(volts, 1.0)
        self.lamp_failure.update(low and no_current, now_ms)
        self.driver_fault.update(low and not no_current, now_ms)
        daylight = lux is not None and lux > dawn_lux
        self.day_burner.update(burning and (level == 0 or daylight), now_ms)
        self.tilted.update(tilt > tilt_alarm_deg * 10, now_ms)
