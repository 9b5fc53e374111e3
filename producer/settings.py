"""The producer's settings: one frozen object, read from the environment in the entry point."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from core.kafka import KafkaSettings
from core.kafka.topics import TopicSpec, pipeline_topics
from producer.download import Credentials
from producer.safety import SafetyPolicy

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"})
MAX_HEADER_BYTES = 8192


def header_problem(name: str, value: str) -> str | None:
    """Why a configured request header cannot be sent as it is (never quoting its value, a secret)."""
    if not _TOKEN.match(name):
        return "not a header name (letters, digits and !#$%&'*+.^_`|~-)"
    if name.lower() in _FRAMING_HEADERS:
        return f"{name} is set by the HTTP client, never configured"
    if not value.isascii() or any((c < " " and c != "\t") or c == "\x7f" for c in value):
        return "the value holds a line break, a control or a non-ASCII character"
    if len(value) > MAX_HEADER_BYTES:
        return f"the value is {len(value)} characters, more than {MAX_HEADER_BYTES}"
    return None


class ProducerSettings(KafkaSettings):
    """Kafka settings (see ``KafkaSettings``) plus download and publish tuning."""

    model_config = SettingsConfigDict(hide_input_in_errors=True)  # a refused value may be a secret

    # -- download -----------------------------------------------------------------------
    http_connect_timeout_s: float = Field(default=10.0, gt=0)
    http_read_timeout_s: float = Field(default=60.0, gt=0)
    """Longest silence allowed between two chunks of the body."""
    http_retries: int = Field(default=4, ge=0)
    """Retries after the first attempt, on connection errors, 429 and 5xx."""
    http_backoff_s: float = Field(default=1.0, ge=0)
    """Base of the exponential backoff (with full jitter) between attempts."""
    http_backoff_max_s: float = 60.0
    http_max_bytes: int = Field(default=2 * 1024**3, gt=0)
    """Refuse a body larger than this (before or after decompression by the server)."""
    source_http_headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra request headers for vendor feeds, as JSON: ``{"X-Api-Key": "..."}``. Never logged."""
    source_username: str | None = None
    source_password: SecretStr | None = None
    source_bearer_token: SecretStr | None = None
    spool_dir: str | None = None
    """Where downloads are spooled before parsing (default: the system temp dir)."""
    http_deadline_s: float = Field(default=3600.0, gt=0)
    """The whole download, retries included, must finish within this; a drip-feeding server fails."""
    unpacked_max_bytes: int = Field(default=16 * 1024**3, gt=0)
    """Refuse a gzip or zip that unpacks to more than this (a zip bomb)."""

    producer_workers: int | None = Field(default=None, ge=1)
    """Processes that read, validate and encode a large unquoted delimited list (default: one
    per core; 1 reads in the run's process only)."""
    producer_parallel_min_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    """Lists smaller than this (unpacked) are read in the run's process only."""
    producer_columnar: bool = True
    """Read the plain byte ranges of such a list as columns (pyarrow, numpy): no Python per row
    but the content hash. The row loop reads every other range, and all of them when false."""

    # -- publish ------------------------------------------------------------------------
    producer_linger_ms: int = 20
    producer_compression: str = "lz4"
    producer_batch_bytes: int = 1024 * 1024
    producer_queue_max_kbytes: int = 64 * 1024
    producer_queue_max_messages: int = 100_000
    """Bounds on librdkafka's in-memory queue, which bound the producer's memory: each queued
    record costs a few hundred bytes besides its payload, so the count matters as much."""
    producer_delivery_timeout_ms: int = 60_000
    producer_flush_timeout_s: float = Field(default=120.0, gt=0)
    producer_transaction_timeout_ms: int = Field(default=15 * 60 * 1000, gt=0)
    """The bound of one transaction (a run's chunk); Kafka's transaction.max.timeout.ms is 15
    minutes by default. A run commits in chunks (``RUN_CHUNK_ROWS``, ``RUN_CHUNK_S``), so no
    transaction lives near it whatever the list's size."""
    run_chunk_rows: int = Field(default=500_000, gt=0)
    """A run commits the events sent so far once this many are in its open transaction ..."""
    run_chunk_s: float = Field(default=20.0, gt=0, le=600)
    """... or once its open transaction is this old: the workers apply each chunk while the run
    goes on. The end-of-run markers and the final run record are in the last transaction."""
    run_timeout_s: float = Field(default=2 * 3600, gt=0)
    """The upper bound of a live run: a RUNNING claim older than this, with no final record, is
    abandoned even if its heartbeat goes on."""
    run_heartbeat_s: float = Field(default=2.0, gt=0)
    """How often a run renews its RUNNING claim while it works (download, read, publish)."""
    run_heartbeat_timeout_s: float = Field(default=10.0, gt=0)
    """A claim whose heartbeat stopped this long (seen by the process that looks) is abandoned:
    fenced, recorded INTERRUPTED, and the slot runs again. Several heartbeats, so that a slow
    broker write or a pause does not fence a live run."""
    max_delete_fraction: float = Field(default=0.05, ge=0, le=1)
    """A run with this share fewer distinct ISINs than the last successful one publishes no deletions."""
    max_unreadable_fraction: float = Field(default=0.01, ge=0, le=1)
    """A run with a larger share of rows the reader could not read publishes no deletions."""
    max_invalid_jump: float = Field(default=0.02, ge=0, le=1)
    """A run whose share of invalid ISINs rose by more than this publishes no deletions."""

    @model_validator(mode="after")
    def _check_heartbeat(self) -> ProducerSettings:
        if self.run_heartbeat_timeout_s < 2 * self.run_heartbeat_s:
            raise ValueError(
                "RUN_HEARTBEAT_TIMEOUT_S must be at least twice RUN_HEARTBEAT_S: one late heartbeat "
                "must not fence a live run"
            )
        return self

    @field_validator("source_http_headers", mode="before")
    @classmethod
    def _headers_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("SOURCE_HTTP_HEADERS must be a JSON object of header names to values")
        for name, header in value.items():
            problem = header_problem(str(name), header if isinstance(header, str) else "")
            if problem:
                raise ValueError(f"SOURCE_HTTP_HEADERS: {name!r}: {problem}")
        return value

    @field_validator("source_bearer_token")
    @classmethod
    def _bearer(cls, value: SecretStr | None) -> SecretStr | None:
        problem = value and header_problem("Authorization", f"Bearer {value.get_secret_value()}")
        if problem:
            raise ValueError(f"SOURCE_BEARER_TOKEN: {problem}")
        return value

    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.http_connect_timeout_s,
            read=self.http_read_timeout_s,
            write=self.http_read_timeout_s,
            pool=self.http_connect_timeout_s,
        )

    def credentials(self) -> Credentials:
        """Headers and auth for the source's own origin only (the downloader enforces it)."""
        headers = {k: v.get_secret_value() for k, v in self.source_http_headers.items()}
        if self.source_bearer_token:
            headers["Authorization"] = f"Bearer {self.source_bearer_token.get_secret_value()}"
        auth = None
        if self.source_username and self.source_password:
            auth = httpx.BasicAuth(self.source_username, self.source_password.get_secret_value())
        return Credentials(headers, auth)

    def topics(self) -> list[TopicSpec]:
        """The topics a producer writes: the pipeline's."""
        return pipeline_topics(self)

    def safety(self, allow_shrink: bool = False) -> SafetyPolicy:
        return SafetyPolicy(
            max_delete_fraction=self.max_delete_fraction,
            max_unreadable_fraction=self.max_unreadable_fraction,
            max_invalid_jump=self.max_invalid_jump,
            allow_shrink=allow_shrink,
        )

    def producer_config(self) -> dict[str, Any]:
        """confluent-kafka producer properties: idempotent, acks=all, murmur2 like Java and Faust."""
        return {
            **self.confluent_config(),
            "enable.idempotence": True,
            "acks": "all",
            # librdkafka's default partitioner is CRC32; every other client uses murmur2.
            "partitioner": "murmur2_random",
            "linger.ms": self.producer_linger_ms,
            "compression.type": self.producer_compression,
            "batch.size": self.producer_batch_bytes,
            "queue.buffering.max.kbytes": self.producer_queue_max_kbytes,
            "queue.buffering.max.messages": self.producer_queue_max_messages,
            "delivery.timeout.ms": self.producer_delivery_timeout_ms,
        }
