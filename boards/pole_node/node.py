"""The pole node's logic as one object: Modbus requests in, replies out; measurements in,
the level to drive out; settings and counters kept in flash. Pure: no `machine`, no clock
(`now_ms` is a parameter), flash behind settings.Flash. The hardware loop (main.py) and the
simulator drive the same object.
"""

from . import VERSION, regmap, settings
from .detect import Detector
from .failsafe import FailSafe
from .slave import Slave

SAVE_QUIET_MS = 2000  # settings are written once writes have stopped this long ...
SAVE_MAX_MS = 60000  # ... or at the latest this long after the first unsaved change
COUNTERS_EVERY_MS = 12 * 3600 * 1000  # burning time and energy every 12 h, and at a switch-off ...
COUNTERS_GAP_MS = 10 * 60 * 1000  # ... unless they were written less than this ago (a cycling lamp)


def _u32(value: float) -> tuple[int, int]:
    value = max(0, min(int(value), 0xFFFFFFFF))
    return (value >> 16) & 0xFFFF, value & 0xFFFF


def _clip(value: float) -> int:
    return max(0, min(int(value + 0.5), 0xFFFF))


class PoleNode:
    def __init__(self, unit: int, flash: settings.Flash, now_ms: int) -> None:
        self.slave = Slave(unit)
        self.failsafe = FailSafe(now_ms)
        self.detector = Detector(now_ms)
        self.store = settings.Store(flash, "settings", settings.SETTINGS)
        self.counter_store = settings.Store(flash, "counters", settings.COUNTERS)
        self.holding = regmap.defaults()
        self.inputs = [0] * regmap.INPUT_COUNT
        self.defaulted = True
        for record in self.store.candidates():
            image = [0] + list(record[1])  # noqa: RUF005 (no * in list displays in MicroPython)
            if len(image) == regmap.HOLDING_COUNT and regmap.check_block(image) is None:
                self.holding[regmap.SETTINGS_FIRST :] = self.store.use(record)
                self.defaulted = False
                break
        self.saved = self.holding[regmap.SETTINGS_FIRST :]  # the settings as in flash (or the defaults)
        counters = self.counter_store.load()
        if counters is not None and len(counters) == 6:
            self.detector.burn_s = (counters[0] << 16) | counters[1]
            self.detector.energy_mwh = float(((counters[2] << 16) | counters[3]) * 1000)
            self.detector.switch_ons = (counters[4] << 16) | counters[5]
        self.dirty_since: int | None = None
        self.last_write_ms = now_ms
        self.counters_ms = now_ms
        self.level = 0
        self.lux_fault = False
        self.door = False
        self.tilt = 0
        self.volts = self.amps = self.watts = self.pf = 0.0
        self.lux: int | None = None

    # ------------------------------------------------------------------ the bus side

    def request(self, frame: bytes, now_ms: int) -> bytes | None:
        """One whole request frame; the reply to send (after the turnaround gap), or None."""
        self.refresh(now_ms)
        reply, wrote, for_us = self.slave.handle(frame, self.inputs, self.holding)
        if for_us:
            self.failsafe.polled_at(now_ms)
        if wrote == regmap.LEVEL_COMMAND:
            self.failsafe.commanded = True
        if wrote >= 0:
            self.last_write_ms = now_ms
            if self.dirty_since is None and self.holding[regmap.SETTINGS_FIRST :] != self.saved:
                self.dirty_since = now_ms
        return reply

    # ------------------------------------------------------------------ the lamp side

    def update(
        self,
        now_ms: int,
        volts: float,
        amps: float,
        watts: float,
        pf: float,
        lux: int | None,
        tilt: int,
        door: bool,
    ) -> int:
        """New measurements; returns the level (0..100 %) to drive now."""
        h = self.holding
        self.volts, self.amps, self.watts, self.pf = volts, amps, watts, pf
        self.lux, self.lux_fault, self.tilt, self.door = lux, lux is None, tilt, door
        was_burning = self.detector.burning
        self.detector.update(now_ms, self.level, volts, amps, watts, h[7], lux, h[4], tilt, h[6], h[8])
        self.failsafe.see_lux(now_ms, lux, h[3], h[4], h[5])
        self.level = self.failsafe.level(now_ms, h[regmap.LEVEL_COMMAND], h[1], h[2])
        since = now_ms - self.counters_ms
        switched_off = was_burning and not self.detector.burning
        if (switched_off and since >= COUNTERS_GAP_MS) or since >= COUNTERS_EVERY_MS:
            self.save_counters(now_ms)
        self.persist(now_ms)
        self.refresh(now_ms)
        return self.level

    def persist(self, now_ms: int) -> bool:
        """Write changed settings to flash when writes have quietened; True if written."""
        if self.dirty_since is None:
            return False
        quiet = now_ms - self.last_write_ms >= SAVE_QUIET_MS
        if not quiet and now_ms - self.dirty_since < SAVE_MAX_MS:
            return False
        self.dirty_since = None
        self.saved = self.holding[regmap.SETTINGS_FIRST :]
        written = self.store.save(self.saved)
        self.defaulted = self.defaulted and not written  # settings of its own in flash now
        return written

    def save_counters(self, now_ms: int) -> None:
        d = self.detector
        self.counters_ms = now_ms
        self.counter_store.save(list(_u32(d.burn_s) + _u32(d.energy_mwh / 1000) + _u32(d.switch_ons)))

    def status(self, now_ms: int) -> int:
        d = self.detector
        bits = 0
        for on, bit in (
            (d.lamp_failure.state, regmap.LAMP_FAILURE),
            (d.day_burner.state, regmap.DAY_BURNER),
            (d.cycling, regmap.CYCLING),
            (d.driver_fault.state, regmap.DRIVER_FAULT),
            (d.tilted.state, regmap.TILT),
            (self.door, regmap.DOOR_OPEN),
            (self.failsafe.silent(now_ms, self.holding[1]), regmap.CABINET_SILENT),
            (self.defaulted, regmap.SETTINGS_DEFAULTED),
            (self.lux_fault, regmap.LUX_FAULT),
        ):
            if on:
                bits |= bit
        return bits

    def refresh(self, now_ms: int) -> None:
        """The input registers from the latest state."""
        d = self.detector
        r = self.inputs
        r[0], r[1], r[2], r[3] = (
            _clip(self.volts * 10),
            _clip(self.amps * 1000),
            _clip(self.watts * 10),
            _clip(self.pf * 1000),
        )
        r[4], r[5] = _u32(d.energy_mwh / 1000)
        r[6], r[7] = _u32(d.burn_s // 3600)
        r[8], r[9] = _u32(d.switch_ons)
        r[10] = self.level if d.burning else 0
        r[11] = self.level
        r[12] = 2 if d.lamp_failure.state or d.driver_fault.state else (1 if d.burning else 0)
        r[13] = _clip(self.tilt)
        r[14] = 1 if self.door else 0
        r[15] = _clip(self.lux or 0)
        r[16] = self.status(now_ms)
        r[17] = _clip(self.failsafe.silent_for_s(now_ms))
        r[18] = VERSION[0] * 256 + VERSION[1]
        r[19] = self.store.seq & 0xFFFF
