"""The stream app's settings: one frozen object, read from the environment in the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from core.kafka import KafkaSettings
from core.kafka.topics import TopicSpec, pipeline_topics


class StreamSettings(KafkaSettings):
    """Kafka settings (see ``KafkaSettings``) plus the Faust worker, table and HTTP API."""

    model_config = SettingsConfigDict(hide_input_in_errors=True)  # a refused value may be a secret

    app_id: str = "isin-stream"
    """Faust application id: the consumer group and the prefix of Faust's internal topics."""
    table_name: str = "isins"
    state_dir: Path = Path("./state")
    """RocksDB state of this worker; one directory per worker."""

    loss_check_s: float = Field(default=5.0, gt=0)
    """How often a running worker checks that the broker still has its topics and its data
    (the embedded broker restarted empty, a topic deleted and created again)."""
    web_host: str = "127.0.0.1"
    """Interface of the HTTP API; 0.0.0.0 in containers."""
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_advertised_host: str | None = None
    """Host name other workers use to reach this one (table routing); default: web_host."""
    api_token: SecretStr | None = None
    """If set, every API request but /healthz and /metrics needs ``Authorization: Bearer <token>``."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS; empty (the default) sends no CORS headers."""
    query_standbys: bool = True
    """Answer ``GET /isins/{isin}`` from this worker's standby copy of the ISIN's partition when
    that copy has applied the changelog up to the high watermark of its latest fetch, instead of
    forwarding to the owner; false: always ask the owner."""

    sources_file: Path | None = None
    """The sources file (the scheduler's) whose per-source ``fields`` and ``[precedence]`` the
    golden view follows (docs/golden.md); without one: the built-in header spellings, and the
    sources in alphabetical order. Every worker must be given the same file."""
    conflict_scan_s: float = Field(default=30.0, gt=0)
    """How often the conflict counts (``/stats``, the ``isin_stream_conflicts`` gauge) and the
    ``/conflicts`` report are brought up to date with partitions that changed since."""

    # Group timeouts that work on the embedded broker and on Kafka (see docs/guarantees.md).
    session_timeout_s: float = 6.0
    heartbeat_interval_s: float = 1.0
    max_poll_interval_s: float = 30.0
    max_poll_records: int = 20_000
    """Records per fetch; the batch size of the dedup loop. Each batch with a change ends in one
    flush of the output (a round trip to the broker), so larger batches cost fewer flushes: a
    day-2 list, a change every few hundred events, ran at 45,897 events/s with 5,000 and 69,053
    with 20,000 (bench.run --rows 300000). The loop yields to queries within a batch."""
    fetch_max_bytes: int = 16 * 1024 * 1024
    table_write_buffer_mb: int = Field(default=16, ge=1)
    """RocksDB memtable of each table partition a worker holds (its own and standby copies), in
    MB; at most two per partition. Faust's default is three of 64 MB."""
    table_block_cache_mb: int = Field(default=32, ge=1)
    """RocksDB block cache of each table partition a worker holds, in MB. Faust's default is
    2 GB per partition: a worker's memory then grew with every partition it read (2.5 GB per
    worker at the end of a 9.3M-row day, over the base StatefulSet's 2 GiB limit)."""
    table_digest: bool = True
    """Keep an in-memory digest of each active table partition (its keys and their content
    hashes, 16 bytes a key: ``stream_app/digest.py``), so that an unchanged or new ISIN's event is
    decided without a RocksDB lookup. Built from the store on the first batch after each
    assignment (a walk of the partition); off, every event's stored record is read."""
    table_bloom_bits: int = Field(default=10, ge=1, le=32)
    """Bloom filter bits per key in each table partition's files. Faust's default is 3, which
    lets about a quarter of the lookups of a key absent from a file read one of its blocks anyway:
    with a partition of 1.55 million keys (a 9.3M-row table in six) written without pause, a
    day-1 lookup (the key is new) took 3.6 µs at 3 bits and 1.8 µs at 10, and a present key's 4.0
    and 2.5 µs. The benches end to end did not move (9.3M rows, 3M rows: within their noise), as
    compaction keeps few files per partition there. 10 is RocksDB's usual choice; 1.25 bytes per
    key."""
    standby_replicas: int = 1
    """Warm copies of each table partition on other workers, for fast takeover."""
    commit_interval_s: float = 2.0

    output_linger_ms: int = 5
    output_compression: str = "lz4"
    output_flush_timeout_s: float = 60.0

    verify_end_offsets: bool = True
    """Check ListOffsets(latest) against a fetch's high watermark (the embedded broker reports
    the base offset of the last batch + 1). Costs one small fetch per partition on recovery."""

    def table_options(self) -> dict[str, int]:
        """Faust's RocksDB options of each table partition (``faust.stores.rocksdb.RocksDBOptions``)."""
        mib = 1024 * 1024
        return {
            "write_buffer_size": self.table_write_buffer_mb * mib,
            "max_write_buffer_number": 2,
            "block_cache_size": self.table_block_cache_mb * mib,
            "bloom_filter_size": self.table_bloom_bits,
        }

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        """A token a client can send: visible ASCII, no spaces (else every request would be refused)."""
        token = value.get_secret_value() if value is not None else ""
        if value is not None and not (token.isascii() and token.isprintable() and " " not in token):
            raise ValueError("API_TOKEN must be visible ASCII characters, without spaces")
        return value

    def output_producer_config(self) -> dict[str, object]:
        """confluent-kafka producer for the current-records topic: idempotent, murmur2."""
        return {
            **self.confluent_config(),
            "client.id": f"{self.app_id}-output",
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": self.output_linger_ms,
            "compression.type": self.output_compression,
            "queue.buffering.max.kbytes": 256 * 1024,
            "queue.buffering.max.messages": 2_000_000,
        }

    def faust_credentials(self) -> Any | None:
        """``broker_credentials`` for faust.App: SASL (PLAIN or SCRAM) over TLS or not, or TLS alone."""
        import faust

        ctx = self.ssl_context()
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None and self.kafka_sasl_username is not None
            # SASLCredentials picks SASL_SSL when given a TLS context, SASL_PLAINTEXT otherwise.
            return faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password.get_secret_value(),
                ssl_context=ctx,
                mechanism=self.kafka_sasl_mechanism,
            )
        if ctx is not None:
            return faust.SSLCredentials(ctx)
        return None

    def topics(self) -> list[TopicSpec]:
        """The topics a worker needs: the raw, current, dead-letter, change and identifier topics,
        and Faust's leader topic."""
        mine = (self.topic_raw, self.topic_current, self.topic_dlq, self.topic_changes, self.topic_identifiers)
        leader = TopicSpec(
            f"{self.app_id}-__assignor-__leader",
            1,
            {"cleanup.policy": "delete", "retention.ms": str(3600 * 1000), "retention.bytes": "-1"},
        )
        return [*(t for t in pipeline_topics(self) if t.name in mine), leader]

    @property
    def advertised_url(self) -> str:
        host = self.web_advertised_host or self.web_host
        return f"http://{host}:{self.web_port}"
