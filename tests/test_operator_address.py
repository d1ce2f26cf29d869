"""The operator tools take the same broker addresses as run, provision and the ingest."""

from __future__ import annotations

import argparse

import pytest

from tools.operator.mqtt import broker_address, tls_context


def args(broker: str, **kw: object) -> argparse.Namespace:
    base = {"broker": broker, "tls": False, "ca": None, "cert": None, "tls_key": None}
    return argparse.Namespace(**{**base, **kw})


def test_a_scheme_decides_tls_and_the_default_port() -> None:
    a = args("mqtts://broker.city.example")
    tls = tls_context(a)
    assert tls is not None and broker_address(a, tls) == ("broker.city.example", 8883)
    a = args("mqtt://10.0.0.5")
    assert tls_context(a) is None and broker_address(a, None) == ("10.0.0.5", 1883)
    a = args("10.0.0.5:8884", tls=True)
    assert broker_address(a, tls_context(a)) == ("10.0.0.5", 8884)
    assert broker_address(args("[2001:db8::5]:1884"), None) == ("2001:db8::5", 1884)


def test_plain_mqtt_with_tls_options_is_refused() -> None:
    with pytest.raises(ValueError, match="plain MQTT: use mqtts://"):
        tls_context(args("mqtt://broker", tls=True))
    with pytest.raises(ValueError, match="port 'x' is not a number"):
        broker_address(args("broker:x"), None)
