"""An adversarial review of downloads, against real loopback servers that misbehave on purpose:
an endless chunked body, redirects to where a list never is (cloud metadata, other schemes, a
private address from a public host, an invalid URL), and file:// URLs that never end. Each must
end as one clear failure, at once, without touching anything but loopback."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from core.errors import SourceError
from producer.download import Downloader, RetryPolicy
from producer.urls import DOWNLOAD_HEADER
from tests.integration.httpd import Answer, ListServer

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
PUBLIC = "list.example.com"
"""A public host name the guard below routes to the loopback list server (no DNS, no network)."""


class LoopbackOnly(httpx.BaseTransport):
    """The real HTTP transport, for loopback only: any other host is refused and recorded, so that
    even a regression never contacts it. ``PUBLIC`` is served by the loopback list server."""

    def __init__(self, port: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.port = port
        self.refused: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC:
            request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        elif request.url.host not in LOOPBACK:
            self.refused.append(str(request.url))
            raise httpx.ConnectError("test guard: not a loopback address", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ListServer]:
    s = ListServer(tmp_path)
    yield s
    s.close()


CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def downloader(transport: httpx.BaseTransport, tmp_path: Path, max_bytes: int = 10_000_000) -> Downloader:
    client = httpx.Client(transport=transport, follow_redirects=False, timeout=10)
    CLIENTS.append(client)
    return Downloader(
        client, policy=RetryPolicy(retries=2, backoff_s=0.01), max_bytes=max_bytes, spool_dir=str(tmp_path)
    )


@pytest.mark.parametrize(
    ("location", "said"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "link-local address"),
        ("http://2852039166/latest/meta-data/", "link-local address"),  # 169.254.169.254 as one number
        ("http://[::ffff:169.254.169.254]/latest/", "link-local address"),
        ("http://[fe80::1]/", "link-local address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "link-local address"),
        ("file:///etc/passwd", "a file: URL"),
        ("ftp://127.0.0.1/list.csv", "a ftp: URL"),
        ("http://127.0.0.1\t.evil/", "Invalid URL in location header"),  # httpx's own check, retried
    ],
)
def test_a_redirect_where_no_list_is_fails_at_once_and_contacts_nothing(
    server: ListServer, tmp_path: Path, location: str, said: str
) -> None:
    path = "/moved.csv"
    url = server.script(path, Answer(status=302, headers={"Location": location}))
    guard = LoopbackOnly(0)
    with pytest.raises(SourceError) as failed:
        downloader(guard, tmp_path).fetch(url)
    assert said in str(failed.value)
    assert guard.refused == []
    assert len(server.hits(path)) == (3 if "location header" in said else 1)  # refused: not retried
    assert not list(tmp_path.glob("isin-list-*")), "a spool file was left behind"


def test_a_public_host_may_not_redirect_to_a_private_address(server: ListServer, tmp_path: Path) -> None:
    port = int(server.base.rsplit(":", 1)[1])
    server.script("/list.csv", Answer(body=b"ISIN\nINE002A01018\n"))
    server.script("/inside", Answer(status=302, headers={"Location": server.url("/list.csv")}))
    server.script("/outside", Answer(status=302, headers={"Location": server.url("/list.csv")}))
    guard = LoopbackOnly(port)
    # loopback to loopback is followed: the guard and the server do serve lists
    ok = downloader(guard, tmp_path).fetch(server.url("/inside"))
    assert ok.path is not None and ok.path.read_bytes() == b"ISIN\nINE002A01018\n"
    with pytest.raises(SourceError) as failed:
        downloader(guard, tmp_path).fetch(f"http://{PUBLIC}/outside")
    assert "from a public host to a loopback or private address" in str(failed.value)
    assert len(server.hits("/list.csv")) == 1
    assert guard.refused == []


def test_every_download_says_it_is_one(server: ListServer, tmp_path: Path) -> None:
    """The header by which the pipeline's own API knows a download (and refuses it), also sent
    with a source's own headers, which may not take it away."""
    from producer.download import Credentials

    url = server.script("/l.csv", Answer(body=b"ISIN\nINE002A01018\n"))
    client = httpx.Client(follow_redirects=False, timeout=10)
    CLIENTS.append(client)
    creds = Credentials({"X-Api-Key": "k", DOWNLOAD_HEADER: ""})
    Downloader(client, policy=RetryPolicy(retries=0), max_bytes=1000, credentials=creds).fetch(url)
    (headers,) = server.hits("/l.csv")
    assert headers.get(DOWNLOAD_HEADER) == "1" and headers.get("X-Api-Key") == "k"


class Endless(BaseHTTPRequestHandler):
    """A chunked body that never ends (bounded here: at most 1 GiB, or until the client leaves)."""

    protocol_version = "HTTP/1.1"
    sent = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"INE002A01018\n" * 5000
        try:
            for _ in range(1024**3 // len(chunk)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                type(self).sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


@pytest.fixture
def endless() -> Iterator[str]:
    Endless.sent = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/endless.csv"
    httpd.shutdown()
    httpd.server_close()


def test_an_endless_chunked_body_stops_at_max_bytes(endless: str, tmp_path: Path) -> None:
    limit = 2 * 1024 * 1024
    with pytest.raises(SourceError) as failed:
        downloader(httpx.HTTPTransport(), tmp_path, max_bytes=limit).fetch(endless)
    assert f"larger than the limit of {limit} bytes" in str(failed.value)
    assert not list(tmp_path.glob("isin-list-*"))
    assert Endless.sent < 256 * 1024 * 1024  # the client hung up; the server did not send its gigabyte


def test_a_file_url_that_never_ends_or_never_opens_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: none will
    outcome: dict[str, BaseException | None] = {}

    def fetch(url: str) -> None:
        try:
            downloader(httpx.HTTPTransport(), tmp_path, max_bytes=1024 * 1024).fetch(url)
            outcome[url] = None
        except BaseException as exc:
            outcome[url] = exc

    for url in ("file:///dev/zero", f"file://{fifo}"):
        thread = threading.Thread(target=fetch, args=(url,), daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), f"{url}: the download did not end"
        assert isinstance(outcome[url], SourceError) and "not a regular file" in str(outcome[url])
    assert not list(tmp_path.glob("isin-list-*"))
