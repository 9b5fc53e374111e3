"""Download a list over HTTP into a spool file: streaming, bounded, retried, conditional.

- explicit connect and read timeouts (``ProducerSettings.http_timeout``), and one deadline for
  the whole download, retries included: a server that drips a byte a second fails the run;
- retries with exponential backoff and full jitter on connection errors, 429 and 5xx,
  honouring ``Retry-After``; no retry on other 4xx;
- redirects followed here, not by httpx, at most ``MAX_REDIRECTS`` and never in a loop, only to
  http(s), never to a link-local address (cloud metadata) nor from a public host to a loopback
  or private one (``redirect_refusal``); the configured credentials and headers go only to the
  origin (scheme, host, port) they were configured for, as curl does;
- ``If-None-Match`` / ``If-Modified-Since`` from the last run; a 304 means "unchanged";
- the body is streamed to a temp file with a SHA-256, never held in memory;
- a body larger than ``max_bytes``, or shorter than its ``Content-Length``, is an error; how
  the body was framed (length, chunked, or only the connection's close) is recorded, because a
  body that ends with the connection cannot prove it is whole.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import random
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core.errors import SourceError
from core.logs import redact, register_secret
from producer.urls import (
    DOWNLOAD_HEADER,
    REDIRECT_STATUSES,
    next_hop,
    origin,
    redact_url,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK = 1024 * 1024

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes if known)."""


