"""Board profile `sim`: the simulated cabinet's ports and pins.

Its ports are pseudo-terminals the simulator creates at run time (one per RTU bus
of the config, plus the GPS); its pins are files in the simulator's pins
directory (drivers.dio.FilePinsDIO), which the plant model writes.
"""

from boards.profile import BoardProfile

BOARD = BoardProfile(
    name="sim",
    description="The simulated cabinet (pymodbus servers on ptys and loopback TCP, NMEA on a pty, file pins)",
    ports={"rs485-1": "", "rs485-2": "", "gps": ""},
    pins={
        name: name
        for name in (
            "door",
            "flood",
            "ups_on_battery",
            "ups_battery_low",
            "ups_replace_battery",
            "aux_out_1",
            "aux_out_2",
        )
    },
    dio="files",
)
