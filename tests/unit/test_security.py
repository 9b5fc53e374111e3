"""Security settings reach every client, and secrets never reach a log line or a repr."""

from __future__ import annotations

import io
import logging
import ssl
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from core.kafka import KafkaSettings
from core.logs import JsonFormatter, setup_logging
from producer.settings import ProducerSettings
from stream_app.settings import StreamSettings

PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - a test secret that must not leak
REGISTRY_AUTH = "registry-user:registry-secret-42"
TOKEN = "api-token-0f9e8d7c"  # noqa: S105


def sasl(**extra: object) -> dict[str, object]:
    return {
        "kafka_bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "isin-pipeline",
        "kafka_sasl_password": PASSWORD,
        "schema_registry_url": "https://registry:8081",
        "schema_registry_basic_auth_user_info": REGISTRY_AUTH,
        **extra,
    }


def test_sasl_ssl_scram_reaches_librdkafka_aiokafka_and_the_registry() -> None:
    s = ProducerSettings(**sasl())  # type: ignore[arg-type]
    conf = s.producer_config()
    assert conf["security.protocol"] == "sasl_ssl"
    assert (conf["sasl.mechanism"], conf["sasl.username"], conf["sasl.password"]) == (
        "SCRAM-SHA-512",
        "isin-pipeline",
        PASSWORD,
    )
    assert conf["enable.idempotence"] is True and conf["partitioner"] == "murmur2_random"

    stream = StreamSettings(**sasl())  # type: ignore[arg-type]
    assert stream.output_producer_config()["sasl.password"] == PASSWORD
    creds = stream.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("isin-pipeline", PASSWORD, "SCRAM-SHA-512")
    assert creds.protocol.value == "SASL_SSL" and isinstance(creds.ssl_context, ssl.SSLContext)

    assert stream.schema_registry_config() == {"url": "https://registry:8081", "basic.auth.user.info": REGISTRY_AUTH}


def test_plain_sasl_without_tls() -> None:
    s = StreamSettings(**sasl(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN"))  # type: ignore[arg-type]
    assert s.confluent_config()["security.protocol"] == "sasl_plaintext"
    creds = s.faust_credentials()
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None


def test_mtls_reaches_both_clients(tmp_path: Path) -> None:
    from tests.tls import make_pki

    pki = make_pki(tmp_path)
    s = StreamSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_location=pki.ca,
        kafka_ssl_certificate_location=pki.client_cert,
        kafka_ssl_key_location=pki.client_key,
    )
    conf = s.confluent_config()
    assert conf["ssl.ca.location"] == str(pki.ca)
    assert conf["ssl.certificate.location"] == str(pki.client_cert)
    assert conf["ssl.key.location"] == str(pki.client_key)
    creds = s.faust_credentials()
    assert isinstance(creds, faust.SSLCredentials)
    ctx = creds.context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_incomplete_security_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs KAFKA_SASL_MECHANISM"):
        KafkaSettings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="needs both"):
        KafkaSettings(kafka_security_protocol="SSL", kafka_ssl_certificate_location=Path("/x.pem"))


def test_secrets_never_appear_in_reprs_summaries_or_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_PASSWORD", PASSWORD)
    monkeypatch.setenv("SOURCE_HTTP_HEADERS", '{"X-Api-Key": "' + PASSWORD + '"}')
    monkeypatch.setenv("API_TOKEN", TOKEN)
    producer = ProducerSettings(**sasl())  # type: ignore[arg-type]
    stream = StreamSettings(**sasl())  # type: ignore[arg-type]
    stream_text = " ".join([repr(stream), str(stream), str(stream.describe()), str(stream.model_dump())])
    producer_text = " ".join([repr(producer), str(producer), str(producer.describe()), str(producer.model_dump())])
    for text in (stream_text, producer_text):
        for secret in (PASSWORD, REGISTRY_AUTH, TOKEN):
            assert secret not in text
    assert producer.credentials().headers["X-Api-Key"] == PASSWORD  # usable, just not printable

    stream_out, json_out = io.StringIO(), io.StringIO()
    setup_logging("DEBUG", "text")
    root = logging.getLogger()
    extra = logging.StreamHandler(json_out)
    extra.setFormatter(JsonFormatter())
    root.addHandler(extra)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream_out)
    try:
        logging.getLogger("test").info("settings: %s %s", stream.describe(), producer)
    finally:
        root.removeHandler(extra)
        setup_logging("WARNING")
    for text in (stream_out.getvalue(), json_out.getvalue()):
        assert "settings" in text
        for secret in (PASSWORD, REGISTRY_AUTH, TOKEN):
            assert secret not in text


def test_json_log_lines() -> None:
    import json

    record = logging.LogRecord("producer.run", logging.WARNING, __file__, 1, "run %s failed", ("r1",), None)
    record.run_id = "r1"
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["msg"], line["run_id"]) == (
        "warning",
        "producer.run",
        "run r1 failed",
        "r1",
    )
    assert line["ts"].endswith("+00:00")


def test_urls_in_any_log_line_lose_credentials_and_query_strings() -> None:
    from core.logs import redact

    line = 'HTTP Request: GET https://user:pw@feed.example/isins.csv?apikey=k3y "HTTP/1.1 200 OK"'
    assert redact(line) == 'HTTP Request: GET https://***@feed.example/isins.csv?*** "HTTP/1.1 200 OK"'
    assert redact("no urls here, just a=b?c") == "no urls here, just a=b?c"
    assert redact("kafka://broker:9092 and http://h/p") == "kafka://broker:9092 and http://h/p"


def test_library_shapes_of_secrets_are_masked() -> None:
    from core.logs import redact, register_secret

    httpcore = (
        "receive_response_headers.complete return_value=(b'HTTP/1.1', 302, b'Found', "
        "[(b'Location', b'/list.csv?token=abc123'), (b'Set-Cookie', b'sid=s3cr3t; Path=/')])"
    )
    assert redact(httpcore) == (
        "receive_response_headers.complete return_value=(b'HTTP/1.1', 302, b'Found', "
        "[(b'Location', b'/list.csv?***'), (b'Set-Cookie', b'***')])"
    )
    assert redact("Authorization: Bearer abcdef") == "Authorization: ***"
    assert (
        redact("{'authorization': 'Basic dXNlcjpwdw==', 'Cookie': 'a=b'}")
        == "{'authorization': '***', 'Cookie': '***'}"
    )
    assert redact("redirected to /next?sig=zzz&exp=1 now") == "redirected to /next?*** now"
    assert redact("cookies and authorization are words") == "cookies and authorization are words"
    assert redact("what? yes") == "what? yes"
    register_secret("vendor-secret-0042", header="X-Vendor-Key")
    assert redact("sent X-Vendor-Key: other and vendor-secret-0042") == "sent X-Vendor-Key: ***"
    assert redact("value vendor-secret-0042 alone") == "value *** alone"
    register_secret("abc")  # too short to mask without masking words
    assert redact("abc") == "abc"
