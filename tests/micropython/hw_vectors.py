"""The firmware's hardware half (main, hw_bus, hw_sense, hw_store) run under the WebAssembly
MicroPython against the stand-in `machine` module (machine.py here): the whole loop boots from
its config file, answers a request on the bus with the direction pin around the reply, and
drives the lamp by its fail-safe. MicroPython only (run_vectors.mjs with machine.py); not
type-checked by the CPython mypy (setup.cfg's exclude): `machine` and time.ticks_ms are MicroPython's."""

import json
import time

import machine


def _boot(requests: list, loops: int) -> None:
    with open("/pole_config.json", "w") as f:
        json.dump({"address": 7, "baudrate": 9600, "parity": "E"}, f)
    machine.UART.incoming = list(requests)
    machine.UART.sent = []
    machine.Pin.history = []
    machine.PWM.duty = []
    machine.WDT.feeds_left = loops
    main = __import__("boards.pole_node.main", None, None, ["run"])
    try:
        main.run()
    except machine.StopLoop:
        pass


def _req(body: bytes) -> bytes:
    from boards.pole_node import rtu

    return rtu.with_crc(body)


def test_main_loop_answers_the_cabinet_and_drives_the_lamp() -> None:
    from boards.pole_node import rtu

    request = _req(bytes((7, 4, 0, 0, 0, 20)))
    other = _req(bytes((8, 4, 0, 0, 0, 20)))
    start = time.ticks_ms()
    _boot([1000, request[:5], 500, request[5:], 10000, other, 10000, request], 40)  # µs pauses
    took = time.ticks_diff(time.ticks_ms(), start)
    assert took < 20000, took
    assert machine.UART.settings == {"id": 0, "baudrate": 9600, "parity": 0, "stop": 1}, machine.UART.settings
    # the first request arrives in two pieces about 1 ms apart (less than t3.5 = 4 ms at 9600 Bd;
    # the WebAssembly port's ticks_us counts in whole ms): one frame; unit 8's request: silence;
    # the same request again: answered again
    assert len(machine.UART.sent) == 2, machine.UART.sent
    for reply in machine.UART.sent:
        assert reply[:3] == bytes((7, 4, 40)) and rtu.crc_ok(reply), reply
    reply = machine.UART.sent[1]
    volts = (reply[3] << 8) | reply[4]
    assert 2250 <= volts <= 2350, volts  # 230 V from the sampled sine, in 0.1 V
    de = [v for pin, v in machine.Pin.history if pin == 2]
    assert de[0] == 0 and de[-2:] == [1, 0], de  # receive at boot, DE high for the reply, low after
    assert machine.PWM.duty and machine.PWM.duty[-1] == 65535, (
        machine.PWM.duty
    )  # night, never polled before: fail-safe on


def test_bad_config_stops_the_boot_with_its_key() -> None:
    with open("/pole_config.json", "w") as f:
        json.dump({"address": 300}, f)
    main = __import__("boards.pole_node.main", None, None, ["run"])
    try:
        main.run()
    except ValueError as e:
        assert "address: 300 out of range 1..247" in str(e), str(e)
        return
    raise AssertionError("a bad config booted")
