"""What every Kafka client of the pipeline agrees on: partitioning, record headers, and how a
confluent-kafka client is built (``new_producer``, ``new_consumer``, ``new_admin``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a key as the Java client, aiokafka and Faust compute it (murmur2)."""
    from aiokafka.partitioner import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    """confluent-kafka's headers (a list of pairs, a dict, or None) as (name, bytes) pairs."""
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), v if isinstance(v, bytes) else (b"" if v is None else str(v).encode())) for k, v in pairs]


def new_producer(conf: Mapping[str, Any], **overrides: Any) -> Producer:
    """A confluent-kafka producer from a ``KafkaSettings`` config (``producer_config()`` or
    ``confluent_config()``) and overrides: every producer of the pipeline is built here."""
    return Producer({**conf, **overrides})


def new_consumer(conf: Mapping[str, Any], **overrides: Any) -> Consumer:
    """A confluent-kafka consumer, built the same way."""
    return Consumer({**conf, **overrides})


def new_admin(conf: Mapping[str, Any]) -> AdminClient:
    """A confluent-kafka admin client, built the same way."""
    return AdminClient(dict(conf))
