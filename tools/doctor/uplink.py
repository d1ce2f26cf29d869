"""`cabinet doctor`, the uplink: can this cabinet reach its broker (TCP, TLS, MQTT CONNECT with
its own identity), and is its client certificate valid and its own (tools/doctor/checks.py
has the Result and the rules every check follows)."""

import asyncio
import datetime as dt
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.doctor.checks import FAIL, PASS, WARN, Result

CERT_WARN_DAYS = 30

# ------------------------------------------------------------------------------------- uplink


def _tls_hint(text: str) -> str:
    t = text.lower()
    if "certificate expired" in t or "certificate has expired" in t:
        return (
            "the broker refuses an expired certificate: issue a new one with `cabinet provision` (check the clock too)"
        )
    if "unknown ca" in t or "bad certificate" in t or "certificate required" in t:
        return (
            "the broker does not accept this certificate: it must be issued by the fleet's device CA "
            "(`cabinet provision`)"
        )
    if "verify failed" in t:
        return (
            "the broker's certificate does not verify against [uplink] ca: wrong CA file, wrong broker name, "
            "or the cabinet's clock is far off"
        )
    return "check [uplink] ca/cert/key and that the broker's TLS listener is the one configured"


async def check_broker(
    s: Any, cabinet_id: str, *, live: Mapping[str, Any] | None = None, timeout: float = 10.0
) -> Result:
    """TLS handshake with the cabinet's certificate, then an MQTT v5 CONNECT with the [uplink] settings."""
    if s is None:
        return Result(
            "broker",
            WARN,
            "no [uplink] configured: not checked",
            "add an [uplink] section (docs/uplink.md) for the cabinet to reach the cloud",
        )
    where = f"{s.broker}:{s.port}"
    if live and live.get("state") == "connected":
        # connecting again with the same identity would take over the agent's session
        return Result("broker", PASS, f"{live.get('broker', where)}: the running agent is connected (live)")
    from agent.uplink.client import tls_context  # deferred: heavy (aiomqtt)

    try:
        ctx = tls_context(s)
    except (OSError, ssl.SSLError, ValueError) as e:
        return Result("broker", FAIL, f"{where}: cannot load the TLS files: {e}", "check [uplink] ca, cert and key")
    if ctx is not None:
        refused = await _tls_handshake(s, ctx, where, timeout)
        if refused is not None:
            return refused
    return await _mqtt_connect(s, cabinet_id, where, timeout, tls=ctx is not None)


async def _tls_handshake(s: Any, ctx: ssl.SSLContext, where: str, timeout: float) -> Result | None:
    """A TLS session to the broker with the cabinet's certificate: None when it holds, else the FAIL."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(s.broker, s.port, ssl=ctx), timeout)
    except TimeoutError:
        return Result(
            "broker",
            FAIL,
            f"{where}: TLS connect timed out after {timeout:g} s",
            "check the network route and firewall to the broker",
        )
    except ssl.SSLError as e:
        return Result("broker", FAIL, f"{where}: TLS handshake failed: {e}", _tls_hint(str(e)))
    except OSError as e:
        return Result(
            "broker",
            FAIL,
            f"{where}: cannot connect: {e.strerror or e}",
            "check the broker's host name and port in [uplink], DNS, the network route and firewall",
        )
    try:  # TLS 1.3: a refused client certificate arrives as an alert after the handshake
        await asyncio.wait_for(reader.read(1), 0.5)
    except TimeoutError:
        pass  # the broker waits for CONNECT: the certificate was accepted
    except (ssl.SSLError, OSError) as e:
        return Result("broker", FAIL, f"{where}: the broker rejected the TLS session: {e}", _tls_hint(str(e)))
    finally:
        writer.close()
    return None


async def _mqtt_connect(s: Any, cabinet_id: str, where: str, timeout: float, *, tls: bool) -> Result:
    """An MQTT v5 CONNECT (and DISCONNECT) with the [uplink] settings, under a doctor's client id."""
    # deferred: heavy (aiomqtt)
    import aiomqtt

    from agent.uplink.client import tls_context

    ident = f"{s.client_id or cabinet_id}-doctor"
    try:
        async with aiomqtt.Client(
            s.broker,
            s.port,
            identifier=ident,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_context(s),
            timeout=timeout,
            keepalive=max(5, int(timeout)),
        ):
            pass
    except aiomqtt.MqttError as e:
        return Result(
            "broker",
            FAIL,
            f"{where}: MQTT CONNECT failed: {e}",
            "the broker refused the session: check its ACL / user for this certificate's CN, and [uplink] client_id",
        )
    return Result(
        "broker",
        PASS,
        f"{where}: TLS handshake and MQTT CONNECT accepted"
        + (f" (client id {ident})" if tls else " (no TLS configured)"),
    )


def check_certificate(
    s: Any, cabinet_id: str, now: dt.datetime | None = None, warn_days: float = CERT_WARN_DAYS
) -> Result:
    """The cabinet's client certificate: validity window, CN = cabinet id, key matches."""
    # deferred: heavy (cryptography)
    from cryptography.hazmat.primitives import serialization

    from tools.provision import pki

    if s is None or not s.tls or not s.cert:
        return Result(
            "certificate",
            WARN,
            "no [uplink] client certificate configured: not checked",
            "provisioned cabinets carry a certificate (`cabinet provision`, [uplink] cert/key)",
        )
    now = now or dt.datetime.now(dt.UTC)
    try:
        info = pki.cert_info(Path(s.cert).read_bytes())
    except (OSError, pki.PKIError) as e:
        return Result("certificate", FAIL, f"{s.cert}: {e}", "re-provision the cabinet (`cabinet provision`)")
    name = f"{s.cert} (CN {info['cn']}, until {info['not_after']:%Y-%m-%d})"
    reprov = "issue a new certificate with `cabinet provision` and restart the agent"
    if now < info["not_before"]:
        return Result(
            "certificate",
            FAIL,
            f"{name}: not valid before {info['not_before']:%Y-%m-%d %H:%M} UTC",
            "the cabinet's clock is behind (see the clock check), or the certificate was issued "
            "by a machine whose clock was ahead: " + reprov,
        )
    if now > info["not_after"]:
        return Result("certificate", FAIL, f"{name}: expired {info['not_after']:%Y-%m-%d %H:%M} UTC", reprov)
    if info["cn"] != cabinet_id:
        return Result(
            "certificate",
            FAIL,
            f"{name}: CN {info['cn']!r} is not the cabinet id {cabinet_id!r}",
            "the certificate belongs to another cabinet: provision this one "
            f"(`cabinet provision --id {cabinet_id}`) or fix [cabinet] id",
        )
    try:
        key = serialization.load_pem_private_key(Path(s.key).read_bytes(), None) if s.key else None
    except (OSError, ValueError, TypeError) as e:
        return Result("certificate", FAIL, f"{s.key}: cannot load the key: {e}", reprov)
    cert_pub = pki.load_cert(Path(s.cert).read_bytes()).public_key()
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key is None or key.public_key().public_bytes(*raw) != cert_pub.public_bytes(*raw):
        return Result(
            "certificate",
            FAIL,
            f"{name}: the key {s.key} does not belong to this certificate",
            "put the key the certificate was issued for in [uplink] key, or " + reprov,
        )
    left = info["not_after"] - now
    if left < dt.timedelta(days=warn_days):
        return Result("certificate", WARN, f"{name}: expires in {left.days} days", "renew it: " + reprov)
    return Result("certificate", PASS, f"{name}: valid, {left.days} days left, key matches")
