"""An adversarial review of the new surface, as tests: the HTTP API's hostile requests, and a
source whose URL redirects to the pipeline's own API."""

from __future__ import annotations

import urllib.error
import urllib.request

from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline

NSE = "/data/nse_EQUITY_L.csv"


def raw_get(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_hostile_requests_get_a_clear_4xx_and_the_worker_stays_healthy(
    pipeline: Pipeline, list_server: ListServer
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(list_server.url(NSE)).returncode == 0
    pipeline.wait_processed(2387, markers=pipeline.partitions)
    api = worker.api
    cases = {
        "/isins?limit=-1": 400,
        "/isins?limit=99999999999999999999": 400,
        "/isins?limit=abc": 400,
        "/isins?prefix=%00": 400,
        "/isins/%00": 400,
        "/isins/..%2F..%2Fetc%2Fpasswd": 400,
        "/isins/" + "A" * 5000: 400,
        "/isins/INE144J01027?as_of=": 400,
        "/isins/INE144J01027?as_of=yesterday": 400,
        "/isins/INE144J01027?as_of=2026-12-01&known_at=never": 400,
        "/isins/INE144J01028/history": 400,  # a bad check digit
    }
    for path, status in cases.items():
        assert raw_get(api + path) == status, path
    assert raw_get(api + "/isins/INE144J01027", {"X-Junk": "x" * 60_000}) in (400, 431)
    assert raw_get(api + "/isins/INE144J01027") == 200
    assert worker.get("/healthz")[0] == 200


def test_a_source_redirected_to_the_pipelines_own_api_deletes_nothing(
    pipeline: Pipeline, list_server: ListServer
) -> None:
    """The API refuses a download (421): the run fails, publishes nothing, deletes nothing, and the
    table is as the source's last good run left it; --allow-shrink changes none of that."""
    worker = pipeline.worker().start()
    worker.wait_healthy()
    path = f"/moving-{pipeline.suffix}.csv"
    url = list_server.script(path, Answer(file=list_server.data_dir / NSE.removeprefix("/data/")))
    first = pipeline.produce(url, "--source-name", "nse")
    assert first.returncode == 0
    pipeline.wait_processed(2387, markers=pipeline.partitions)
    list_server.script(path, Answer(status=302, headers={"Location": f"{worker.api}/isins?limit=50"}))
    for extra in ([], ["--allow-shrink"]):
        again = pipeline.produce(url, "--source-name", "nse", "--force-publish", *extra)
        assert again.summary is not None and again.returncode != 0
        assert again.summary["status"] == "failed" and "421" in str(again.summary["reason"]), again.summary
        assert again.summary["published"] == 0 and again.summary["markers"] is False
    assert len(pipeline.current()) == 2387
    assert worker.stats()["isins"] == 2387
