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

FOLLOW_WAIT_S = 0.5
BOUNDED_WAIT_S = 0.05
"""How long one ``consume`` waits in a bounded read. A range of a transactional topic usually
ends with a commit marker, which is never delivered: the end shows only in the consumer's
position, checked after a ``consume`` that returned nothing. Waiting 0.5 s there cost every
bounded read (a rebuild reads two per partition) half a second or more."""


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
            messages = consumer.consume(batch, timeout=FOLLOW_WAIT_S if ends is None else BOUNDED_WAIT_S)
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

    QUIET_S = 0.25
    EMPTY_S = 1.0

    def __init__(self, conf: Mapping[str, Any], topic: str, group: str, partition: int = 0) -> None:
        self._conf = conf
        self._tp = TopicPartition(topic, partition)
        self._group = group
        self._consumer: Consumer | None = None
        self._watermarks: Consumer | None = None

    def _open(self) -> Consumer:
        if self._consumer is None:
            consumer = reading_consumer(
                self._conf, self._group, **{"fetch.wait.max.ms": 20, "fetch.queue.backoff.ms": 20}
            )
            consumer.assign([TopicPartition(self._tp.topic, self._tp.partition, OFFSET_BEGINNING)])
            self._consumer = consumer
        return self._consumer

    def read(self, timeout: float, connect_timeout: float, through: int | None = None) -> list[Message]:
        """Every record after the last call, up to the partition's end now.

        ``through``: read at least up to and including this offset (a record this process just
        wrote), however long a transaction open before it keeps it from being read committed.
        What precedes it is then known exactly, on every broker, quiet fetches or not.
        """
        consumer = self._open()
        _low, end = consumer.get_watermark_offsets(self._tp, timeout=connect_timeout)
        if through is not None:
            end = max(end, through + 1)
        if end == 0 and self._high_watermark(connect_timeout) == 0:
            return []  # empty
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        quiet_since: float | None = None
        while True:
            batch = [m for m in consumer.consume(500, timeout=0.05) if m.error() is None]
            out += batch
            (position,) = consumer.position([self._tp])
            if end > 0 and position.offset >= end:
                return out
            if end == 0:
                # An empty partition, or the embedded broker's answer while a transaction is open
                # in it (its read_committed ListOffsets says 0, though committed records precede
                # the transaction): read until the fetches go quiet.
                # Quiet counts once the consumer has a position (it fetched); before that, an
                # empty partition is told apart from a slow first fetch by EMPTY_S.
                now = time.monotonic()
                quiet_since = None if batch else (quiet_since or now)
                quiet_for = self.QUIET_S if position.offset >= 0 else self.EMPTY_S
                if quiet_since is not None and now - quiet_since >= quiet_for:
                    return out
            if time.monotonic() > deadline:
                if through is not None:
                    return out  # the caller sees from the offsets how far it got
                raise BrokerError(f"{self._tp.topic} did not reach offset {end} within {timeout:.0f}s")

    def _high_watermark(self, timeout: float) -> int:
        """The log end whatever transactions are open (a read_uncommitted ListOffsets)."""
        if self._watermarks is None:
            self._watermarks = reading_consumer(self._conf, self._group, **{"isolation.level": "read_uncommitted"})
        _low, high = self._watermarks.get_watermark_offsets(self._tp, timeout=timeout)
        return int(high)

    def close(self) -> None:
        for consumer in (self._consumer, self._watermarks):
            if consumer is not None:
                consumer.close()
        self._consumer = self._watermarks = None
