"""Board profile `rpi4-rs485`: a Raspberry Pi 4 with a Waveshare 2-channel RS-485 HAT.

The HAT's SC16IS752 dual UART sits on SPI1 (`dtoverlay=sc16is752-spi1,int_pin=24`
in /boot/firmware/config.txt) and appears as /dev/ttySC0 and /dev/ttySC1 with
automatic direction control. The GPS receiver uses the Pi's PL011 UART on GPIO14/15
(/dev/serial0, `dtoverlay=disable-bt`) or a USB receiver (/dev/ttyACM0).
Contacts are dry contacts to ground on GPIOs with the internal pull-up, so a
closed contact reads False (configure `invert = true` for "closed = active").
Pins avoid SPI0 (GPIO7-11), SPI1 (GPIO18-21), the HAT interrupt (GPIO24), I2C
(GPIO2/3) and the UART (GPIO14/15).
"""

from boards.profile import BoardProfile

BOARD = BoardProfile(
    name="rpi4-rs485",
    description="Raspberry Pi 4 + Waveshare 2-CH RS485 HAT (SC16IS752 on SPI1)",
    ports={
        "rs485-1": "/dev/ttySC0",
        "rs485-2": "/dev/ttySC1",
        "gps": "/dev/serial0",
        "gps-usb": "/dev/ttyACM0",
    },
    pins={
        "door": "D5",
        "flood": "D6",
        "ups_on_battery": "D16",
        "ups_battery_low": "D17",
        "ups_replace_battery": "D22",
        "aux_out_1": "D26",
        "aux_out_2": "D27",
        "status_led": "D23",
    },
    dio="blinka",
    notes=(
        (
            "contactor coils are driven by the Modbus relay board through normally-closed contacts, "
            "so a dead controller leaves the lighting on (see docs)"
        ),
    ),
)
