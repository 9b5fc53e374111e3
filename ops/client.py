"""A small Python API for services downstream of isin-pipeline.

Read the compacted current-records topic (or any of the pipeline's topics) with the right
deserializer, either once to its end (a snapshot) or following new records::

    from core.kafka import KafkaSettings
    from ops.client import TopicReader, current_set

    settings = KafkaSettings()                    # KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, ...
    records = current_set(settings)               # {isin: CurrentRecord dict}, tombstones applied
    for item in TopicReader(settings, settings.topic_current).read(follow=True):
        print(item.key, item.record)              # item.record is None for a tombstone

Both Avro wire formats are decoded (single-object encoding and the Confluent format).
"""

from __future__ import annotations

from typing import Any

from core.errors import BrokerError
from core.kafka import KafkaSettings
from core.kafka.reading import Item, TopicReader
from schemas import Serde

__all__ = ["Item", "TopicReader", "current_set"]


def current_set(settings: KafkaSettings, serde: Serde | None = None) -> dict[str, dict[str, Any]]:
    """The current record of every ISIN: the compacted topic read to its end, tombstones applied."""
    out: dict[str, dict[str, Any]] = {}
    for item in TopicReader(settings, settings.topic_current, serde).read():
        if item.key is None:
            continue
        if item.record is None:
            if item.error is not None:
                raise BrokerError(f"{item.topic}[{item.partition}]@{item.offset}: {item.error}")
            out.pop(item.key, None)
        else:
            out[item.key] = item.record
    return out
