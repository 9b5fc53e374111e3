"""Download a list over HTTP into a spool file: streaming, bounded, retried, conditional.

- explicit connect and read timeouts (``ProducerSettings.http_timeout``);
- retries with exponential backoff and full jitter on connection errors, 429 and 5xx,
  honouring ``Retry-After``; no retry on other 4xx;
- ``If-None-Match`` / ``If-Modified-Since`` from the last run; a 304 means "unchanged";
- the body is streamed to a temp file with a SHA-256, never held in memory;
- a body larger than ``max_bytes``, or shorter than its ``Content-Length``, is an error.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.errors import SourceError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK = 1024 * 1024

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes if known)."""


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and as a source name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class Validators:
    """What the last successful download of a source returned, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Download:
    """A finished download: ``path`` is None when the server said 304 Not Modified."""

    path: Path | None
    bytes: int
    sha256: str | None
    etag: str | None
    last_modified: str | None
    attempts: int
    status_code: int

    @property
    def not_modified(self) -> bool:
        return self.path is None

    def unchanged_since(self, previous: Validators | None) -> bool:
        """304, or the same content hash as last time (for servers without validators)."""
        if self.not_modified:
            return True
        return bool(previous and previous.sha256 and previous.sha256 == self.sha256)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Downloader:
    """Downloads with an injected ``httpx.Client`` (tests pass ``httpx.MockTransport``)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy,
        max_bytes: int,
        spool_dir: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._max_bytes = max_bytes
        self._spool_dir = spool_dir
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def fetch(
        self,
        url: str,
        previous: Validators | None = None,
        progress: Progress | None = None,
    ) -> Download:
        """Download ``url`` into a spool file. The caller deletes ``Download.path``."""
        safe = redact_url(url)
        if urlsplit(url).scheme == "file":
            return self._copy_local(Path(urlsplit(url).path), progress)
        headers = {"Accept-Encoding": "gzip, identity"}
        if previous and previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous and previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(url, headers, attempts, progress)
            except _Retry as retry:
                if attempts > self._policy.retries:
                    raise SourceError(f"{safe}: {retry.reason}; gave up after {attempts} attempts") from None
                delay = self._policy.delay(attempts, self._rng)
                if retry.retry_after is not None:
                    if retry.retry_after > self._policy.backoff_max_s:
                        raise SourceError(
                            f"{safe}: {retry.reason}; the server asks to retry after "
                            f"{retry.retry_after:.0f}s, more than HTTP_BACKOFF_MAX_S="
                            f"{self._policy.backoff_max_s:.0f}s"
                        ) from None
                    delay = max(delay, retry.retry_after)
                logger.warning(
                    "download of %s failed (%s); retry %d of %d in %.1fs",
                    safe,
                    retry.reason,
                    attempts,
                    self._policy.retries,
                    delay,
                )
                self._sleep(delay)

    def _attempt(self, url: str, headers: dict[str, str], attempt: int, progress: Progress | None) -> Download:
        safe = redact_url(url)
        try:
            with self._client.stream("GET", url, headers=headers) as resp:
                status = resp.status_code
                if status == 304:
                    logger.info("%s: 304 Not Modified", safe)
                    return Download(
                        None, 0, None, resp.headers.get("ETag"), resp.headers.get("Last-Modified"), attempt, status
                    )
                if status in RETRY_STATUSES:
                    raise _Retry(f"HTTP {status} {resp.reason_phrase}", _retry_after(resp.headers.get("Retry-After")))
                if status >= 400:
                    raise SourceError(f"{safe}: HTTP {status} {resp.reason_phrase}")
                if status != 200:
                    raise SourceError(f"{safe}: unexpected HTTP {status} {resp.reason_phrase}")
                return self._spool(resp, safe, attempt, progress)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc or 'connection failed'}") from exc

    def _spool(self, resp: httpx.Response, safe: str, attempt: int, progress: Progress | None) -> Download:
        declared = _content_length(resp.headers.get("Content-Length"))
        if declared is not None and declared > self._max_bytes:
            raise SourceError(f"{safe}: Content-Length {declared} is larger than the limit of {self._max_bytes} bytes")
        digest = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix="isin-list-", suffix=".download", dir=self._spool_dir)
        path = Path(name)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_raw(CHUNK):
                    written += len(chunk)
                    if written > self._max_bytes:
                        raise SourceError(f"{safe}: body is larger than the limit of {self._max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(written, declared)
            if declared is not None and written != declared:
                raise _Retry(f"truncated body: {written} of {declared} bytes (Content-Length)")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip"):
            path.unlink(missing_ok=True)
            raise SourceError(f"{safe}: unsupported Content-Encoding {encoding!r}")
        # A gzip Content-Encoding is left in place: the list reader opens gzip by its magic bytes.
        logger.info("%s: downloaded %d bytes in %d attempt(s)", safe, written, attempt)
        return Download(
            path,
            written,
            digest.hexdigest(),
            resp.headers.get("ETag"),
            resp.headers.get("Last-Modified"),
            attempt,
            resp.status_code,
        )

    def _copy_local(self, src: Path, progress: Progress | None) -> Download:
        try:
            size = src.stat().st_size
        except OSError as exc:
            raise SourceError(f"cannot read {src}: {exc.strerror}") from exc
        if size > self._max_bytes:
            raise SourceError(f"{src}: {size} bytes is larger than the limit of {self._max_bytes} bytes")
        fd, name = tempfile.mkstemp(prefix="isin-list-", suffix=".download", dir=self._spool_dir)
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while chunk := inp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if progress:
            progress(size, size)
        return Download(Path(name), size, digest.hexdigest(), None, None, 1, 200)


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
