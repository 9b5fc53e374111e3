"""A loopback HTTP server for tests: real files, unchanged, and scripted answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Answer:
    """One scripted response. ``truncate_to`` sends the full Content-Length but fewer bytes."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    truncate_to: int | None = None
    delay_s: float = 0.0
    rate_bps: int | None = None  # trickle the body at about this many bytes per second
    no_length: bool = False
    """No Content-Length and no chunked encoding: the body ends when the connection closes
    (``truncate_to`` then cuts it with nothing to tell the client)."""


class ListServer:
    """Serves ``/data/<name>`` from a directory of real lists, ``/files/<name>`` from registered
    files, and scripted answers (consumed in order; the last one repeats) for any path."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.files: dict[str, Path] = {}
        self.scripts: dict[str, list[Answer]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append((self.path, dict(self.headers.items())))
                    script = server.scripts.get(path)
                    answer = None
                    if script:
                        answer = script.pop(0) if len(script) > 1 else script[0]
                if answer is None:
                    answer = server._static(path)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                body = answer.file.read_bytes() if answer.file else answer.body
                self.send_response(answer.status)
                headers = {**({} if answer.no_length else {"Content-Length": str(len(body))}), **answer.headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                if answer.truncate_to is not None or answer.no_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if answer.status in (204, 304):
                    return
                if answer.truncate_to is not None:
                    self.wfile.write(body[: answer.truncate_to])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if answer.rate_bps:
                    chunk = max(1, answer.rate_bps // 20)
                    try:
                        for start in range(0, len(body), chunk):
                            self.wfile.write(body[start : start + chunk])
                            self.wfile.flush()
                            time.sleep(0.05)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True  # the client went away (killed, in some tests)
                    return
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-http", daemon=True)
        self._thread.start()

    def _static(self, path: str) -> Answer:
        if path.startswith("/data/"):
            candidate = self.data_dir / path.removeprefix("/data/")
            if candidate.is_file() and candidate.parent == self.data_dir:
                return Answer(file=candidate, headers={"Content-Type": "text/csv"})
        elif path.startswith("/files/") and path.removeprefix("/files/") in self.files:
            return Answer(file=self.files[path.removeprefix("/files/")])
        return Answer(status=404, body=b"not found")

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add_file(self, name: str, path: Path) -> str:
        self.files[name] = path
        return self.url(f"/files/{name}")

    def script(self, path: str, *answers: Answer) -> str:
        with self._lock:
            self.scripts[path] = list(answers)
        return self.url(path)

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def serving(data_dir: Path) -> Iterator[ListServer]:
    server = ListServer(data_dir)
    try:
        yield server
    finally:
        server.close()