@dataclass(frozen=True)
class Credentials:
    """What goes only to the source's own origin: extra headers and HTTP auth."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None

    def __post_init__(self) -> None:
        for name, value in self.headers.items():  # configured headers are secrets in every log line
            register_secret(value, header=name)


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
    framing: str = "content-length"
    """How the body's end was known: ``content-length``, ``chunked``, ``close`` (only by the
    connection closing: not provably whole), ``file`` or ``not-modified``."""
    url: str = ""
    """Where the body came from after redirects (redacted)."""

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


@dataclass(frozen=True)
class _Attempt:
    """One attempt at a download, as its answer is read."""

    safe: str
    """The URL asked for, redacted."""
    attempt: int
    progress: Progress | None
    deadline: float | None
    final_url: str
    """Where the answer came from after redirects, redacted."""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Downloader:
    """Downloads with an injected ``httpx.Client`` (tests pass ``httpx.MockTransport``).

    The client must not follow redirects or carry credentials itself: ``credentials`` are
    added here, per request, to requests for the source's own origin only.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy,
        max_bytes: int,
        spool_dir: str | None = None,
        credentials: Credentials | None = None,
        deadline_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._policy = policy
        self._max_bytes = max_bytes
        self._spool_dir = spool_dir
        self._credentials = credentials or Credentials()
        self._deadline_s = deadline_s
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock

    def fetch(
        self,
        url: str,
        previous: Validators | None = None,
        progress: Progress | None = None,
        deadline_s: float | None = None,
    ) -> Download:
        """Download ``url`` into a spool file. The caller deletes ``Download.path``."""
        safe = redact_url(url)
        if urlsplit(url).scheme == "file":
            return self._copy_local(Path(urlsplit(url).path), progress)
        limit = deadline_s if deadline_s is not None else self._deadline_s
        deadline = self._clock() + limit if limit else None
        headers = {"Accept-Encoding": "gzip, identity", DOWNLOAD_HEADER: "1"}
        if previous and previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous and previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(url, headers, attempts, progress, deadline)
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
                if deadline is not None and self._clock() + delay >= deadline:
                    raise SourceError(
                        f"{safe}: {retry.reason}; no time left for another attempt before the deadline of {limit:.0f}s"
                    ) from None
                logger.warning(
                    "download of %s failed (%s); retry %d of %d in %.1fs",
                    safe,
                    retry.reason,
                    attempts,
                    self._policy.retries,
                    delay,
                )
                self._sleep(delay)

    def _request(self, url: str, headers: dict[str, str], home: tuple[str, str, int | None]) -> httpx.Request:
        """The request for one hop; credentials only for the source's own origin."""
        if origin(url) == home:
            headers = {**headers, **self._credentials.headers, DOWNLOAD_HEADER: "1"}
        return self._client.build_request("GET", url, headers=headers)

    def _attempt(
        self, url: str, headers: dict[str, str], attempt: int, progress: Progress | None, deadline: float | None
    ) -> Download:
        safe = redact_url(url)
        home = origin(url)
        seen = [url]
        try:
            while True:
                request = self._request(url, headers, home)
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        raise SourceError(f"{safe}: the download did not finish before its deadline")
                    request.extensions["timeout"] = _timeout_within(self._client.timeout, left)
                auth = self._credentials.auth if origin(url) == home else None
                response = self._client.send(request, auth=auth, stream=True, follow_redirects=False)
                try:
                    location = response.headers.get("Location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        url = next_hop(response.url, location, seen, safe)
                        continue
                    return self._answer(response, _Attempt(safe, attempt, progress, deadline, redact_url(url)))
                finally:
                    response.close()
        except httpx.TimeoutException as exc:
            if deadline is not None and self._clock() >= deadline:
                raise SourceError(f"{safe}: the download did not finish before its deadline") from exc
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {redact(str(exc)) or 'connection failed'}") from exc

    def _answer(self, resp: httpx.Response, at: _Attempt) -> Download:
        status = resp.status_code
        if status == 304:
            logger.info("%s: 304 Not Modified", at.safe)
            etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            return Download(None, 0, None, etag, modified, at.attempt, status, "not-modified", at.final_url)
        if status in RETRY_STATUSES:
            raise _Retry(f"HTTP {status} {resp.reason_phrase}", _retry_after(resp.headers.get("Retry-After")))
        if status >= 400:
            raise SourceError(f"{at.safe}: HTTP {status} {resp.reason_phrase}")
        if status != 200:
            raise SourceError(f"{at.safe}: unexpected HTTP {status} {resp.reason_phrase}")
        return self._spool(resp, at)

    def _spool(self, resp: httpx.Response, at: _Attempt) -> Download:
        safe, deadline, progress = at.safe, at.deadline, at.progress
        declared = _content_length(resp.headers.get("Content-Length"))
        if declared is not None and declared > self._max_bytes:
            raise SourceError(f"{safe}: Content-Length {declared} is larger than the limit of {self._max_bytes} bytes")
        chunked = "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
        framing = "chunked" if chunked else ("content-length" if declared is not None else "close")
        digest = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix="isin-list-", suffix=".download", dir=self._spool_dir)
        path = Path(name)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_raw():  # as it arrives: a drip still reaches the deadline check
                    written += len(chunk)
                    if written > self._max_bytes:
                        raise SourceError(f"{safe}: body is larger than the limit of {self._max_bytes} bytes")
                    if deadline is not None and self._clock() > deadline:
                        raise SourceError(
                            f"{safe}: the download did not finish before its deadline ({written} bytes so far)"
                        )
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
        logger.info("%s: downloaded %d bytes in %d attempt(s), framed by %s", safe, written, at.attempt, framing)
        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        return Download(path, written, digest.hexdigest(), etag, modified, at.attempt, 200, framing, at.final_url)

    def _copy_local(self, src: Path, progress: Progress | None) -> Download:
        try:
            st = src.stat()
        except OSError as exc:
            raise SourceError(f"cannot read {src}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):  # /dev/zero never ends, a FIFO may never open
            raise SourceError(f"{src}: not a regular file")
        if st.st_size > self._max_bytes:
            raise SourceError(f"{src}: {st.st_size} bytes is larger than the limit of {self._max_bytes} bytes")
        fd, name = tempfile.mkstemp(prefix="isin-list-", suffix=".download", dir=self._spool_dir)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                while chunk := inp.read(CHUNK):
                    size += len(chunk)
                    if size > self._max_bytes:  # it grew while being read
                        raise SourceError(f"{src}: larger than the limit of {self._max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        if progress:
            progress(size, size)
        return Download(Path(name), size, digest.hexdigest(), None, None, 1, 200, "file", str(src))


def _timeout_within(timeout: httpx.Timeout, left: float) -> dict[str, float | None]:
    """The client's timeouts, none longer than the time left before the deadline."""

    def cap(value: float | None) -> float:
        return max(0.001, min(value, left) if value is not None else left)

    return {name: cap(getattr(timeout, name)) for name in ("connect", "read", "write", "pool")}


def _content_length(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isascii() and value.strip().isdigit() else None


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
