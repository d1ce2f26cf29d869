"""[ota]: how this cabinet takes over-the-air updates (docs/ota.md).

[ota]
repository = "https://updates.example.city/cabinet"  # TUF repository (metadata/, targets/); an offer may name another
trusted_root = "/etc/cabinet/root.json"   # the fleet's 1.root.json; default <ota root>/trusted_root.json
ca_file = ""                # CA bundle for an HTTPS repository with a private CA
trial_s = 300               # a new release must pass its health gate within this time
max_attempts = 3            # starts of a new release without a commit before the launcher rolls back
max_bundle_mb = 512         # larger bundles are refused before downloading
reserve_mb = 64             # free disk space kept besides the bundle
retry_s = 60                # first retry after a transient failure (doubling, up to max_retry_s)
max_retry_s = 3600
give_up_h = 48              # transient failures turn into a failure after this long
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config.schema import F, Section


@dataclass(frozen=True)
class OtaSettings:
    repository: str = ""
    trusted_root: str = ""
    ca_file: str = ""
    trial_s: float = 300.0
    max_attempts: int = 3
    max_bundle_mb: float = 512.0
    reserve_mb: float = 64.0
    retry_s: float = 60.0
    max_retry_s: float = 3600.0
    give_up_h: float = 48.0


def _url_check(v: str) -> str | None:
    if v and not v.startswith(("http://", "https://")):
        return "an http:// or https:// URL"
    return None


def parse_ota(s: Section, base: Path | None) -> OtaSettings:
    d = OtaSettings()
    repo = s.get("repository", F("str", default="", check=_url_check, help="the TUF repository's base URL"))
    root = s.get("trusted_root", F("str", default="", help="the fleet's trusted root metadata (1.root.json)"))
    ca = s.get("ca_file", F("str", default=""))
    trial = s.get("trial_s", F("number", default=d.trial_s, min=10, max=3600))
    attempts = s.get("max_attempts", F("int", default=d.max_attempts, min=1, max=10))
    size = s.get("max_bundle_mb", F("number", default=d.max_bundle_mb, min=1, max=4096))
    reserve = s.get("reserve_mb", F("number", default=d.reserve_mb, min=0, max=4096))
    retry = s.get("retry_s", F("number", default=d.retry_s, min=1, max=86400))
    max_retry = s.get("max_retry_s", F("number", default=d.max_retry_s, min=1, max=86400))
    give_up = s.get("give_up_h", F("number", default=d.give_up_h, min=0.01, max=24 * 60))
    s.finish()

    def path(v: str | None) -> str:
        if not v:
            return ""
        p = Path(v)
        return str(p if p.is_absolute() or base is None else base / p)

    if None in (trial, attempts, size, reserve, retry, max_retry, give_up):
        return d
    return OtaSettings(
        repository=(repo or "").rstrip("/"),
        trusted_root=path(root),
        ca_file=path(ca),
        trial_s=float(trial),
        max_attempts=int(attempts),
        max_bundle_mb=float(size),
        reserve_mb=float(reserve),
        retry_s=float(retry),
        max_retry_s=max(float(max_retry), float(retry)),
        give_up_h=float(give_up),
    )
