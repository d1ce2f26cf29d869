"""HTTP transport for OTA: python-tuf's FetcherInterface over urllib3, plus resumable
target downloads.

`HttpFetcher._fetch` serves ngclient's metadata requests: HTTP errors become
`DownloadHTTPError(msg, status)` (a 404/403 on N+1.root.json ends the root walk) and
errors raised while the body is being iterated become `DownloadError` (python-tuf only
wraps errors raised by the call itself). `download_resumable` fetches a (content-addressed)
target into a `.part` file with `Range: bytes=<size>-`, so a dropped link or a restart
continues where it stopped; nothing in the `.part` file is trusted before the caller
checks length and hashes. TUF no longer promises slow-retrieval protection: the connect
and read timeouts bound a stalled link, a trickling one is bounded only by the caller.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import urllib3
from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from ota.errors import OtaError

USER_AGENT = "cabinet-agent-ota/1"
CHUNK = 64 * 1024
FSYNC_EVERY = 1024 * 1024
MIN_PROGRESS = 64 * 1024  # an attempt moving the download this far resets the retry count
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_NET_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def default_backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): 0.5 s doubling, at most 30 s."""
    return min(30.0, 0.5 * 2 ** (attempt - 1))


class HttpFetcher(FetcherInterface):
    """urllib3 transport for ngclient and for resumable target downloads."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        ca_file: Path | str | None = None,
        user_agent: str = USER_AGENT,
        chunk_size: int = CHUNK,
        retries: int = 5,
        backoff: Callable[[int], float] = default_backoff,
        sleep: Callable[[float], None] = time.sleep,
        min_progress: int = MIN_PROGRESS,
    ) -> None:
        for n, v in (("connect_timeout_s", connect_timeout_s), ("read_timeout_s", read_timeout_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 3600:
                raise ValueError(f"{n} must be in (0, 3600] seconds, got {v!r}")
        if not isinstance(chunk_size, int) or not 1024 <= chunk_size <= 16 * 2**20:
            raise ValueError(f"chunk_size must be 1 KiB..16 MiB, got {chunk_size!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 1000:
            raise ValueError(f"retries must be 0..1000, got {retries!r}")
        if not isinstance(min_progress, int) or min_progress < 0:
            raise ValueError(f"min_progress must be >= 0 (0: never reset), got {min_progress!r}")
        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        self.min_progress = min_progress
        kw: dict = {}
        if ca_file is not None:
            if not Path(ca_file).is_file():
                raise ValueError(f"CA file {ca_file} does not exist")
            kw = {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(ca_file)}
        self.timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self.chunk_size = chunk_size
        self.headers = {"User-Agent": user_agent}
        self.pool = urllib3.PoolManager(
            retries=urllib3.Retry(total=2, connect=2, read=0, status=0, redirect=3, backoff_factor=0.2),
            headers=self.headers,
            **kw,
        )

    # ---- ngclient transport (metadata)

    def _request(
        self, url: str, headers: dict | None = None, timeout: urllib3.Timeout | None = None
    ) -> urllib3.BaseHTTPResponse:
        if not url.startswith(("http://", "https://")):
            raise exceptions.DownloadError(f"not an http(s) URL: {url}")
        try:
            return self.pool.request(
                "GET",
                url,
                headers=headers,
                preload_content=False,
                decode_content=False,
                timeout=timeout or self.timeout,
            )
        except _NET_ERRORS as e:
            raise exceptions.DownloadError(f"cannot reach {url}: {e}") from e

    def _fetch(self, url: str) -> Iterator[bytes]:
        resp = self._request(url)
        if resp.status != 200:
            try:
                resp.drain_conn()
            except _NET_ERRORS:
                pass
            resp.release_conn()
            raise exceptions.DownloadHTTPError(f"HTTP {resp.status} for {url}", resp.status)
        return self._chunks(resp, url)

    def _chunks(self, resp: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
        done = False
        try:
            for chunk in resp.stream(self.chunk_size):
                if chunk:
                    yield chunk
            done = True
        except _NET_ERRORS as e:  # gotcha 3: convert while iterating
            raise exceptions.DownloadError(f"download of {url} broke off: {e}") from e
        finally:
            if not done:
                resp.close()  # abandoned half-way: do not reuse
            resp.release_conn()

    # ---- resumable target download

    def download_resumable(
        self,
        url: str,
        part: Path,
        length: int,
        *,
        progress: Callable[[int, int], None] | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        backoff: Callable[[int], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> Path:
        """Complete `part` to exactly `length` bytes from `url` and return it.

        Appends with `Range: bytes=<size>-`; a 206 must start at <size>; a 200 (Range
        ignored) starts over; a 416 means the part is not a prefix of the server's file
        (discarded, start over). Never writes more than `length` bytes: a longer body
        raises OtaError("endless_data") and discards the part. Link drops and 5xx are
        retried `retries` times (an attempt that advanced by `min_progress` bytes resets
        the count; 0 never resets), then OtaError("unreachable") with the part kept for
        the next call. Other HTTP errors: OtaError("http_<code>"). `progress(done, total)`
        per chunk. None arguments take the fetcher's settings (timeout_s: its read timeout)."""
        retries = self.retries if retries is None else retries
        backoff = backoff or self.backoff
        sleep = sleep or self.sleep
        part = Path(part)
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a non-negative int, got {length!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        timeout = self.timeout if timeout_s is None else urllib3.Timeout(connect=timeout_s, read=timeout_s)
        failures, restarts = 0, 0
        while True:
            size = part.stat().st_size if part.exists() else 0
            if size > length:
                part.unlink()
                size = 0
            if size == length:
                if not part.exists():
                    part.touch()
                if progress:
                    progress(length, length)
                return part
            try:
                self._attempt(url, part, size, length, timeout, progress)
            except _Restart as r:
                restarts += 1
                part.unlink(missing_ok=True)
                if restarts > 3:
                    raise OtaError("bad_response", f"{url}: {r}") from None
                continue
            except _Transient as t:
                reset = self.min_progress and t.advanced >= self.min_progress
                failures = 0 if reset else failures + 1
                if failures > retries:
                    raise OtaError(
                        "unreachable",
                        f"{url}: {t} ({part.stat().st_size if part.exists() else 0}"
                        f"/{length} bytes kept in {part.name})",
                    ) from None
                if failures:
                    sleep(backoff(failures))
                continue

    def _attempt(self, url: str, part: Path, size: int, length: int, timeout: urllib3.Timeout, progress) -> int:
        """One request; returns the bytes added. Raises _Transient, _Restart or OtaError."""
        headers = {"Range": f"bytes={size}-"} if size else {}
        try:
            resp = self.pool.request(
                "GET", url, headers=headers, preload_content=False, decode_content=False, timeout=timeout, retries=False
            )
        except _NET_ERRORS as e:
            raise _Transient(f"cannot reach the server: {e}", 0) from None
        ok = False
        try:
            status = resp.status
            if status == 416:
                raise _Restart(f"416 for a part of {size} bytes (not a prefix of the server's file)")
            if status in (408, 429) or status >= 500:
                raise _Transient(f"HTTP {status}", 0)
            if status not in (200, 206):
                raise OtaError(f"http_{status}", f"HTTP {status} for {url}")
            start = 0
            if status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != size:
                    raise _Restart(
                        f"206 with Content-Range {resp.headers.get('Content-Range')!r} for Range bytes={size}-"
                    )
                start = size
            clen = resp.headers.get("Content-Length")
            if clen is not None and clen.isdigit() and start + int(clen) > length:
                raise OtaError("endless_data", f"{url} sends {start + int(clen)} bytes, the signed length is {length}")
            n = self._write_body(resp, part, start, length, progress)
            ok = True
            return n
        finally:
            if not ok:
                resp.close()  # do not reuse a half-read connection
            resp.release_conn()

    def _write_body(self, resp, part: Path, start: int, length: int, progress) -> int:
        written = synced = 0
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.truncate(start)
            f.seek(start)
            try:
                for chunk in resp.stream(self.chunk_size):
                    if start + written + len(chunk) > length:
                        f.close()
                        part.unlink(missing_ok=True)
                        raise OtaError(
                            "endless_data", f"the server sends more than the signed length of {length} bytes"
                        )
                    f.write(chunk)
                    written += len(chunk)
                    if written - synced >= FSYNC_EVERY:
                        f.flush()
                        os.fsync(f.fileno())
                        synced = written
                    if progress:
                        progress(start + written, length)
            except _NET_ERRORS as e:
                f.flush()
                os.fsync(f.fileno())
                raise _Transient(f"link dropped after {start + written} bytes: {e}", written) from None
            f.flush()
            os.fsync(f.fileno())
        if start + written < length:
            raise _Transient(f"body ended after {start + written} of {length} bytes", written)
        return written


class _Transient(Exception):
    def __init__(self, msg: str, advanced: int) -> None:
        super().__init__(msg)
        self.advanced = advanced


class _Restart(Exception):
    pass
