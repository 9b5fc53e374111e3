"""Producing with back-pressure: librdkafka's queue is bounded, and a full queue waits, not fails.

``Producer.produce`` raises ``BufferError`` when the client's in-memory queue
(``queue.buffering.max.messages`` / ``.kbytes``) is full. Every producer of the pipeline then
serves delivery reports until there is room, checking between tries that it should go on
(a run that was fenced, interrupted or lost its brokers stops waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from core.errors import PublishError

Headers = Sequence[tuple[str, bytes]]


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    *,
    partition: int | None = None,
    headers: Headers | None = None,
    on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Queue one record, waiting for room while the queue is full; ``check`` may raise to stop."""
    kwargs: dict[str, Any] = {}
    if partition is not None:
        kwargs["partition"] = partition
    if headers:
        kwargs["headers"] = headers
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)  # serve deliveries: they free the queue
            if check is not None:
                check()


def produce_batch(
    producer: Producer,
    topic: str,
    messages: list[dict[str, Any]],
    check: Callable[[], None] | None = None,
    partition: int | None = None,
) -> None:
    """Queue ``[{"key": ..., "value": ...}, ...]`` (no headers) with ``produce_batch``: to
    ``partition``, or each to its key's partition by the producer's partitioner (librdkafka's
    batch call takes one partition for all of its messages; a message's own is ignored).

    It queues what fits; the rest carry an ``_error`` (queue full) and are queued again once
    deliveries made room. Any other error fails the call.
    """
    pending = messages
    while pending:
        queued = (
            producer.produce_batch(topic, pending)
            if partition is None
            else producer.produce_batch(topic, pending, partition=partition)
        )
        if queued == len(pending):
            return
        failed = pending[queued:]
        if not all("_error" in m for m in failed) or any("_error" in m for m in pending[:queued]):
            # librdkafka refuses every record after the first it cannot queue, so what is
            # queued again keeps its place; anything else would reorder a partition's records
            raise PublishError(f"cannot queue records for {topic} in their order")
        for m in failed:
            err = m.pop("_error")
            if err.code() != KafkaError._QUEUE_FULL:
                raise PublishError(f"cannot queue a record for {topic}: {err.str()}")
        producer.poll(0.05)
        if check is not None:
            check()
        pending = failed
