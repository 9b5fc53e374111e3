"""Read one of the pipeline's topics with the right deserializer, to its end or following it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from core.errors import BrokerError
from core.kafka import KafkaSettings, header_pairs
from core.kafka.errors import kafka_error
from core.kafka.offsets import end_offsets, offsets_for_timestamp
from core.kafka.ranges import read_ranges, reading_consumer
from schemas import Serde, SerializationError, make_serde

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One decoded record of a topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    schema: str | None
    record: dict[str, Any] | None
    """The decoded value; None for a tombstone."""
    headers: dict[str, str]
    error: str | None = None
    """Set when the value could not be decoded; ``record`` is then None."""


class TopicReader:
    """Reads one topic from chosen positions, decoding Avro values."""

    def __init__(self, settings: KafkaSettings, topic: str, serde: Serde | None = None) -> None:
        self._settings = settings
        self._topic = topic
        self._serde = serde or make_serde(settings.schema_registry_config())

    def _consumer(self) -> Consumer:
        return reading_consumer(self._settings.confluent_config(), f"{self._settings.kafka_client_id}-reader")

    def partitions(self, timeout: float = 10.0) -> list[int]:
        consumer = self._consumer()
        try:
            md = consumer.list_topics(self._topic, timeout=timeout)
        except KafkaException as exc:
            raise kafka_error(exc, self._settings.kafka_bootstrap_servers, f"listing topic {self._topic}") from exc
        finally:
            consumer.close()
        topic = md.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise BrokerError(f"topic {self._topic} does not exist")
        return sorted(topic.partitions)

    def start_offsets(
        self,
        *,
        from_offsets: Mapping[int, int] | None = None,
        from_timestamp: datetime | None = None,
    ) -> dict[int, int]:
        """Where reading starts per partition: the beginning, given offsets, or a timestamp."""
        parts = self.partitions()
        if from_offsets is not None:
            unknown = set(from_offsets) - set(parts)
            if unknown:
                raise BrokerError(f"topic {self._topic} has no partition {sorted(unknown)}")
            return dict(from_offsets)  # only the partitions asked for
        if from_timestamp is not None:
            ms = int(from_timestamp.timestamp() * 1000)
            return offsets_for_timestamp(self._settings.confluent_config(), self._topic, parts, ms)
        return {p: OFFSET_BEGINNING for p in parts}

    def low_offsets(self, partitions: list[int] | None = None) -> dict[int, int]:
        """The earliest offset still in each partition."""
        parts = partitions if partitions is not None else self.partitions()
        consumer = self._consumer()
        try:
            out = {}
            for p in parts:
                watermarks = consumer.get_watermark_offsets(TopicPartition(self._topic, p), timeout=10)
                out[p] = int(watermarks[0]) if watermarks else 0
            return out
        finally:
            consumer.close()

    def end_offsets(self, partitions: list[int] | None = None) -> dict[int, int]:
        parts = partitions if partitions is not None else self.partitions()
        ends = end_offsets(self._settings.confluent_config(), [(self._topic, p) for p in parts])
        return {p: ends[(self._topic, p)] for p in parts}

    def read(
        self,
        *,
        start: Mapping[int, int] | None = None,
        follow: bool = False,
        idle_timeout: float = 30.0,
    ) -> Iterator[Item]:
        """Records from ``start`` (default: the beginning) to the current end, or on with ``follow``.

        Without ``follow`` it stops at the end offsets read when it started; ``idle_timeout``
        bounds how long it waits for a record that the broker said exists.
        """
        start = dict(start) if start is not None else self.start_offsets()
        ends = None if follow else self.end_offsets(sorted(start))
        conf = self._settings.confluent_config()
        group = f"{self._settings.kafka_client_id}-reader"
        for batch in read_ranges(conf, self._topic, start, ends, group=group, idle_timeout=idle_timeout, batch=1000):
            for msg in batch:
                yield self._item(msg)

    def _item(self, msg: Any) -> Item:
        key = msg.key()
        value = msg.value()
        headers = {k: v.decode("utf-8", "replace") for k, v in header_pairs(msg.headers())}
        record = schema = error = None
        if value is not None:
            try:
                decoded = self._serde.decode(value)
                record, schema = decoded.record, decoded.schema.name
            except SerializationError as exc:
                error = str(exc)
        return Item(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp_ms=msg.timestamp()[1],
            key=key.decode("utf-8", "replace") if key is not None else None,
            schema=schema,
            record=record,
            headers=headers,
            error=error,
        )
