"""The downloader against httpx.MockTransport: retries, backoff, conditional GET, limits."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from core.errors import SourceError
from producer.download import Credentials, Downloader, RetryPolicy, Validators
from producer.urls import redact_url

URL = "https://user:secret@lists.example.invalid/isins.csv?apikey=hunter2"
BODY = b"ISIN\nUS0378331005\n"


def ok(body: bytes = BODY, **kwargs: object) -> httpx.Response:
    """A 200 whose body is a stream, as from a real server (MockTransport pre-reads bytes)."""
    return httpx.Response(200, content=iter([body]), **kwargs)  # type: ignore[arg-type]


class Script:
    """Answers requests in order from a list of responses (or exceptions)."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def make(script: Script, tmp_path: Path, retries: int = 3, max_bytes: int = 10_000) -> tuple[Downloader, list[float]]:
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(script))
    downloader = Downloader(
        client,
        policy=RetryPolicy(retries=retries, backoff_s=1.0, backoff_max_s=30.0),
        max_bytes=max_bytes,
        spool_dir=str(tmp_path),
        sleep=sleeps.append,
        rng=random.Random(7),
    )
    return downloader, sleeps


def test_503_twice_then_200_succeeds_after_backoff(tmp_path: Path) -> None:
    script = Script(httpx.Response(503), httpx.Response(503), ok())
    downloader, sleeps = make(script, tmp_path)
    result = downloader.fetch(URL)
    assert result.attempts == 3
    assert result.path is not None and result.path.read_bytes() == BODY
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter under 1s, 2s


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    downloader, sleeps = make(script, tmp_path)
    downloader.fetch(URL)
    assert sleeps[0] >= 7


def test_retry_after_beyond_the_limit_fails_clearly(tmp_path: Path) -> None:
    downloader, sleeps = make(Script(httpx.Response(503, headers={"Retry-After": "3600"})), tmp_path)
    with pytest.raises(SourceError, match="retry after 3600s"):
        downloader.fetch(URL)
    assert sleeps == []


def test_404_is_not_retried(tmp_path: Path) -> None:
    script = Script(httpx.Response(404))
    downloader, sleeps = make(script, tmp_path)
    with pytest.raises(SourceError, match="HTTP 404 Not Found"):
        downloader.fetch(URL)
    assert len(script.requests) == 1 and sleeps == []


def test_errors_never_show_credentials(tmp_path: Path) -> None:
    downloader, _ = make(Script(httpx.Response(403)), tmp_path)
    with pytest.raises(SourceError) as info:
        downloader.fetch(URL)
    assert "secret" not in str(info.value) and "hunter2" not in str(info.value)
    assert redact_url(URL) == "https://lists.example.invalid/isins.csv"


def test_connection_errors_are_retried_then_reported(tmp_path: Path) -> None:
    script = Script(*[httpx.ConnectError("connection refused")] * 3)
    downloader, sleeps = make(script, tmp_path, retries=2)
    with pytest.raises(SourceError, match="ConnectError: connection refused; gave up after 3 attempts"):
        downloader.fetch(URL)
    assert len(sleeps) == 2


def test_read_timeout_is_retried(tmp_path: Path) -> None:
    script = Script(httpx.ReadTimeout("slow"), ok())
    downloader, _ = make(script, tmp_path)
    assert downloader.fetch(URL).attempts == 2


def test_conditional_get_and_304(tmp_path: Path) -> None:
    script = Script(httpx.Response(304, headers={"ETag": '"v1"'}))
    downloader, _ = make(script, tmp_path)
    result = downloader.fetch(URL, Validators(etag='"v1"', last_modified="Sun, 22 Nov 2026 07:15:00 GMT"))
    assert result.not_modified and result.path is None
    sent = script.requests[0].headers
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Sun, 22 Nov 2026 07:15:00 GMT"


def test_same_content_hash_counts_as_unchanged(tmp_path: Path) -> None:
    downloader, _ = make(Script(ok(), ok(BODY + b"DE0007236101\n")), tmp_path)
    first = downloader.fetch(URL)
    assert first.etag is None
    assert first.unchanged_since(Validators(sha256=first.sha256))
    second = downloader.fetch(URL)
    assert not second.unchanged_since(Validators(sha256=first.sha256))


def test_content_length_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    script = Script(httpx.Response(200, headers={"Content-Length": "999999"}, content=b"x"))
    downloader, _ = make(script, tmp_path, max_bytes=1000)
    with pytest.raises(SourceError, match="Content-Length 999999 is larger than the limit of 1000"):
        downloader.fetch(URL)


def test_streamed_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    def chunked(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600, b"x" * 600]))

    downloader, _ = make(Script(chunked), tmp_path, max_bytes=1000)
    with pytest.raises(SourceError, match="larger than the limit of 1000 bytes"):
        downloader.fetch(URL)
    assert list(tmp_path.iterdir()) == []  # the partial spool file is gone


def test_truncated_body_fails_after_retries(tmp_path: Path) -> None:
    def short(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(len(BODY) + 50)}, content=iter([BODY]))

    downloader, _ = make(Script(short, short), tmp_path, retries=1)
    with pytest.raises(SourceError, match=rf"truncated body: {len(BODY)} of {len(BODY) + 50} bytes"):
        downloader.fetch(URL)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_content_encoding(tmp_path: Path) -> None:
    script = Script(ok(b"xx", headers={"Content-Encoding": "br"}))
    downloader, _ = make(script, tmp_path)
    with pytest.raises(SourceError, match="unsupported Content-Encoding 'br'"):
        downloader.fetch(URL)


