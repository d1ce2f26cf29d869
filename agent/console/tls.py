"""The console's TLS: the configured certificate and key, or a self-signed ECDSA P-256
certificate generated once into `<data dir>/console/tls/` (key mode 0600), for the listen
address, 127.0.0.1 and localhost. Its validity does not depend on the cabinet's clock (unset at
a first boot without RTC): from 2000 to 9999-12-31, RFC 5280's "no well-defined expiration".
Its SHA-256 fingerprint is logged at start-up so a technician can compare it with what the
browser shows before trusting it."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ota.fsutil import write_atomic


def tls_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "console" / "tls"


def self_signed(data_dir: Path, address: str, common_name: str) -> tuple[Path, Path]:
    """(cert, key) in the data dir, generated when missing."""
    where = tls_dir(data_dir)
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    if cert_path.is_file() and key_path.is_file() and _names(cert_path, address):
        return cert_path, key_path
    where.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (common_name or "cabinet")[:64])])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if address not in ("127.0.0.1", "0.0.0.0", "::"):
        alt.append(x509.IPAddress(ipaddress.ip_address(address)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomic(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        mode=0o600,
    )
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def _names(cert_path: Path, address: str) -> bool:
    """Whether the certificate names `address` (a listen address changed in the config: a new one)."""
    if address in ("0.0.0.0", "::"):
        return True
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False  # unreadable: made again
    return ipaddress.ip_address(address) in alt.get_values_for_type(x509.IPAddress)


def fingerprint(cert_path: Path) -> str:
    """The SHA-256 of the certificate's DER bytes, as browsers show it (ssl's parser: no x509 objects)."""
    try:
        pem = Path(cert_path).read_text(errors="replace")
        first = pem[: pem.index(ssl.PEM_FOOTER) + len(ssl.PEM_FOOTER)]  # a chain file: its first certificate
        der = ssl.PEM_cert_to_DER_cert(first[first.index(ssl.PEM_HEADER) :])
    except (OSError, ValueError):
        return "unknown (the certificate file is not one PEM certificate)"
    return hashlib.sha256(der).digest().hex(":").upper()


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """TLS 1.2 or later; ssl.SSLError or OSError when the files are unusable."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx
