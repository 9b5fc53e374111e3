"""Writes changed records to the current-records topic, which is the table's changelog, their
listing changes to the change topic, and their identifier-index records to the identifier topic.

A confluent-kafka producer (idempotent, explicit partition = the source partition, so the
topic stays co-partitioned with the raw topic). ``flush()`` waits for every record sent
since the last flush and returns the highest offset acknowledged per partition: the dedup
loop writes its table batch only after that, so the table never holds a change that is
not in the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from core.kafka import new_producer
from core.kafka.producing import produce

logger = logging.getLogger(__name__)


class OutputError(Exception):
    """Changed records could not be written to the current-records topic."""


class OutputWriter:
    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        flush_timeout_s: float,
        producer_factory: Callable[[dict[str, Any]], Producer] = new_producer,
        dlq_topic: str | None = None,
        changes_topic: str | None = None,
        identifiers_topic: str | None = None,
    ) -> None:
        self._conf = conf
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._changes_topic = changes_topic
        self._identifiers_topic = identifiers_topic
        self._flush_timeout = flush_timeout_s
        self._factory = producer_factory
        self._producer: Producer | None = None
        self._offsets: dict[int, int] = {}
        self._failed = 0
        self._first_error: str | None = None
        self.sent = 0

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._factory({**self._conf, "on_delivery": self._on_delivery})
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed += 1
            if self._first_error is None:
                self._first_error = f"{err.name()}: {err.str()}"
            return
        if msg.topic() != self._topic:
            return
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None  # set on every delivered message
        if offset > self._offsets.get(partition, -1):
            self._offsets[partition] = offset

    def dead_letter(self, key: bytes | None, value: bytes) -> None:
        """A raw record the worker could not process, to the dead-letter topic (flushed with the batch)."""
        if self._dlq_topic is None:
            return
        produce(self.producer, self._dlq_topic, value, key)

    def change(self, partition: int, key: bytes, value: bytes) -> None:
        """A ListingChange, to the change topic's same partition (flushed with the record)."""
        if self._changes_topic is None:
            return
        produce(self.producer, self._changes_topic, value, key, partition=partition)

    def index(self, partition: int, key: bytes, value: bytes | None) -> None:
        """An identifier-index record (``stream_app/identifier_index.py``) to the identifier
        topic's ``partition`` (the identifier's, not the ISIN's), flushed with the record."""
        if self._identifiers_topic is None:
            return
        produce(self.producer, self._identifiers_topic, value, key, partition=partition)

    def send(self, partition: int, key: bytes, value: bytes | None) -> None:
        produce(self.producer, self._topic, value, key, partition=partition)
        self.sent += 1

    async def flush(self) -> dict[int, int]:
        """Wait for every record sent so far; the highest acknowledged offset per partition."""
        if self._producer is None:
            return {}
        producer = self._producer
        if len(producer):
            loop = asyncio.get_running_loop()
            remaining = await loop.run_in_executor(None, producer.flush, self._flush_timeout)
            if remaining:
                raise OutputError(
                    f"{remaining} records not acknowledged by {self._topic} within {self._flush_timeout:.0f}s"
                )
        else:
            producer.poll(0)
        if self._failed:
            failed, self._failed = self._failed, 0
            error, self._first_error = self._first_error, None
            raise OutputError(f"{failed} records failed delivery to {self._topic}: {error}")
        offsets, self._offsets = self._offsets, {}
        return offsets

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5.0)
            self._producer = None