def test_file_urls_are_copied(tmp_path: Path) -> None:
    src = tmp_path / "list.csv"
    src.write_bytes(BODY)
    downloader, _ = make(Script(), tmp_path)
    result = downloader.fetch(src.as_uri())
    assert result.path is not None and result.path.read_bytes() == BODY
    with pytest.raises(SourceError, match="cannot read"):
        downloader.fetch((tmp_path / "missing.csv").as_uri())


# -- redirects, credentials and deadlines ---------------------------------------------------


def redirect(to: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"Location": to})


def test_credentials_go_only_to_their_origin(tmp_path: Path) -> None:
    script = Script(
        redirect("/moved.csv"),  # same origin: credentials still sent
        redirect("https://cdn.example.invalid/isins.csv?sig=abc"),  # another host: dropped
        ok(),
    )
    client = httpx.Client(transport=httpx.MockTransport(script))
    downloader = Downloader(
        client,
        policy=RetryPolicy(retries=0),
        max_bytes=10_000,
        spool_dir=str(tmp_path),
        credentials=Credentials({"X-Api-Key": "k3y"}, httpx.BasicAuth("u", "p")),
    )
    result = downloader.fetch("https://lists.example.invalid/isins.csv")
    assert result.path is not None and result.path.read_bytes() == BODY
    first, second, third = script.requests
    assert first.headers["X-Api-Key"] == "k3y" and first.headers["Authorization"].startswith("Basic ")
    assert second.url.path == "/moved.csv" and second.headers["X-Api-Key"] == "k3y"
    assert "X-Api-Key" not in third.headers and "Authorization" not in third.headers
    assert result.url == "https://cdn.example.invalid/isins.csv"  # redacted: no query


def test_a_scheme_downgrade_drops_credentials(tmp_path: Path) -> None:
    script = Script(redirect("http://lists.example.invalid/isins.csv"), ok())
    client = httpx.Client(transport=httpx.MockTransport(script))
    downloader = Downloader(
        client, policy=RetryPolicy(retries=0), max_bytes=10_000, credentials=Credentials({"X-Api-Key": "k3y"})
    )
    downloader.fetch("https://lists.example.invalid/isins.csv")
    assert "X-Api-Key" not in script.requests[1].headers


def test_redirect_loops_and_chains_fail_clearly(tmp_path: Path) -> None:
    loop = Script(redirect("/b?token=s3cret"), redirect("/a"), redirect("/b?token=s3cret"))
    downloader, _ = make(loop, tmp_path, retries=0)
    with pytest.raises(SourceError, match="a redirect loop") as err:
        downloader.fetch("https://lists.example.invalid/a")
    assert "s3cret" not in str(err.value)
    chain = Script(*(redirect(f"/{i}") for i in range(20)))
    downloader, _ = make(chain, tmp_path, retries=0)
    with pytest.raises(SourceError, match="more than 10 redirects"):
        downloader.fetch("https://lists.example.invalid/start")


def test_the_deadline_bounds_retries_and_the_body(tmp_path: Path) -> None:
    now = [0.0]

    def slow_body(request: httpx.Request) -> httpx.Response:
        def chunks() -> object:
            for _ in range(100):
                now[0] += 1.0  # each chunk arrives a second later
                yield b"x"

        return httpx.Response(200, content=chunks())  # type: ignore[arg-type]

    client = httpx.Client(transport=httpx.MockTransport(Script(slow_body)))
    downloader = Downloader(
        client, policy=RetryPolicy(retries=3), max_bytes=10_000, deadline_s=10, clock=lambda: now[0]
    )
    with pytest.raises(SourceError, match="did not finish before its deadline"):
        downloader.fetch("https://lists.example.invalid/isins.csv")
    assert now[0] < 20

    now[0] = 0.0
    sleeps: list[float] = []
    busy = Script(*(httpx.Response(503, headers={"Retry-After": "4"}) for _ in range(4)))
    downloader = Downloader(
        httpx.Client(transport=httpx.MockTransport(busy)),
        policy=RetryPolicy(retries=3),
        max_bytes=10_000,
        deadline_s=10,
        clock=lambda: now[0],
        sleep=lambda s: (sleeps.append(s), now.__setitem__(0, now[0] + s)),  # type: ignore[func-returns-value]
    )
    with pytest.raises(SourceError, match="no time left for another attempt"):
        downloader.fetch("https://lists.example.invalid/isins.csv")
    assert sum(sleeps) < 10


def test_framing_is_recorded(tmp_path: Path) -> None:
    downloader, _ = make(Script(ok(headers={"Content-Length": str(len(BODY))})), tmp_path)
    assert downloader.fetch(URL).framing == "content-length"
    downloader, _ = make(Script(ok(headers={"Transfer-Encoding": "chunked"})), tmp_path)
    assert downloader.fetch(URL).framing == "chunked"
    # no length, no chunking: the body ends when the connection closes
    downloader, _ = make(Script(httpx.Response(200, stream=httpx.ByteStream(BODY))), tmp_path)
    assert downloader.fetch(URL).framing == "close"
