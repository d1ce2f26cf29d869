"""The node's own config (`pole_config.json` on the board, written by `cabinet pole build`):
its Modbus address and line settings, its pins and its metering calibration. Pure: the
caller reads the file; `check` validates a parsed document and names every bad key.
"""

FILE = "pole_config.json"

# key: (type, minimum, maximum, default); None bounds: not a number
FIELDS = {
    "address": (int, 1, 247, None),
    "baudrate": (int, 1200, 115200, 9600),
    "parity": (str, None, None, "N"),
    "stop_bits": (int, 1, 2, 1),
    "uart": (int, 0, 1, 0),
    "tx_pin": (int, 0, 29, 0),
    "rx_pin": (int, 0, 29, 1),
    "de_pin": (int, 0, 29, 2),
    "door_pin": (int, 0, 29, 3),
    "relay_pin": (int, 0, 29, 4),
    "dim_pin": (int, 0, 29, 5),
    "i2c": (int, 0, 1, 0),
    "sda_pin": (int, 0, 29, 8),
    "scl_pin": (int, 0, 29, 9),
    "adc_voltage": (int, 0, 3, 0),
    "adc_current": (int, 0, 3, 1),
    "volts_per_count": (float, 0.0, 10.0, 0.0125),
    "amps_per_count": (float, 0.0, 1.0, 0.00025),
    "adc_offset": (int, 0, 65535, 32768),
}
PARITIES = ("N", "E", "O")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


def check(doc: object) -> tuple[dict, list[str]]:
    """(the config with defaults filled in, every error as 'pole_config.json: key: why')."""
    errors = []
    out: dict = {}
    if not isinstance(doc, dict):
        return out, [f"{FILE}: expected a JSON object, got {type(doc).__name__}"]
    allowed = ", ".join(sorted(FIELDS))
    for key in doc:
        if key not in FIELDS:
            errors.append(f"{FILE}: {key}: unknown key (allowed: {allowed})")
    for key in FIELDS:
        kind, low, high, default = FIELDS[key]
        value = doc.get(key, default)
        if value is None:
            errors.append(f"{FILE}: {key}: missing")
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            errors.append(f"{FILE}: {key}: expected {kind.__name__}, got {value!r}")
            continue
        if low is not None and high is not None and not low <= value <= high:  # type: ignore[operator]
            errors.append(f"{FILE}: {key}: {value!r} out of range {low}..{high}")
            continue
        out[key] = value
    if "parity" in out and out["parity"] not in PARITIES:
        errors.append(f"{FILE}: parity: {out['parity']!r} not one of N, E, O")
    if "baudrate" in out and out["baudrate"] not in BAUDRATES:
        errors.append(f"{FILE}: baudrate: {out['baudrate']!r} not one of {BAUDRATES}")
    return out, errors
