"""The OTA error type shared by the fetcher, the client and the repository tool.

`OtaError(reason, detail)` carries a short machine reason (reported in the status record)
and a human detail. `.transient` says whether the caller should simply try again later
(network, server trouble, a clock or disk problem) rather than give the update up.
`RepoError` is the operator-side error of ota.repo (bad input, missing keys).
"""

from __future__ import annotations

TRANSIENT_REASONS = frozenset({"unreachable", "metadata_expired", "no_space", "disk_error"})


class OtaError(Exception):
    """An update step failed; `reason` is a short token, `detail` the explanation."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if not isinstance(reason, str) or not reason:
            raise ValueError("OtaError needs a non-empty reason")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def transient(self) -> bool:
        """True when retrying later may succeed (unreachable, HTTP 5xx/408/429, expired
        metadata (clock or repository not refreshed yet), no space, disk error)."""
        if self.reason in TRANSIENT_REASONS:
            return True
        if self.reason.startswith("http_"):
            code = self.reason[5:]
            return code.isdigit() and (code.startswith("5") or code in ("408", "429"))
        return False


class RepoError(ValueError):
    """The operator's repository tool refused an input or could not find a key."""
