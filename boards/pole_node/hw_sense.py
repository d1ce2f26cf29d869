"""The node's sensors and outputs on the board: lamp voltage and current on two ADC inputs,
a LIS3DH accelerometer and a BH1750 lux sensor on I2C, the door switch, the lamp relay and the
0-10 V / PWM dimming output. Thin: the arithmetic is in metering.py and detect.py.
"""

import time

from machine import ADC, I2C, PWM, Pin

from . import detect, metering

LIS3DH = 0x18
BH1750 = 0x23
SAMPLES = 80  # about two mains cycles at the ADC's pace here


class Sensors:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.adc_v = ADC(cfg["adc_voltage"])
        self.adc_i = ADC(cfg["adc_current"])
        self.door_pin = Pin(cfg["door_pin"], Pin.IN, Pin.PULL_UP)  # switch closes to ground when shut
        self.i2c = I2C(cfg["i2c"], scl=Pin(cfg["scl_pin"]), sda=Pin(cfg["sda_pin"]), freq=100000)
        self.relay = Pin(cfg["relay_pin"], Pin.OUT, value=0)
        self.dim = PWM(Pin(cfg["dim_pin"]), freq=1000, duty_u16=0)
        self.v = [0] * SAMPLES
        self.i = [0] * SAMPLES
        try:
            self.i2c.writeto_mem(LIS3DH, 0x20, b"\x57")  # 100 Hz, x/y/z on
            self.i2c.writeto_mem(LIS3DH, 0x23, b"\x08")  # high resolution, ±2 g
        except OSError:
            pass
        try:
            self.i2c.writeto(BH1750, b"\x10")  # continuous high-resolution mode
        except OSError:
            pass

    def power(self) -> tuple[float, float, float, float]:
        for k in range(SAMPLES):
            self.v[k] = self.adc_v.read_u16()
            self.i[k] = self.adc_i.read_u16()
            time.sleep_us(200)
        c = self.cfg
        return metering.measure(self.v, self.i, c["adc_offset"], c["volts_per_count"], c["amps_per_count"])

    def lux(self) -> int | None:
        try:
            raw = self.i2c.readfrom(BH1750, 2)
        except OSError:
            return None
        return int(((raw[0] << 8) | raw[1]) / 1.2)

    def tilt(self) -> int:
        try:
            raw = self.i2c.readfrom_mem(LIS3DH, 0x28 | 0x80, 6)
        except OSError:
            return 0
        axes = []
        for k in (0, 2, 4):
            value = raw[k] | (raw[k + 1] << 8)
            if value & 0x8000:
                value -= 0x10000
            axes.append(value >> 4)  # 12-bit, 1 mg per digit at ±2 g
        return detect.tilt_decideg(axes[0], axes[1], axes[2])

    def door(self) -> bool:
        return self.door_pin.value() == 1  # open: the pull-up wins

    def drive(self, level: int) -> None:
        self.relay.value(1 if level > 0 else 0)
        self.dim.duty_u16(level * 65535 // 100)
