"""An adversarial review of the new surface against a real broker, real workers and a real
loopback list server that misbehaves on purpose: a source redirected to the pipeline's own API,
a gzip bomb and an endless body, hostile query strings, and lookups racing a rebalance. The
invariant each time is the user's: a clear failure, the table untouched, never a wrong answer."""

from __future__ import annotations

import gzip
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from producer.urls import DOWNLOAD_HEADER
from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, Worker, wait_for

NSE = "/data/nse_EQUITY_L.csv"
NSE_ISINS = 2387


def status_of(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> int:
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def baseline(pipeline: Pipeline, list_server: ListServer, path: str) -> tuple[Worker, str, dict[str, Any], int]:
    """A worker, and one good run of the NSE list as the source ``nse`` at ``path``: the table and
    the count of committed raw events it left."""
    worker = pipeline.worker().start()
    worker.wait_healthy()
    url = list_server.script(path, Answer(file=list_server.data_dir / NSE.removeprefix("/data/")))
    first = pipeline.produce(url, "--source-name", "nse")
    assert first.returncode == 0, first.stderr
    pipeline.wait_processed(NSE_ISINS, markers=pipeline.partitions)
    return worker, url, pipeline.current(), len(pipeline.items(pipeline.env["TOPIC_RAW"]))


def test_a_source_redirected_to_the_pipelines_own_api_fails_and_publishes_nothing(
    pipeline: Pipeline, list_server: ListServer
) -> None:
    """Before: the API's JSON read as a list, 50 of its records published as the source's events
    (a suspicious run: no deletion, but their attributes replaced by the API's JSON form)."""
    path = f"/review-api-{pipeline.suffix}.csv"
    worker, url, table, raw = baseline(pipeline, list_server, path)
    for target in ("/isins?limit=50", "/isins/INE002A01018", "/stats", "/healthz"):
        list_server.script(path, Answer(status=302, headers={"Location": worker.api + target}))
        for extra in ([], ["--allow-shrink", "--max-delete-fraction", "1"]):
            run = pipeline.produce(url, "--source-name", "nse", "--force-publish", *extra)
            assert run.summary is not None, run.stderr
            assert run.returncode == 1 and run.summary["status"] == "failed", (target, run.summary)
            assert "HTTP 421" in run.summary["reason"] and run.summary["markers"] is False
    assert len(pipeline.items(pipeline.env["TOPIC_RAW"])) == raw, "a failed run published events"
    assert pipeline.current() == table
    # the API answers others as before
    assert worker.get("/isins/INE002A01018")[0] == 200
    assert status_of(worker.api + "/isins/INE002A01018", {DOWNLOAD_HEADER: "1"}) == 421


def test_hostile_query_strings_get_a_clear_400(pipeline: Pipeline, list_server: ListServer) -> None:
    worker, _url, table, _raw = baseline(pipeline, list_server, f"/review-q-{pipeline.suffix}.csv")
    first = sorted(table)[0]
    cases = {
        "/isins?after=" + "Z" * 5000: 400,  # was accepted, scanned from a 5000-byte key
        "/isins?after=%00%FF": 400,
        "/isins?after=IN%C3%89": 400,  # non-ASCII: was upper-cased and encoded as UTF-8
        "/isins?prefix=%D9%A3": 400,  # an Arabic-Indic digit is alphanumeric to str.isalnum
        "/isins?prefix=" + "I" * 13: 400,
        "/isins?limit=1&limit=99999999": 200,  # the first of a repeated parameter counts
        f"/isins?limit=1&after={first}": 200,
    }
    for path, status in cases.items():
        assert status_of(worker.api + path) == status, path
    code, page = worker.get("/isins?limit=1&limit=99999999")
    assert code == 200 and page["count"] == 1 and page["items"][0]["isin"] == first
    assert worker.get("/healthz")[0] == 200


def gzip_bomb(rows: int) -> bytes:
    """A valid list that unpacks to far more than it weighs: 13 bytes a row, ~1000:1."""
    return gzip.compress(b"ISIN\n" + b"INE002A01018\n" * rows, compresslevel=9)


class Endless(BaseHTTPRequestHandler):
    """A chunked list that never ends (bounded here: 1 GiB at most, or until the client leaves)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"ISIN\n" + b"INE002A01018\n" * 5000
        try:
            for _ in range(1024**3 // len(chunk)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


@pytest.fixture
def endless_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/endless.csv"
    httpd.shutdown()
    httpd.server_close()


def test_hostile_bodies_fail_clearly_and_allow_shrink_deletes_nothing_on_a_doubtful_read(
    pipeline: Pipeline, list_server: ListServer, endless_url: str
) -> None:
    pipeline.extra_env.update({"UNPACKED_MAX_BYTES": str(8 * 1024 * 1024), "HTTP_MAX_BYTES": str(16 * 1024 * 1024)})
    path = f"/review-bomb-{pipeline.suffix}.csv"
    worker, url, table, raw = baseline(pipeline, list_server, path)
    bomb = gzip_bomb(5_000_000)  # 65 MB unpacked
    assert len(bomb) < 1024 * 1024
    for headers in ({}, {"Content-Encoding": "gzip"}):
        list_server.script(path, Answer(body=bomb, headers=headers))
        run = pipeline.produce(url, "--source-name", "nse", "--allow-shrink", "--force-publish")
        assert run.summary is not None and run.summary["status"] == "failed", run.summary
        assert "unpacks to more than 8388608 bytes" in run.summary["reason"], run.summary["reason"]
    run = pipeline.produce(endless_url, "--source-name", "nse", "--allow-shrink", "--force-publish", timeout=120)
    assert run.summary is not None and run.summary["status"] == "failed", run.summary
    assert "larger than the limit of 16777216 bytes" in run.summary["reason"]
    assert len(pipeline.items(pipeline.env["TOPIC_RAW"])) == raw
    assert pipeline.current() == table
    # a real-looking shrink that is a cut body (no length, cut mid-line by the connection's close):
    # --allow-shrink and max_delete_fraction 1 accept the shrink, not the doubt about the read
    nse = (list_server.data_dir / NSE.removeprefix("/data/")).read_bytes()
    list_server.script(path, Answer(body=nse, no_length=True, truncate_to=len(nse) // 3 + 7))
    cut = pipeline.produce(url, "--source-name", "nse", "--allow-shrink", "--max-delete-fraction", "1")
    assert cut.returncode == 3 and cut.summary is not None and cut.summary["status"] == "suspicious", cut.summary
    assert cut.summary["markers"] is False and cut.summary["framing"] == "close"
    assert any("truncated" in doubt for doubt in cut.summary["doubts"]), cut.summary["doubts"]
    pipeline.wait_processed(NSE_ISINS + cut.summary["published"], markers=pipeline.partitions)
    assert pipeline.current() == table  # the two thirds it did not hold are all still there
    assert worker.stats()["isins"] == NSE_ISINS


@pytest.mark.parametrize("standbys", ["0", "1"])  # 0: a moved partition is recovered from scratch
def test_lookups_racing_a_rebalance_answer_right_or_503_never_a_wrong_404(
    pipeline: Pipeline, list_server: ListServer, standbys: str
) -> None:
    """Before: a worker that had just been given a partition answered 404 for its ISINs until it
    had recovered them; and a page of ``GET /isins`` silently missed them."""
    pipeline.extra_env["STANDBY_REPLICAS"] = standbys
    w1, _url, table, _raw = baseline(pipeline, list_server, f"/review-race-{pipeline.suffix}.csv")
    isins = sorted(table)[:: max(1, len(table) // 300)]
    first_page = sorted(table)[:50]
    w2 = pipeline.worker("w2")
    answers: Counter[tuple[str, int]] = Counter()
    wrong: list[str] = []
    stop = threading.Event()

    def look(worker: Worker) -> None:
        for n in range(200_000):  # bounded; ends when the test says so
            if stop.is_set():
                return
            isin = isins[n % len(isins)]
            page = n % 10 == 0
            try:
                code, body = worker.get("/isins?limit=50" if page else f"/isins/{isin}", timeout=5)
            except OSError:
                stop.wait(0.05)  # not listening (yet, or any more): not an answer
                continue
            answers[(worker.name, code)] += 1
            if page and code == 200:
                right = [item["isin"] for item in body["items"]] == first_page
            else:
                right = code == 503 or (code == 200 and body.get("isin") == isin)
            if not right:
                wrong.append(f"{worker.name} {'page' if page else isin}: {code} {str(body)[:200]}")

    threads = [threading.Thread(target=look, args=(w,), daemon=True) for w in (w1, w2)]
    w2.start()
    for thread in threads:
        thread.start()
    try:
        w2.wait_healthy(90)
        wait_for("w2 to answer from its partitions", lambda: answers[("w2", 200)] > 100, 60)
        w2.stop()  # leaves the group: its partitions move back to w1
        w1.wait_healthy(90)
        seen = answers[("w1", 200)]
        wait_for("w1 to answer after the rebalance", lambda: answers[("w1", 200)] > seen + 100, 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not wrong, wrong[:5]
    assert answers[("w1", 200)] > 0 and answers[("w2", 200)] > 0, answers
