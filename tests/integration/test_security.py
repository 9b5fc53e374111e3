"""TLS and mTLS to Kafka, credentials for vendor feeds, the API token, CORS, metrics and JSON logs."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from pathlib import Path

from core.broker import EmbeddedBroker, free_port
from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, wait_for
from tests.tls import TlsProxy, make_pki

NSE = "/data/nse_EQUITY_L.csv"


def test_mtls_to_kafka_for_the_producer_and_the_stream_worker(list_server: ListServer, tmp_path: Path) -> None:
    """confluent-kafka (producer) and aiokafka (Faust) both speak TLS with a client certificate."""
    pki = make_pki(tmp_path)
    proxy_port = free_port()
    # the broker advertises the proxy: every client connection goes through TLS
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log", advertised_port=proxy_port)
    proxy = None
    try:
        proxy = TlsProxy(pki, broker.port, proxy_port)
        broker.start(
            ready_conf={
                "bootstrap.servers": f"127.0.0.1:{proxy_port}",
                "security.protocol": "ssl",
                "ssl.ca.location": str(pki.ca),
                "ssl.certificate.location": str(pki.client_cert),
                "ssl.key.location": str(pki.client_key),
            }
        )
        pipeline = Pipeline(f"127.0.0.1:{proxy_port}", uuid.uuid4().hex[:10], tmp_path)
        pipeline.extra_env.update(
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_LOCATION": str(pki.ca),
                "KAFKA_SSL_CERTIFICATE_LOCATION": str(pki.client_cert),
                "KAFKA_SSL_KEY_LOCATION": str(pki.client_key),
            }
        )
        try:
            worker = pipeline.worker().start()
            worker.wait_healthy(60)
            result = pipeline.produce(list_server.url(NSE))
            assert result.returncode == 0, result.stderr
            stats = pipeline.wait_processed(2387, markers=pipeline.partitions)
            assert stats["isins"] == 2387

            # without a client certificate the proxy refuses the handshake: a clear failure
            no_cert = {**pipeline.env, "KAFKA_SSL_CERTIFICATE_LOCATION": "", "KAFKA_SSL_KEY_LOCATION": ""}
            no_cert.pop("KAFKA_SSL_CERTIFICATE_LOCATION")
            no_cert.pop("KAFKA_SSL_KEY_LOCATION")
            refused = pipeline.cli(
                "produce", "--source", list_server.url(NSE), env={**no_cert, "KAFKA_CONNECT_TIMEOUT_S": "3"}
            )
            assert refused.returncode == 1 and "cannot reach Kafka" in refused.last_error_line
        finally:
            pipeline.close()
    finally:
        broker.stop()
        if proxy is not None:
            proxy.close()


def test_vendor_credentials_are_sent_and_never_printed(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    secret, key = "s3cret-pass-word", "k3y-0123456789"
    path = f"/vendor-{pipeline.suffix}.csv"
    list_server.script(path, Answer(file=shared_data / "nse_EQUITY_L.csv"))
    url = list_server.url(path).replace("http://", "http://feeduser:url-s3cret@") + "?token=q-s3cret"
    pipeline.extra_env.update(
        {
            "SOURCE_USERNAME": "feeduser",
            "SOURCE_PASSWORD": secret,
            "SOURCE_HTTP_HEADERS": json.dumps({"X-Api-Key": key}),
            "LOG_LEVEL": "DEBUG",
        }
    )
    result = pipeline.produce(url)
    assert result.returncode == 0, result.stderr
    sent = list_server.hits(path + "?token=q-s3cret")[0]
    assert sent["X-Api-Key"] == key
    assert base64.b64decode(sent["Authorization"].split()[1]).decode() == f"feeduser:{secret}"
    output = result.stdout + result.stderr + json.dumps(pipeline.runs(), default=str)
    for leaked in (secret, key, "url-s3cret", "q-s3cret"):
        assert leaked not in output, leaked
    assert result.summary is not None and result.summary["source"] == list_server.url(path)


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_api_token_cors_and_metrics(pipeline: Pipeline, list_server: ListServer) -> None:
    token = "t0ken-" + pipeline.suffix
    pipeline.extra_env.update({"API_TOKEN": token, "CORS_ORIGINS": '["https://app.example"]'})
    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(list_server.url("/data/bse_Equity.csv")).returncode == 0
    bearer = {"Authorization": f"Bearer {token}"}
    wait_for("the table", lambda: worker.get("/stats", headers=bearer)[1].get("isins") == 4924, 60)

    api = worker.api
    assert http(f"{api}/isins/INE117A01022")[0] == 401
    assert http(f"{api}/isins/INE117A01022", {"Authorization": "Bearer wrong"})[0] == 401
    assert http(f"{api}/stats")[0] == 401
    status, _, body = http(f"{api}/isins/INE117A01022", bearer)
    assert status == 200 and json.loads(body)["isin"] == "INE117A01022"
    for public in ("/healthz", "/livez", "/metrics"):
        assert http(api + public)[0] == 200, public

    # CORS: only for the configured origin
    _, allowed, _ = http(f"{api}/isins/INE117A01022", {**bearer, "Origin": "https://app.example"})
    assert allowed.get("Access-Control-Allow-Origin") == "https://app.example"
    _, other, _ = http(f"{api}/isins/INE117A01022", {**bearer, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other

    text = http(f"{api}/metrics")[2].decode()
    for series in (
        "isin_stream_events_total 4924.0",
        'isin_stream_changes_total{kind="new"} 4924.0',
        'isin_stream_changes_total{kind="deleted"} 0.0',
        "isin_stream_dead_letters_total 0.0",
        'isin_stream_consumer_lag{partition="0"}',
        'isin_stream_table_isins{partition="0"}',
        'isin_stream_query_duration_seconds_bucket{le="0.01",route="/isins/{isin}"}',
        'isin_stream_queries_total{route="/isins/{isin}",status="401"} 2.0',
    ):
        assert series in text, series
    sizes = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("isin_stream_table_isins{")]
    assert sum(sizes) == 4924
    lags = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("isin_stream_consumer_lag{")]
    assert lags and max(lags) == 0


def test_cors_is_off_by_default(pipeline: Pipeline) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    _, headers, _ = http(f"{worker.api}/stats", {"Origin": "https://app.example"})
    assert not any(h.lower().startswith("access-control-") for h in headers)


def test_json_logs(pipeline: Pipeline, list_server: ListServer) -> None:
    result = pipeline.cli("--log-format", "json", "produce", "--source", list_server.url(NSE))
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    assert any(line["logger"] == "producer.run" and "succeeded" in line["msg"] for line in lines)


def test_library_debug_lines_carry_no_secret_through_redirects_and_errors(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    """At DEBUG, httpx and httpcore log request lines and response headers (a redirect's
    ``Location`` with its token, ``Set-Cookie``); the handler masks them, in text and JSON."""
    bearer, key, token, cookie = "b3arer-0123456789", "k3y-0123456789", "t0ken-loc-98765", "c00kie-55555"
    moved, final, broken = (f"/{name}-{pipeline.suffix}.csv" for name in ("moved", "final", "broken"))
    list_server.script(
        moved,
        Answer(status=302, headers={"Location": f"{final}?token={token}", "Set-Cookie": f"session={cookie}"}),
    )
    list_server.script(final, Answer(file=shared_data / "nse_EQUITY_L.csv"))
    list_server.script(broken, Answer(status=403, headers={"Set-Cookie": f"session={cookie}"}, body=b"no"))
    pipeline.extra_env.update({"SOURCE_BEARER_TOKEN": bearer, "SOURCE_HTTP_HEADERS": json.dumps({"X-Vendor-Key": key})})
    secrets = (bearer, key, token, cookie, "q-s3cret-query")
    for fmt in ("text", "json"):
        ok = pipeline.cli(
            "--log-level",
            "DEBUG",
            "--log-format",
            fmt,
            "produce",
            "--source",
            list_server.url(moved) + "?k=q-s3cret-query",
        )
        assert ok.returncode == 0, ok.stderr[-2000:]
        failed = pipeline.cli(
            "--log-level",
            "DEBUG",
            "--log-format",
            fmt,
            "produce",
            "--source",
            list_server.url(broken) + "?k=q-s3cret-query",
        )
        assert failed.returncode != 0
        for result in (ok, failed):
            # the library lines are there (the test would pass vacuously without them) ...
            assert "httpcore" in result.stderr and "receive_response_headers" in result.stderr
            # ... and none of them, nor ours, nor the summary, carries a secret
            for leaked in secrets:
                assert leaked not in result.stderr + result.stdout, (fmt, leaked)
        if fmt == "json":
            assert all(json.loads(line) for line in ok.stderr.splitlines() if line.strip())
    assert list_server.hits(final + f"?token={token}"), "the redirect was followed"
