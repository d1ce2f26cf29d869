"""The fleet's X.509 material: a dedicated device CA, cabinet client certificates, broker
server certificates, and the cabinets' Ed25519 telemetry signing keys.

Everything lives in files in a directory the caller names; nothing here talks to the network.

    ca = init_ca(Path("pki"))                         # pki/ca.key (0600), pki/ca.crt
    ca = load_ca(Path("pki"))
    key_pem, cert_pem = ca.issue_client("CAB-0001")   # CN = cabinet id, EKU clientAuth
    key_pem, cert_pem = ca.issue_server(["mqtt.city.example", "10.0.0.5"])   # SAN DNS + IP
    cert_info(cert_pem)                               # CN, validity, issuer, fingerprint ... (doctor checks)
    pub_raw = new_signing_key(Path("signing.key"))    # Ed25519 PKCS8 PEM, 0600; 32 raw public bytes back
    key_id(pub_raw)                                   # kid: the first 8 bytes of SHA-256(raw public key)

The device CA must be used for nothing else: with `use_identity_as_username`, mosquitto
accepts every client certificate any CA in its `cafile` signed, and the CN becomes the
MQTT username the ACLs are written against (ota-and-security.md §4).

Command line: `cabinet ca init|issue-server|issue-client` (tools/provision/cli.py) and
`cabinet provision` (tools/provision/identity.py); docs/cloud.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.uplink.keys import KeyFileError
from agent.uplink.keys import load_signing_key as load_signing_key  # re-exported: the tools' one place for keys
from agent.uplink.keys import new_signing_key as new_signing_key
from agent.uplink.keys import public_key_raw as public_key_raw
from agent.uplink.keys import write_private as write_private
from agent.uplink.keys import write_public as write_public

ALGORITHMS = ("ed25519", "p256")
CA_KEY = "ca.key"
CA_CERT = "ca.crt"
DEFAULT_CA_NAME = "cabinet-agent device CA"
BACKDATE = dt.timedelta(hours=1)  # not_before this far in the past: tolerate small clock skew

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


# --------------------------------------------------------------------------- files and keys

# write_private, write_public, new_signing_key, load_signing_key and public_key_raw are the
# runtime's (agent/uplink/keys.py): the cabinet reads its own key with them.
PKIError = KeyFileError


def generate_key(algorithm: str = "ed25519") -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"algorithm {algorithm!r}: not one of {', '.join(ALGORITHMS)}")


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _sign_hash(issuer_key: PrivateKey) -> hashes.SHA256 | None:
    # Ed25519 signs the message itself: the algorithm must be None (stack-notes §2.2).
    return None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _algorithm_of(key: Any) -> str:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "p256" if key.curve.name == "secp256r1" else f"ec-{key.curve.name}"
    return type(key).__name__


# --------------------------------------------------------------------------- the CA


@dataclass
class CA:
    """A loaded device CA: issues cabinet (client) and broker (server) certificates."""

    dir: Path
    key: PrivateKey
    cert: x509.Certificate

    @property
    def cert_path(self) -> Path:
        return self.dir / CA_CERT

    @property
    def key_path(self) -> Path:
        return self.dir / CA_KEY

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def algorithm(self) -> str:
        return _algorithm_of(self.key)

    def issue_client(
        self, cn: str, *, days: int = 825, algorithm: str = "ed25519", now: dt.datetime | None = None
    ) -> tuple[bytes, bytes]:
        """A new key and a client certificate (CN = `cn`, EKU clientAuth): (key_pem, cert_pem)."""
        _check_cn(cn)
        key = generate_key(algorithm)
        builder = self._leaf(cn, key.public_key(), days, now).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        cert = builder.sign(self.key, _sign_hash(self.key))
        return key_pem(key), cert.public_bytes(serialization.Encoding.PEM)

    def issue_server(
        self,
        names: Iterable[str] | str,
        *,
        cn: str | None = None,
        days: int = 825,
        algorithm: str = "ed25519",
        now: dt.datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """A new key and a server certificate with SAN DNS/IP entries (EKU serverAuth).

        `names`: host names and IP addresses ("localhost", "127.0.0.1", "::1", "mqtt.example")."""
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise ValueError("issue_server: give at least one host name or IP address")
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?", n):
                    raise ValueError(f"issue_server: {n!r} is neither an IP address nor a DNS name") from None
                sans.append(x509.DNSName(n))
        key = generate_key(algorithm)
        builder = (
            self._leaf(cn or names[0], key.public_key(), days, now)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        cert = builder.sign(self.key, _sign_hash(self.key))
        return key_pem(key), cert.public_bytes(serialization.Encoding.PEM)

    def verify(self, cert_pem: bytes | str, *, now: dt.datetime | None = None) -> x509.Certificate:
        """Check that this CA issued `cert_pem` (signature, issuer name) and that it is valid at `now`.

        Returns the certificate; raises PKIError naming what is wrong."""
        cert = load_cert(cert_pem)
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError) as e:
            raise PKIError(f"certificate {_cn(cert)!r} was not issued by {_cn(self.cert)!r}: {e}") from None
        except InvalidSignature:
            raise PKIError(
                f"certificate {_cn(cert)!r}: its signature does not verify with the key of {_cn(self.cert)!r}"
            ) from None
        now = now or dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PKIError(
                f"certificate {_cn(cert)!r} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not at {now:%Y-%m-%d %H:%M}"
            )
        return cert

    def _leaf(self, cn: str, public_key: Any, days: int, now: dt.datetime | None) -> x509.CertificateBuilder:
        now = now or dt.datetime.now(dt.UTC)
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)  # never outlive the CA
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
        )


def init_ca(
    dir: Path | str,
    *,
    name: str = DEFAULT_CA_NAME,
    days: int = 3650,
    algorithm: str = "ed25519",
    force: bool = False,
    passphrase: bytes | None = None,
    now: dt.datetime | None = None,
) -> CA:
    """Create a self-signed device CA in `dir`: ca.key (PKCS8 PEM, 0600) and ca.crt.

    Refuses to replace an existing CA unless `force` (every certificate the old CA issued
    would stop verifying). `passphrase` encrypts the key (then load_ca needs it)."""
    dir = Path(dir)
    existing = [p for p in (dir / CA_KEY, dir / CA_CERT) if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{dir}: a device CA already exists ({', '.join(p.name for p in existing)}); "
            f"refusing to replace it (--force does, and every certificate it issued stops verifying)"
        )
    if not name or len(name) > 64:
        raise ValueError(f"CA name {name!r}: 1 to 64 characters")
    key = generate_key(algorithm)
    now = now or dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, _sign_hash(key))
    )
    dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(dir / CA_KEY, key_pem(key, passphrase), force=True)
    write_public(dir / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), force=True)
    return CA(dir, key, cert)


def load_ca(dir: Path | str, *, passphrase: bytes | None = None) -> CA:
    """Load the device CA from `dir` (ca.key, ca.crt) and check that they belong together."""
    dir = Path(dir)
    key_path, cert_path = dir / CA_KEY, dir / CA_CERT
    for p in (key_path, cert_path):
        if not p.is_file():
            raise PKIError(f"{p}: missing; create a CA with `cabinet ca init --dir {dir}` first")
    cert = load_cert(cert_path.read_bytes(), where=str(cert_path))
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), passphrase)
    except (ValueError, TypeError) as e:
        raise PKIError(f"{key_path}: cannot load the CA key: {e}") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise PKIError(f"{key_path}: a {type(key).__name__}; the device CA key must be Ed25519 or ECDSA P-256")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise PKIError(f"{key_path} does not belong to {cert_path} (different public keys)")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise PKIError(f"{cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
    try:
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise PKIError(f"{cert_path}: has no subjectKeyIdentifier; re-create the CA with `cabinet ca init`") from None
    return CA(dir, key, cert)


# --------------------------------------------------------------------------- inspection


def cert_info(pem: bytes | str) -> dict[str, Any]:
    """What a doctor check needs to know about a certificate (PEM bytes or text).

    Keys: cn, subject, issuer, issuer_cn, serial, not_before, not_after (aware UTC datetimes),
    fingerprint (SHA-256, lowercase hex), key_algorithm, is_ca, dns_names, ip_addresses,
    extended_key_usage ("clientAuth"/"serverAuth"/dotted OID)."""
    cert = load_cert(pem)
    ext = cert.extensions

    def get(cls: Any) -> Any:
        try:
            return ext.get_extension_for_class(cls).value
        except x509.ExtensionNotFound:
            return None

    san = get(x509.SubjectAlternativeName)
    bc = get(x509.BasicConstraints)
    eku = get(x509.ExtendedKeyUsage)
    eku_names = {ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth", ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth"}
    return {
        "cn": _cn(cert),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "issuer_cn": _cn(cert, issuer=True),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "key_algorithm": _algorithm_of(cert.public_key()),
        "is_ca": bool(bc and bc.ca),
        "dns_names": san.get_values_for_type(x509.DNSName) if san else [],
        "ip_addresses": [str(a) for a in san.get_values_for_type(x509.IPAddress)] if san else [],
        "extended_key_usage": [eku_names.get(o, o.dotted_string) for o in eku] if eku else [],
    }


def load_cert(pem: bytes | str, where: str = "certificate") -> x509.Certificate:
    """A PEM certificate (bytes or text) parsed; PKIError naming `where` when it is not one."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise PKIError(f"{where}: not a PEM certificate ({e})") from None


def _cn(cert: x509.Certificate, issuer: bool = False) -> str | None:
    attrs = (cert.issuer if issuer else cert.subject).get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _check_cn(cn: str) -> None:
    if not isinstance(cn, str) or not 1 <= len(cn) <= 64:
        raise ValueError(f"common name {cn!r}: 1 to 64 characters")


def _serial() -> int:
    return secrets.randbits(159) | 1  # positive, ≤ 20 octets, never 0 (RFC 5280 §4.1.2.2)


# --------------------------------------------------------------------------- telemetry signing keys


def key_id(public_key_raw: bytes) -> bytes:
    """kid: the first 8 bytes of SHA-256 over the raw 32-byte Ed25519 public key."""
    if len(public_key_raw) != 32:
        raise ValueError(f"key_id: expected a raw 32-byte Ed25519 public key, got {len(public_key_raw)} bytes")
    return hashlib.sha256(public_key_raw).digest()[:8]
