"""Reading a topic's partitions to their end: the one loop every tool of the pipeline uses.

The end of a partition is its high watermark, made right on the embedded broker by
``offsets.end_offsets``. Reading stops at it per partition by the *position* of the consumer,
not by the last record seen, because transaction markers take offsets but are never delivered:
a run's commit marker is often the last offset of a partition. Used by ``TopicReader`` (tail,
snapshot, the Python client), the rebuild's replay of the raw topic, the re-reading of one
run's keys, the runs topic (``Tail``) and the benchmark.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from core.errors import BrokerError

logger = logging.getLogger(__name__)


def reading_consumer(conf: Mapping[str, Any], group: str, **overrides: Any) -> Consumer:
    """A consumer for reading by assignment: no commits, short fetch backoff (librdkafka's
    default waits up to a second between fetches)."""
    return Consumer(
        {
            **conf,
            "group.id": group,
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 50,
            "enable.partition.eof": False,
            **overrides,
        }
    )


def read_ranges(
    conf: Mapping[str, Any],
    topic: str,
    start: Mapping[int, int],
    ends: Mapping[int, int] | None,
    *,
    group: str,
    idle_timeout: float = 60.0,
    batch: int = 10_000,
) -> Iterator[list[Message]]:
    """Batches of records of ``topic`` from ``start`` to ``ends`` (exclusive) per partition.

    ``start`` maps partitions to offsets (or OFFSET_BEGINNING); only those partitions are read.
    With ``ends`` None it follows the partitions until the caller stops. A partition with no
    record between its start and end is done at once. ``idle_timeout`` bounds how long it waits
    for records the broker said exist: BrokerError, naming what was left.
    """
    todo = {p for p, off in start.items() if ends is None or _before_end(off, ends[p])}
    if not todo and ends is not None:
        return
    consumer = reading_consumer(conf, group)
    try:
        consumer.assign([TopicPartition(topic, p, off) for p, off in start.items() if p in todo or ends is None])
        last_progress = time.monotonic()
        while ends is None or todo:
            messages = consumer.consume(batch, timeout=0.5)
            if messages:
                last_progress = time.monotonic()
            elif ends is not None:
                for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                    if tp.offset >= ends[tp.partition]:
                        todo.discard(tp.partition)
                if todo and time.monotonic() - last_progress > idle_timeout:
                    raise BrokerError(
                        f"topic {topic}: no progress for {idle_timeout:.0f}s before the end offsets "
                        f"{ {p: ends[p] for p in sorted(todo)} }"
                    )
                continue
            out: list[Message] = []
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        logger.warning("reading %s: %s", topic, err.str())
                    continue
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                if ends is not None:
                    if partition not in todo:
                        continue
                    if offset >= ends[partition]:
                        todo.discard(partition)
                        continue
                    if offset + 1 >= ends[partition]:
                        todo.discard(partition)
                out.append(msg)
            if out:
                yield out
    finally:
        consumer.close()


def _before_end(start: int, end: int) -> bool:
    return end > 0 and (start < 0 or start < end)


class Tail:
    """One partition read by a long-lived consumer: each ``read()`` returns what is new.

    For a small, single-partition topic read often (the runs topic): one round trip when
    nothing is new. The end is ListOffsets(latest), right for such a topic on every broker
    because each of its records is a batch of its own.
    """

    def __init__(self, conf: Mapping[str, Any], topic: str, group: str, partition: int = 0) -> None:
        self._conf = conf
        self._tp = TopicPartition(topic, partition)
        self._group = group
        self._consumer: Consumer | None = None

    def _open(self) -> Consumer:
        if self._consumer is None:
            consumer = reading_consumer(
                self._conf, self._group, **{"fetch.wait.max.ms": 20, "fetch.queue.backoff.ms": 20}
            )
            consumer.assign([TopicPartition(self._tp.topic, self._tp.partition, OFFSET_BEGINNING)])
            self._consumer = consumer
        return self._consumer

    def read(self, timeout: float, connect_timeout: float) -> list[Message]:
        """Every record after the last call, up to the partition's end now."""
        consumer = self._open()
        _low, end = consumer.get_watermark_offsets(self._tp, timeout=connect_timeout)
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while True:
            out += [m for m in consumer.consume(500, timeout=0.05) if m.error() is None]
            (position,) = consumer.position([self._tp])
            if position.offset >= end or (end == 0 and position.offset < 0):
                return out
            if time.monotonic() > deadline:
                raise BrokerError(f"{self._tp.topic} did not reach offset {end} within {timeout:.0f}s")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
