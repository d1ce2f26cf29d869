"""Test vectors of the pole node's settings in flash and config.

Run under CPython (tests/test_pole_vectors.py) and under a real MicroPython (run_vectors.mjs,
the WebAssembly port): the same functions, plain asserts, only what MicroPython runs (no
pytest, no typing at run time)."""

from boards.pole_node import regmap, settings
from boards.pole_node.node import PoleNode
from tests.micropython.common import UNIT, MemFlash, PowerCut, lamp, write1, write_n

# ---------------------------------------------------------------- settings in flash


def test_settings_persist_and_reboot() -> None:
    flash = MemFlash()
    n = PoleNode(UNIT, flash, 0)
    assert n.status(0) & regmap.SETTINGS_DEFAULTED
    n.request(write_n(1, [120, 80, 10, 25]), 0)
    lamp(n, 1000)
    assert n.store.writes == 0  # not yet quiet for 2 s
    lamp(n, 2000)
    assert n.store.writes == 1
    assert not n.status(2000) & regmap.SETTINGS_DEFAULTED
    n.request(write1(0, 55), 3000)  # the level command is not a setting: no flash write
    n.request(write1(2, 80), 3100)  # same value again: no flash write
    lamp(n, 10000)
    assert n.store.writes == 1
    again = PoleNode(UNIT, flash, 0)
    assert again.holding[1:5] == [120, 80, 10, 25] and again.holding[0] == 0
    assert not again.status(0) & regmap.SETTINGS_DEFAULTED


def test_power_cut_during_settings_write_any_byte() -> None:
    old = [120, 80, 10, 25, 120, 15, 60, 4]
    new = [300, 50, 20, 40, 60, 20, 100, 6]
    size = len(settings.encode(settings.SETTINGS, 1, new))
    for saved_before in (1, 2, 3):  # the torn write hits slot b, then a, then b
        for cut in range(size + 1):
            flash = MemFlash()
            store = settings.Store(flash, "settings", settings.SETTINGS)
            for k in range(saved_before):
                store.save([old[0] + k] + old[1:])  # noqa: RUF005 (no * in list displays in MicroPython)  # a different record each time
            expect_old = store.words
            flash.cut_after = cut
            try:
                store.save(new)
            except PowerCut:
                pass
            booted = PoleNode(UNIT, flash, 0)
            got = booted.holding[1:]
            assert got == expect_old or (got == new and cut == size), (saved_before, cut, got)
    # and the node writes the next record to the torn slot, not over the good one
    flash = MemFlash()
    store = settings.Store(flash, "settings", settings.SETTINGS)
    store.save(old)
    flash.cut_after = 5
    try:
        store.save(new)
    except PowerCut:
        pass
    again = settings.Store(flash, "settings", settings.SETTINGS)
    assert again.load() == old and again.current == 0
    again.save(new)
    assert settings.Store(flash, "settings", settings.SETTINGS).load() == new
    assert flash.files["settings.a"] == settings.encode(settings.SETTINGS, 1, old)


def test_rotten_and_foreign_records_are_ignored() -> None:
    flash = MemFlash()
    store = settings.Store(flash, "settings", settings.SETTINGS)
    store.save([600, 100, 30, 60, 120, 15, 60, 4])
    store.save([700, 100, 30, 60, 120, 15, 60, 4])
    rotten = bytearray(flash.files["settings.b"])
    rotten[10] ^= 0x04  # one bit flipped in the newer slot
    flash.files["settings.b"] = bytes(rotten)
    assert PoleNode(UNIT, flash, 0).holding[1] == 600
    # a record with a good CRC but values out of range (older firmware, other map): skipped
    flash.files["settings.b"] = settings.encode(settings.SETTINGS, 9, [1, 100, 30, 60, 120, 15, 60, 4])
    assert PoleNode(UNIT, flash, 0).holding[1] == 600
    flash.files["settings.a"] = b"\xff" * 26  # erased flash
    n = PoleNode(UNIT, flash, 0)
    assert n.holding == regmap.defaults() and n.status(0) & regmap.SETTINGS_DEFAULTED
    assert settings.decode(settings.SETTINGS, None) is None
    assert settings.decode(settings.COUNTERS, settings.encode(settings.SETTINGS, 1, [1])) is None


def test_node_config_checked() -> None:
    from boards.pole_node import config

    cfg, errors = config.check({"address": 12, "baudrate": 19200, "volts_per_count": 1})
    assert errors == [] and cfg["address"] == 12 and cfg["parity"] == "N" and cfg["volts_per_count"] == 1.0
    cfg, errors = config.check({"address": 0, "parity": "X", "baud": 9600, "tx_pin": True})
    text = "\n".join(errors)
    assert "address: 0 out of range 1..247" in text
    assert "parity: 'X' not one of N, E, O" in text
    assert "baud: unknown key" in text
    assert "tx_pin: expected int, got True" in text
    assert config.check({"baudrate": 9600})[1] == ["pole_config.json: address: missing"]
    assert config.check({"address": 3, "baudrate": 10000})[1][0].startswith("pole_config.json: baudrate: 10000 not one")
    assert config.check([1])[1] == ["pole_config.json: expected a JSON object, got list"]
