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

and calls `registry(cabinet_id, kid, public_key_raw)` so the ingest knows the signing key
(kid = the first 8 bytes of SHA-256 over the raw 32-byte public key).

Order: everything is generated and written into a staging directory inside out_dir first;
the registry is called next; only then are the files moved into place. A failing registry
leaves out_dir as it was (an older identity included); a crash after the registry call
leaves at most a registered public key that no cabinet holds, which is harmless.

The cabinet id becomes the certificate CN, hence the MQTT username, hence one topic level in
every ACL pattern (`city/v1/cab/%u/...`): it must be a single, wildcard-free topic level.

Command line:  python -m tools.provision.identity CAB-0001 --out DIR --ca-dir PKI --broker HOST [--port 8883]
(prints the result as JSON; register the printed kid/public key with the ingest).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from tools.provision import pki

Registry = Callable[[str, bytes, bytes], None]

FILES = {
    "signing_key": "signing.key",
    "tls_key": "tls.key",
    "tls_cert": "tls.crt",
    "ca_cert": "ca.crt",
    "config": "cabinet.toml",
}

CABINET_ID_MAX = 64
_CABINET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# CNs that have a `user` block of their own in the broker ACL (tools/mosquitto/acl.example): a
# cabinet certificate with such a CN would get that user's rights. Keep in sync with the ACL.
RESERVED_IDS = frozenset({"ingest"})
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
    ca_dir: Path | str,
    broker_host: str,
    broker_port: int,
    topic_prefix: str = "city/v1",
    registry: Registry | None = None,
    force: bool = False,
    algorithm: str = "ed25519",
    days: int = 825,
    template: Path | str | None = None,
    ca_passphrase: bytes | None = None,
    ingest_key: str | None = None,
) -> dict[str, Any]:
    """Create the identity and config of cabinet `cabinet_id` in `out_dir` (see the module doc).

    Refuses (FileExistsError) if out_dir already holds any identity file, unless `force`.
    Returns {"cabinet_id", "kid" (hex), "public_key" (hex), "cert_fingerprint", "ca_fingerprint",
    "not_after", "broker", "port", "topic_prefix", "files": {name: path}}."""
    validate_cabinet_id(cabinet_id)
    validate_topic_prefix(topic_prefix)
    if not isinstance(broker_host, str) or not _HOST.fullmatch(broker_host):
        raise ValueError(
            f"broker host {broker_host!r}: a host name or IP address (letters, digits, '.', ':', '-', '_')"
        )
    if isinstance(broker_port, bool) or not isinstance(broker_port, int) or not 1 <= broker_port <= 65535:
        raise ValueError(f"broker port {broker_port!r}: an integer from 1 to 65535")
    ca = pki.load_ca(ca_dir, passphrase=ca_passphrase)  # before anything is written

    out_dir = Path(out_dir)
    paths = {name: out_dir / fn for name, fn in FILES.items()}
    existing = [p.name for p in paths.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out_dir}: already holds a cabinet identity ({', '.join(existing)}); "
            f"refusing to overwrite it (force=True replaces it; the old keys are lost)"
        )
    if ingest_key is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", ingest_key):
        raise ValueError(
            "ingest key: the ingest's raw Ed25519 public key as 64 hex digits (`cabinet ingest init` prints it)"
        )
    config_text = cabinet_config(
        cabinet_id,
        broker_host=broker_host,
        broker_port=broker_port,
        topic_prefix=topic_prefix,
        template=template,
        ingest_key=ingest_key,
    )

    public_raw, kid, cert_pem = _write_identity(
        out_dir, paths, ca, cabinet_id, config_text, registry, days=days, algorithm=algorithm
    )
    info = pki.cert_info(cert_pem)
    return {
        "cabinet_id": cabinet_id,
        "kid": kid.hex(),
        "public_key": public_raw.hex(),
        "cert_fingerprint": info["fingerprint"],
        "ca_fingerprint": pki.cert_info(ca.cert_pem)["fingerprint"],
        "not_after": info["not_after"].isoformat(),
        "broker": broker_host,
        "port": broker_port,
        "topic_prefix": topic_prefix,
        "files": {name: str(p) for name, p in paths.items()},
    }


