"""The node's main loop on the board: serve the bus, measure, decide, drive, feed the
watchdog. The bundle's /main.py runs `pole_node.main.run()` at boot.
"""

import json
import time

from machine import WDT

from . import config
from .hw_bus import Rs485
from .hw_sense import Sensors
from .hw_store import FileFlash
from .node import PoleNode

MEASURE_MS = 1000
WATCHDOG_MS = 8000


def load_config() -> dict:
    with open("/" + config.FILE) as f:
        cfg, errors = config.check(json.load(f))
    if errors:
        raise ValueError("; ".join(errors))
    return cfg


def run() -> None:
    cfg = load_config()
    wdt = WDT(timeout=WATCHDOG_MS)
    bus = Rs485(cfg)
    sensors = Sensors(cfg)
    now = 0  # milliseconds since boot, without the ticks wrap-around
    last = time.ticks_ms()
    node = PoleNode(cfg["address"], FileFlash(), now)
    next_measure = 0
    while True:
        tick = time.ticks_ms()
        now += time.ticks_diff(tick, last)
        last = tick
        frame = bus.frame()
        if frame is not None:
            reply = node.request(frame, now)
            if reply is not None:
                bus.send(reply)
        if now >= next_measure:
            volts, amps, watts, pf = sensors.power()
            level = node.update(now, volts, amps, watts, pf, sensors.lux(), sensors.tilt(), sensors.door())
            sensors.drive(level)
            next_measure = now + MEASURE_MS
        wdt.feed()
