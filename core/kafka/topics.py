"""The pipeline's topics, created with explicit partitions and configs, and checked when they exist."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from core.errors import BrokerError
from core.kafka import KafkaSettings
from core.kafka.errors import kafka_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    must_match_partitions: bool = True
    """Fail if an existing topic has another partition count (co-partitioned topics)."""
    partitions_setting: str = "TOPIC_PARTITIONS"
    """The setting its partition count comes from, for the error that says what to change."""


def pipeline_topics(s: KafkaSettings) -> list[TopicSpec]:
    """Every topic isin-pipeline writes. Always explicit: some clients fail on topics without configs."""
    keep_forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    return [
        TopicSpec(
            s.topic_raw,
            s.topic_partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(s.topic_raw_retention_ms),
                "retention.bytes": "-1",
            },
        ),
        TopicSpec(
            s.topic_current,
            s.topic_partitions,
            {
                "cleanup.policy": "compact",
                **keep_forever,
                # Keep tombstones a day so that consumers that read daily still see deletes.
                "delete.retention.ms": str(24 * 3600 * 1000),
                "min.compaction.lag.ms": "0",
            },
        ),
        TopicSpec(
            s.topic_dlq,
            s.topic_partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(s.topic_dlq_retention_ms),
                "retention.bytes": "-1",
            },
            must_match_partitions=False,
        ),
        TopicSpec(s.topic_runs, 1, {"cleanup.policy": "compact", **keep_forever}),
        TopicSpec(
            s.topic_changes,
            s.topic_partitions,
            {
                "cleanup.policy": "delete",  # not compacted: every change of a key is kept
                "retention.ms": str(s.topic_changes_retention_ms),
                "retention.bytes": "-1",
            },
        ),
        # the identifier index (a re-keyed copy of the table's identifiers, as Kafka Streams keeps
        # for a foreign-key join): one record per (identifier, ISIN), a tombstone when no source
        # gives it any more; the latest per key is all it needs
        TopicSpec(
            s.topic_identifiers,
            s.topic_partitions,
            {"cleanup.policy": "compact", **keep_forever, "delete.retention.ms": str(24 * 3600 * 1000)},
        ),
    ]


def _existing(s: KafkaSettings, timeout: float | None) -> dict[str, Any]:
    admin = AdminClient(s.confluent_config())
    try:
        return dict(admin.list_topics(timeout=timeout if timeout is not None else s.kafka_connect_timeout_s).topics)
    except KafkaException as exc:
        raise kafka_error(exc, s.kafka_bootstrap_servers, "checking the topics") from exc


def missing_topics(s: KafkaSettings, specs: Iterable[TopicSpec], *, timeout: float | None = None) -> list[str]:
    """The names of ``specs`` the broker does not have. BrokerError if it cannot be reached."""
    existing = _existing(s, timeout)
    return [spec.name for spec in specs if spec.name not in existing or existing[spec.name].error]


def check_topics(s: KafkaSettings, specs: Iterable[TopicSpec], *, timeout: float | None = None) -> None:
    """Raise BrokerError, saying what to run, if a topic is missing or has the wrong partition count.

    For long-running clients that must not create topics themselves (the stream worker): a
    topic that is not there was lost (an embedded broker restarted empty) or never created,
    and creating it by accident, with some default partition count, would break the
    co-partitioning of the raw and current topics for good.
    """
    specs = list(specs)
    existing = _existing(s, timeout)
    missing = [spec.name for spec in specs if spec.name not in existing or existing[spec.name].error]
    if missing:
        raise BrokerError(
            f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing on {s.kafka_bootstrap_servers}: "
            "create the pipeline's topics with `isin-pipeline topics create` (same environment), then start again"
        )
    for spec in specs:
        have = len(existing[spec.name].partitions)
        if have != spec.partitions and spec.must_match_partitions:
            raise BrokerError(
                f"topic {spec.name} has {have} partitions, the configuration says {spec.partitions}: "
                f"set {spec.partitions_setting} to match, or recreate the topic"
            )


def ensure_topics(s: KafkaSettings, specs: Iterable[TopicSpec], *, timeout: float | None = None) -> list[str]:
    """Create the missing topics; check the partitions of existing ones. Returns the names created."""
    timeout = timeout if timeout is not None else s.kafka_connect_timeout_s
    specs = list(specs)
    admin = AdminClient(s.confluent_config())
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise kafka_error(exc, s.kafka_bootstrap_servers, "creating the topics") from exc
    existing = metadata.topics
    for spec in specs:
        topic = existing.get(spec.name)
        if topic is None or topic.error is not None:
            continue
        have = len(topic.partitions)
        if spec.must_match_partitions and have != spec.partitions:
            raise BrokerError(
                f"topic {spec.name} has {have} partitions but {spec.partitions_setting}={spec.partitions}; "
                f"set {spec.partitions_setting} to match, or recreate the topic"
            )
    missing = [spec for spec in specs if spec.name not in existing or existing[spec.name].error]
    if not missing:
        return []
    new = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=s.topic_replication_factor,
            config=dict(spec.config),
        )
        for spec in missing
    ]
    created: list[str] = []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerError(f"cannot create topic {name}: {err}") from exc
        logger.info("created topic %s", name)
        created.append(name)
    return created
