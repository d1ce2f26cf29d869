"""Provisioning: create a cabinet's identity and uplink config, as a technician does once per cabinet.

    provision("CAB-0001", Path("out/CAB-0001"), ca_dir=Path("pki"),
              broker_host="mqtt.city.example", broker_port=8883, registry=register)

writes into out_dir

    signing.key   Ed25519 telemetry signing key, PKCS8 PEM, 0600
    tls.key       TLS client key, 0600
    tls.crt       TLS client certificate, CN = cabinet id, issued by the device CA
    ca.crt        the device CA certificate (the broker's server certificate is issued by it too)
    cabinet.toml  the example config (boards/sim/cabinet.toml, or `template`) with the new
                  [cabinet] id and an [uplink] section pointing at the files above
                  (tools/provision/template.py: the template's other [uplink] settings are kept)

With `tls=False` (plain MQTT: a trial, or a closed network) no CA is needed and only
signing.key and cabinet.toml are written.

and calls `registry(cabinet_id, kid, public_key_raw)` so the ingest knows the signing key
(kid = the first 8 bytes of SHA-256 over the raw 32-byte public key).

Order: everything is generated and written into a staging directory inside out_dir first;
the registry is called next; only then are the files moved into place. A failing registry
leaves out_dir as it was (an older identity included); a crash after the registry call
leaves at most a registered public key that no cabinet holds, which is harmless.

The cabinet id becomes the certificate CN, hence the MQTT username, hence one topic level in
every ACL pattern (`city/v1/cab/%u/...`): it must be a single, wildcard-free topic level.

The command is `cabinet provision` (tools/provision/cli.py, docs/cloud.md). For scripts,
`python -m tools.provision.identity CAB-0001 --out DIR --ca-dir PKI --broker HOST [--port 8883]`
prints the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.provision import pki
from tools.provision.template import cabinet_config, read_template, template_uplink

Registry = Callable[[str, bytes, bytes], None]

FILES = {
    "signing_key": "signing.key",
    "tls_key": "tls.key",
    "tls_cert": "tls.crt",
    "ca_cert": "ca.crt",
    "config": "cabinet.toml",
}
PLAIN_FILES = ("signing_key", "config")  # plain MQTT (no TLS): no certificates

CABINET_ID_MAX = 64
_CABINET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# CNs that have a `user` block of their own in the broker ACL (tools/mosquitto/acl.example): a
# cabinet certificate with such a CN would get that user's rights. Keep in sync with the ACL.
RESERVED_IDS = frozenset({"ingest", "operator"})
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")  # the same rule as [uplink] broker in agent/config


def validate_cabinet_id(cabinet_id: Any) -> str:
    """The id, or ValueError saying what is wrong with it.

    Allowed: ASCII letters, digits, '.', '_', '-'; 1 to 64 characters; starting with a letter
    or digit (so it is never an option, a hidden file or '.'/'..'); not a reserved name."""
    if not isinstance(cabinet_id, str):
        raise ValueError(f"cabinet id {cabinet_id!r}: must be a string")
    if not cabinet_id:
        raise ValueError("cabinet id is empty")
    if len(cabinet_id) > CABINET_ID_MAX:
        raise ValueError(f"cabinet id {cabinet_id[:20]!r}...: {len(cabinet_id)} characters, at most {CABINET_ID_MAX}")
    bad = sorted({c for c in cabinet_id if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if bad:
        what = ", ".join(repr(c) for c in bad)
        why = " ('/' separates MQTT topic levels, '+' and '#' are MQTT wildcards)" if set(bad) & {"/", "+", "#"} else ""
        raise ValueError(
            f"cabinet id {cabinet_id!r}: character(s) {what} not allowed{why}; use letters, digits, '.', '_' and '-'"
        )
    if not _CABINET_ID.fullmatch(cabinet_id):
        raise ValueError(f"cabinet id {cabinet_id!r}: must start with a letter or digit")
    if cabinet_id.lower() in RESERVED_IDS:
        raise ValueError(
            f"cabinet id {cabinet_id!r}: reserved for a broker user with other rights "
            f"({', '.join(sorted(RESERVED_IDS))})"
        )
    return cabinet_id


def validate_topic_prefix(prefix: str) -> str:
    levels = prefix.split("/") if isinstance(prefix, str) else [""]
    if (
        not prefix
        or len(prefix) > 128
        or any(not lv for lv in levels)
        or any(c in prefix for c in "+#\x00 ")
        or prefix.startswith("$")
    ):
        raise ValueError(
            f"topic prefix {prefix!r}: non-empty topic levels separated by '/', no wildcards "
            f"('+', '#'), no spaces, no leading '$' or '/', no trailing '/' (e.g. 'city/v1')"
        )
    return prefix


def provision(
    cabinet_id: str,
    out_dir: Path | str,
    *,
    ca_dir: Path | str | None,
    broker_host: str,
    broker_port: int,
    tls: bool = True,
    topic_prefix: str | None = None,
    registry: Registry | None = None,
    force: bool = False,
    algorithm: str = "ed25519",
    days: int = 825,
    template: Path | str | None = None,
    ca_passphrase: bytes | None = None,
    ingest_key: str | None = None,
) -> dict[str, Any]:
    """Create the identity and config of cabinet `cabinet_id` in `out_dir` (see the module doc).

    `tls` False: plain MQTT, no certificates, no CA needed (`ca_dir` may be None): only
    signing.key and cabinet.toml are written. `topic_prefix` None: the template's, else city/v1.
    Refuses (FileExistsError) if out_dir already holds any identity file, unless `force`.
    Returns {"cabinet_id", "kid" (hex), "public_key" (hex), "cert_fingerprint", "ca_fingerprint",
    "not_after" (None without TLS), "broker", "port", "tls", "topic_prefix", "kept" (the
    template's [uplink] settings kept), "files": {name: path}}."""
    validate_cabinet_id(cabinet_id)
    if topic_prefix is not None:
        validate_topic_prefix(topic_prefix)
    if not isinstance(broker_host, str) or not _HOST.fullmatch(broker_host):
        raise ValueError(
            f"broker host {broker_host!r}: a host name or IP address (letters, digits, '.', ':', '-', '_')"
        )
    if isinstance(broker_port, bool) or not isinstance(broker_port, int) or not 1 <= broker_port <= 65535:
        raise ValueError(f"broker port {broker_port!r}: an integer from 1 to 65535")
    if tls and ca_dir is None:
        raise ValueError("TLS needs the device CA: give its directory (--ca-dir), or use plain MQTT (mqtt://)")
    ca = pki.load_ca(ca_dir, passphrase=ca_passphrase) if tls and ca_dir is not None else None  # before writing

    out_dir = Path(out_dir)
    all_paths = {name: out_dir / fn for name, fn in FILES.items()}
    paths = {n: p for n, p in all_paths.items() if tls or n in PLAIN_FILES}
    existing = [p.name for p in all_paths.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out_dir}: already holds a cabinet identity ({', '.join(existing)}); "
            f"refusing to overwrite it (--force replaces it; the old keys are lost)"
        )
    if ingest_key is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", ingest_key):
        raise ValueError(
            "ingest key: the ingest's raw Ed25519 public key as 64 hex digits (`cabinet ingest init` prints it)"
        )
    _, raw, _ = read_template(template)
    kept = sorted(set(template_uplink(raw)) - {"broker", "port", "tls", "ca", "cert", "key", "signing_key"})
    prefix = topic_prefix or str(template_uplink(raw).get("topic_prefix") or "city/v1")
    validate_topic_prefix(prefix)
    config_text = cabinet_config(
        cabinet_id,
        broker_host=broker_host,
        broker_port=broker_port,
        tls=tls,
        topic_prefix=prefix,
        template=template,
        ingest_key=ingest_key,
    )

    public_raw, kid, cert_pem = _write_identity(
        out_dir, paths, ca, cabinet_id, config_text, registry, days=days, algorithm=algorithm
    )
    for name, p in all_paths.items():  # forced from TLS to plain: the old certificate files go too
        if name not in paths:
            p.unlink(missing_ok=True)
    info = pki.cert_info(cert_pem) if cert_pem else None
    return {
        "cabinet_id": cabinet_id,
        "kid": kid.hex(),
        "public_key": public_raw.hex(),
        "cert_fingerprint": info["fingerprint"] if info else None,
        "ca_fingerprint": pki.cert_info(ca.cert_pem)["fingerprint"] if ca else None,
        "not_after": info["not_after"].isoformat() if info else None,
        "broker": broker_host,
        "port": broker_port,
        "tls": tls,
        "topic_prefix": prefix,
        "kept": [k for k in kept if k != "topic_prefix" or topic_prefix is None],
        "files": {name: str(p) for name, p in paths.items()},
    }


def _write_identity(
    out_dir: Path,
    paths: dict[str, Path],
    ca: pki.CA | None,
    cabinet_id: str,
    config_text: str,
    registry: Registry | None,
    *,
    days: int,
    algorithm: str,
) -> tuple[bytes, bytes, bytes | None]:
    """Generate the keys and the certificate (with a CA) into a staging directory in out_dir, call
    the registry, then move every file into place (module doc, Order). (public key, kid, cert PEM)."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stage = Path(tempfile.mkdtemp(prefix=".provision-", dir=out_dir))
    cert_pem = None
    try:
        public_raw = pki.new_signing_key(stage / FILES["signing_key"])
        if ca is not None:
            key_pem, cert_pem = ca.issue_client(cabinet_id, days=days, algorithm=algorithm)
            pki.write_private(stage / FILES["tls_key"], key_pem)
            pki.write_public(stage / FILES["tls_cert"], cert_pem)
            pki.write_public(stage / FILES["ca_cert"], ca.cert_pem)
        pki.write_public(stage / FILES["config"], config_text.encode())
        kid = pki.key_id(public_raw)
        if registry is not None:
            registry(cabinet_id, kid, public_raw)
        for name, p in paths.items():
            (stage / FILES[name]).replace(p)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return public_raw, kid, cert_pem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.provision.identity",
        description="create a cabinet's identity (keys, certificate) and uplink config",
    )
    p.add_argument("cabinet_id")
    p.add_argument("--out", required=True, help="output directory (created; 0700)")
    p.add_argument("--ca-dir", required=True, help="the device CA directory (`cabinet ca init`)")
    p.add_argument("--broker", required=True, help="MQTT broker host name or IP")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--topic-prefix", help="topic prefix (default: the template's, else city/v1)")
    p.add_argument("--algorithm", choices=pki.ALGORITHMS, default="ed25519", help="TLS key algorithm")
    p.add_argument("--template", help="config to start from (default: boards/sim/cabinet.toml)")
    p.add_argument("--force", action="store_true", help="replace an existing identity in --out")
    args = p.parse_args(argv)
    try:
        result = provision(
            args.cabinet_id,
            args.out,
            ca_dir=args.ca_dir,
            broker_host=args.broker,
            broker_port=args.port,
            topic_prefix=args.topic_prefix,
            force=args.force,
            algorithm=args.algorithm,
            template=args.template,
        )
    except (ValueError, FileExistsError, pki.PKIError, OSError) as e:
        print(f"provision: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
