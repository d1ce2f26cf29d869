"""tools/provision/pki.py (device CA, certificates, signing keys) and tools/provision/identity.py (cabinet identity)."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from tools.provision import pki
from tools.provision.identity import provision, validate_cabinet_id

ALGORITHMS = ["ed25519", "p256"]
HAVE_OPENSSL = shutil.which("openssl") is not None


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def openssl_verify(ca: Path, cert: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), "-purpose", purpose, str(cert)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


# ----------------------------------------------------------------------------- CA


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_init_ca_writes_private_key_and_self_signed_ca(tmp_path, algorithm):
    ca = pki.init_ca(tmp_path / "ca", algorithm=algorithm)
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert mode(tmp_path / "ca") == 0o700
    cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=cabinet-agent device CA"
    cert.verify_directly_issued_by(cert)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    key_type = ed25519.Ed25519PublicKey if algorithm == "ed25519" else ec.EllipticCurvePublicKey
    assert isinstance(cert.public_key(), key_type)
    assert ca.algorithm == algorithm
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=3649)


def test_init_ca_refuses_to_overwrite_unless_forced(tmp_path):
    first = pki.init_ca(tmp_path)
    before = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        pki.init_ca(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before
    (tmp_path / "ca.crt").unlink()  # a half-present CA is refused too
    with pytest.raises(FileExistsError):
        pki.init_ca(tmp_path)
    second = pki.init_ca(tmp_path, force=True, name="second CA")
    assert second.cert != first.cert and pki.cert_info(second.cert_pem)["cn"] == "second CA"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_load_ca_round_trip(tmp_path, algorithm):
    ca = pki.init_ca(tmp_path, algorithm=algorithm)
    loaded = pki.load_ca(tmp_path)
    assert loaded.cert == ca.cert
    _, cert_pem = loaded.issue_client("CAB-1")
    ca.verify(cert_pem)


def test_load_ca_errors_name_the_file(tmp_path):
    with pytest.raises(pki.PKIError, match=r"ca.key: missing"):
        pki.load_ca(tmp_path)
    pki.init_ca(tmp_path / "a")
    pki.init_ca(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "ca.key", tmp_path / "a" / "ca.key")
    with pytest.raises(pki.PKIError, match="does not belong to"):
        pki.load_ca(tmp_path / "a")


def test_encrypted_ca_key(tmp_path):
    pki.init_ca(tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "ca.key").read_bytes()
    with pytest.raises(pki.PKIError, match="cannot load the CA key"):
        pki.load_ca(tmp_path)
    pki.load_ca(tmp_path, passphrase=b"correct horse").issue_client("CAB-1")


# ----------------------------------------------------------------------------- issued certificates


@pytest.mark.integration  # cross-checked with an `openssl verify` process
@pytest.mark.parametrize("ca_alg", ALGORITHMS)
@pytest.mark.parametrize("leaf_alg", ALGORITHMS)
def test_client_certificate(tmp_path, ca_alg, leaf_alg):
    ca = pki.init_ca(tmp_path / "ca", algorithm=ca_alg)
    key_pem, cert_pem = ca.issue_client("CAB-0001", algorithm=leaf_alg)
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    ca.verify(cert_pem)
    info = pki.cert_info(cert_pem)
    assert info["cn"] == "CAB-0001" and info["issuer_cn"] == "cabinet-agent device CA"
    assert info["key_algorithm"] == leaf_alg and not info["is_ca"]
    assert info["extended_key_usage"] == ["clientAuth"]
    assert info["fingerprint"] == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert info["not_after"] - info["not_before"] == dt.timedelta(days=825) + pki.BACKDATE
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (
        ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    )
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ed25519.Ed25519PrivateKey if leaf_alg == "ed25519" else ec.EllipticCurvePrivateKey)
    if HAVE_OPENSSL:
        (tmp_path / "c.crt").write_bytes(cert_pem)
        r = openssl_verify(tmp_path / "ca" / "ca.crt", tmp_path / "c.crt", "sslclient")
        assert r.returncode == 0, r.stdout + r.stderr
        r = openssl_verify(tmp_path / "ca" / "ca.crt", tmp_path / "c.crt", "sslserver")
        assert r.returncode != 0  # a client certificate is not good for a server


@pytest.mark.integration  # cross-checked with an `openssl verify` process
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_server_certificate_sans(tmp_path, algorithm):
    ca = pki.init_ca(tmp_path / "ca", algorithm=algorithm)
    _, cert_pem = ca.issue_server(["localhost", "127.0.0.1", "::1", "mqtt.city.example"], algorithm=algorithm)
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca.verify(cert_pem)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "mqtt.city.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    info = pki.cert_info(cert_pem)
    assert info["cn"] == "localhost" and info["extended_key_usage"] == ["serverAuth"]
    assert info["dns_names"] == ["localhost", "mqtt.city.example"] and info["ip_addresses"] == ["127.0.0.1", "::1"]
    if HAVE_OPENSSL:
        (tmp_path / "s.crt").write_bytes(cert_pem)
        r = openssl_verify(tmp_path / "ca" / "ca.crt", tmp_path / "s.crt", "sslserver")
        assert r.returncode == 0, r.stdout + r.stderr
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        ca.issue_server(["bad host"])
    with pytest.raises(ValueError):
        ca.issue_server([])


def test_verify_rejects_a_certificate_of_another_ca(tmp_path):
    ca = pki.init_ca(tmp_path / "a")
    other = pki.init_ca(tmp_path / "b")  # same name, different key
    _, cert_pem = other.issue_client("CAB-1")
    with pytest.raises(pki.PKIError, match="signature does not verify"):
        ca.verify(cert_pem)
    other2 = pki.init_ca(tmp_path / "c", name="another CA")
    _, cert_pem = other2.issue_client("CAB-1")
    with pytest.raises(pki.PKIError, match="not issued by"):
        ca.verify(cert_pem)


def test_leaf_never_outlives_the_ca_and_validity_is_checked(tmp_path):
    ca = pki.init_ca(tmp_path, days=30)
    _, cert_pem = ca.issue_client("CAB-1", days=825)
    assert pki.cert_info(cert_pem)["not_after"] == ca.cert.not_valid_after_utc
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    with pytest.raises(pki.PKIError, match="valid from"):
        ca.verify(cert_pem, now=later)


def test_cert_info_rejects_garbage():
    with pytest.raises(pki.PKIError, match="not a PEM certificate"):
        pki.cert_info(b"hello")


# ----------------------------------------------------------------------------- signing keys


def test_signing_key(tmp_path):
    path = tmp_path / "keys" / "signing.key"
    pub = pki.new_signing_key(path)
    assert len(pub) == 32 and mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    key = pki.load_signing_key(path)
    assert pki.public_key_raw(key) == pub
    ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(key.sign(b"batch"), b"batch")
    with pytest.raises(FileExistsError):
        pki.new_signing_key(path)
    assert pki.new_signing_key(path, force=True) != pub
    assert pki.key_id(pub) == hashlib.sha256(pub).digest()[:8]
    with pytest.raises(ValueError):
        pki.key_id(b"short")


def test_load_signing_key_refuses_other_keys(tmp_path):
    pki.init_ca(tmp_path, algorithm="p256")
    with pytest.raises(pki.PKIError, match="must be Ed25519"):
        pki.load_signing_key(tmp_path / "ca.key")
    with pytest.raises(pki.PKIError, match="missing"):
        pki.load_signing_key(tmp_path / "nope.key")


# ----------------------------------------------------------------------------- provisioning


@pytest.fixture
def ca_dir(tmp_path) -> Path:
    pki.init_ca(tmp_path / "pki")
    return tmp_path / "pki"


@pytest.mark.integration  # cross-checked with an `openssl verify` process
def test_provision_writes_a_complete_identity(tmp_path, ca_dir):
    calls = []
    out = tmp_path / "cab"
    result = provision(
        "CAB-0042",
        out,
        ca_dir=ca_dir,
        broker_host="mqtt.city.example",
        broker_port=8883,
        registry=lambda *a: calls.append(a),
    )
    names = {"signing.key", "tls.key", "tls.crt", "ca.crt", "cabinet.toml"}
    assert {p.name for p in out.iterdir()} == names  # no staging leftovers
    assert mode(out / "signing.key") == 0o600 and mode(out / "tls.key") == 0o600
    assert mode(out) == 0o700

    ca = pki.load_ca(ca_dir)
    cert_pem = (out / "tls.crt").read_bytes()
    ca.verify(cert_pem)
    assert pki.cert_info(cert_pem)["cn"] == "CAB-0042"
    assert (out / "ca.crt").read_bytes() == ca.cert_pem
    tls_key = serialization.load_pem_private_key((out / "tls.key").read_bytes(), None)
    assert tls_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if HAVE_OPENSSL:
        r = openssl_verify(out / "ca.crt", out / "tls.crt", "sslclient")
        assert r.returncode == 0, r.stdout + r.stderr

    pub = pki.public_key_raw(pki.load_signing_key(out / "signing.key"))
    kid = hashlib.sha256(pub).digest()[:8]
    assert calls == [("CAB-0042", kid, pub)]
    assert result["cabinet_id"] == "CAB-0042"
    assert result["kid"] == kid.hex() and result["public_key"] == pub.hex()
    assert result["files"]["tls_cert"] == str(out / "tls.crt")
    assert set(result["files"]) == {"signing_key", "tls_key", "tls_cert", "ca_cert", "config"}
    assert result["cert_fingerprint"] == pki.cert_info(cert_pem)["fingerprint"]

    config = tomllib.loads((out / "cabinet.toml").read_text())
    assert config["cabinet"]["id"] == "CAB-0042"
    assert config["uplink"] == {
        "broker": "mqtt.city.example",
        "port": 8883,
        "tls": True,
        "ca": "ca.crt",
        "cert": "tls.crt",
        "key": "tls.key",
        "signing_key": "signing.key",
        "topic_prefix": "city/v1",
    }
    example = tomllib.loads((Path(__file__).parent.parent / "boards" / "sim" / "cabinet.toml").read_text())
    assert {k: v for k, v in config.items() if k not in ("cabinet", "uplink")} == {
        k: v for k, v in example.items() if k != "cabinet"
    }
    assert config["cabinet"]["name"] == example["cabinet"]["name"]
    for name in result["files"].values():  # relative paths in [uplink] resolve to the written files
        assert Path(name).parent == out


def test_provision_refuses_to_overwrite_unless_forced(tmp_path, ca_dir):
    out = tmp_path / "cab"
    first = provision("CAB-1", out, ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    with pytest.raises(FileExistsError, match="already holds a cabinet identity"):
        provision(
            "CAB-1", out, ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883, registry=lambda *a: calls.append(a)
        )
    assert calls == [] and {p.name: p.read_bytes() for p in out.iterdir()} == before
    # one leftover file is an identity too
    for p in out.iterdir():
        if p.name != "signing.key":
            p.unlink()
    with pytest.raises(FileExistsError, match=r"signing.key"):
        provision("CAB-1", out, ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883)
    second = provision("CAB-1", out, ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883, force=True)
    assert second["public_key"] != first["public_key"]


def test_provision_keeps_the_old_identity_when_the_registry_fails(tmp_path, ca_dir):
    out = tmp_path / "cab"
    provision("CAB-1", out, ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def registry(*_):
        raise ConnectionError("registry unreachable")

    with pytest.raises(ConnectionError):
        provision("CAB-1", out, ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883, force=True, registry=registry)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(ConnectionError):
        provision(
            "CAB-2", tmp_path / "new", ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883, registry=registry
        )
    assert list((tmp_path / "new").iterdir()) == []


@pytest.mark.parametrize(
    "bad",
    ["", "CAB/1", "CAB+1", "CAB#1", "x" * 65, "CAB 1", "CÄB", "-CAB", ".", "..", "ingest", "$SYS", "CAB\x001", None],
)
def test_provision_rejects_bad_cabinet_ids(tmp_path, ca_dir, bad):
    with pytest.raises(ValueError, match="cabinet id"):
        provision(bad, tmp_path / "cab", ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883)
    assert not (tmp_path / "cab").exists()


@pytest.mark.parametrize("good", ["CAB-0001", "cab.berlin_mitte-17", "x" * 64, "7"])
def test_valid_cabinet_ids(good):
    assert validate_cabinet_id(good) == good


def test_provision_rejects_bad_arguments(tmp_path, ca_dir):
    kw = dict(ca_dir=ca_dir, broker_host="127.0.0.1", broker_port=8883)
    with pytest.raises(ValueError, match="broker host"):
        provision("CAB-1", tmp_path / "a", **{**kw, "broker_host": 'evil"\nx = 1'})
    with pytest.raises(ValueError, match="broker port"):
        provision("CAB-1", tmp_path / "a", **{**kw, "broker_port": 0})
    for prefix in ("city/+", "/city", "city/v1/", "", "$share/x"):
        with pytest.raises(ValueError, match="topic prefix"):
            provision("CAB-1", tmp_path / "a", **kw, topic_prefix=prefix)
    with pytest.raises(pki.PKIError, match="missing"):
        provision("CAB-1", tmp_path / "a", **{**kw, "ca_dir": tmp_path / "no-ca"})
    assert not (tmp_path / "a").exists()


def test_provision_with_a_custom_prefix_and_template(tmp_path, ca_dir):
    template = tmp_path / "t.toml"
    template.write_text(
        '[cabinet]\nname = "x"  # a name\nid = "OLD"   # keep this comment\n\n'
        '[uplink]\nbroker = "old"\n[uplink.extra]\nx = 1\n\n[site]\nlatitude = 1.0\n'
    )
    provision(
        "CAB-9",
        tmp_path / "cab",
        ca_dir=ca_dir,
        broker_host="10.0.0.5",
        broker_port=18883,
        topic_prefix="town/v2",
        template=template,
    )
    text = (tmp_path / "cab" / "cabinet.toml").read_text()
    assert "# keep this comment" in text
    config = tomllib.loads(text)
    assert config["cabinet"] == {"name": "x", "id": "CAB-9"}
    assert config["site"] == {"latitude": 1.0}
    assert config["uplink"]["broker"] == "10.0.0.5" and config["uplink"]["port"] == 18883
    assert config["uplink"]["topic_prefix"] == "town/v2" and "extra" not in config["uplink"]


def test_provision_command_line(tmp_path, ca_dir, capsys):
    import json

    from tools.provision.identity import main

    assert main(["CAB-7", "--out", str(tmp_path / "c"), "--ca-dir", str(ca_dir), "--broker", "localhost"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cabinet_id"] == "CAB-7" and printed["port"] == 8883
    assert main(["CAB-7", "--out", str(tmp_path / "c"), "--ca-dir", str(ca_dir), "--broker", "localhost"]) == 2
    assert "already holds" in capsys.readouterr().err