def _write_identity(
    out_dir: Path,
    paths: dict[str, Path],
    ca: pki.CA,
    cabinet_id: str,
    config_text: str,
    registry: Registry | None,
    *,
    days: int,
    algorithm: str,
) -> tuple[bytes, bytes, bytes]:
    """Generate the keys and the certificate into a staging directory in out_dir, call the
    registry, then move every file into place (module doc, Order). (public key, kid, cert PEM)."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stage = Path(tempfile.mkdtemp(prefix=".provision-", dir=out_dir))
    try:
        public_raw = pki.new_signing_key(stage / FILES["signing_key"])
        key_pem, cert_pem = ca.issue_client(cabinet_id, days=days, algorithm=algorithm)
        pki.write_private(stage / FILES["tls_key"], key_pem)
        pki.write_public(stage / FILES["tls_cert"], cert_pem)
        pki.write_public(stage / FILES["ca_cert"], ca.cert_pem)
        pki.write_public(stage / FILES["config"], config_text.encode())
        kid = pki.key_id(public_raw)
        if registry is not None:
            registry(cabinet_id, kid, public_raw)
        for name, fn in FILES.items():
            (stage / fn).replace(paths[name])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return public_raw, kid, cert_pem


def default_template() -> str:
    return resources.files("boards").joinpath("sim", "cabinet.toml").read_text(encoding="utf-8")


def cabinet_config(
    cabinet_id: str,
    *,
    broker_host: str,
    broker_port: int,
    topic_prefix: str = "city/v1",
    template: Path | str | None = None,
    ingest_key: str | None = None,
) -> str:
    """The config text: `template` (default boards/sim/cabinet.toml) with [cabinet] id set to
    `cabinet_id`, any [uplink] section removed, and the provisioned [uplink] appended."""
    text = Path(template).read_text(encoding="utf-8") if template is not None else default_template()
    where = str(template or "boards/sim/cabinet.toml")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where}: not valid TOML: {e}") from None
    if not isinstance(raw.get("cabinet"), dict):
        raise ValueError(f"{where}: has no [cabinet] section")
    text = _drop_table(text, "uplink")
    text = _set_cabinet_id(text, cabinet_id, where)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Provisioned for cabinet {cabinet_id} by tools/provision/identity.py on {stamp}.\n"
        f"# Keys and certificates live next to this file; keep the directory private.\n\n"
        + text.rstrip("\n")
        + "\n\n"
        + _uplink_section(broker_host, broker_port, topic_prefix, ingest_key)
    )
    check = tomllib.loads(text)  # what we wrote must parse and say what we meant
    if check["cabinet"].get("id") != cabinet_id or check.get("uplink", {}).get("broker") != broker_host:
        raise ValueError(f"{where}: could not set [cabinet] id / [uplink] in this template")
    return text


def _uplink_section(host: str, port: int, prefix: str, ingest_key: str | None = None) -> str:
    trust = f'ingest_key = "{ingest_key.lower()}"   # verifies the ingest\'s acknowledgements\n' if ingest_key else ""
    return (
        "[uplink]\n"
        f'broker = "{host}"\n'
        f"port = {port}\n"
        "tls = true\n"
        'ca = "ca.crt"          # paths relative to the config file\'s directory\n'
        'cert = "tls.crt"\n'
        'key = "tls.key"\n'
        'signing_key = "signing.key"\n'
        f'topic_prefix = "{prefix}"\n' + trust
    )


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _set_cabinet_id(text: str, cabinet_id: str, where: str) -> str:
    lines = text.splitlines(keepends=True)
    section = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            section = m.group(1).replace('"', "").replace(" ", "")
            continue
        if section == "cabinet" and re.match(r"\s*id\s*=", line):
            # keep a trailing comment: id = "OLD"   # comment
            m = re.match(r"""\s*id\s*=\s*(?:"(?:[^"\\]|\\.)*"|'[^']*'|\S+)(\s*#.*)?\s*$""", line)
            comment = m.group(1) if m and m.group(1) else ""
            lines[i] = f'id = "{cabinet_id}"' + comment + "\n"
            return "".join(lines)
    # no id key yet: add it right under the [cabinet] header
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m and m.group(1).strip() == "cabinet":
            lines.insert(i + 1, f'id = "{cabinet_id}"\n')
            return "".join(lines)
    raise ValueError(f"{where}: no [cabinet] header found")


def _drop_table(text: str, name: str) -> str:
    """`text` without the [name] table and its [name.*] sub-tables (header to next other header)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        m = _HEADER.match(line)
        if m:
            t = m.group(1).replace('"', "").replace(" ", "")
            skipping = t == name or t.startswith(name + ".")
        if not skipping:
            out.append(line)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.provision.identity",
        description="create a cabinet's identity (keys, certificate) and uplink config",
    )
    p.add_argument("cabinet_id")
    p.add_argument("--out", required=True, help="output directory (created; 0700)")
    p.add_argument("--ca-dir", required=True, help="the device CA directory (tools.provision.pki init-ca)")
    p.add_argument("--broker", required=True, help="MQTT broker host name or IP")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--topic-prefix", default="city/v1")
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
