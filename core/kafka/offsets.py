"""Log-end offsets you can trust on any Kafka-compatible broker.

Apache Kafka answers ListOffsets(latest) with the log end. The embedded broker (tansu)
answers with the base offset of the last record batch + 1, which is short by the size of
that batch minus one. The high watermark in a Fetch response is right on both, so we fetch
from the reported offset - 1 and take the larger of the two. On Kafka this costs one small
fetch per partition and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

logger = logging.getLogger(__name__)


def list_end_offsets(
    conf: Mapping[str, Any], tps: Iterable[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """ListOffsets(latest) for each (topic, partition): what the broker reports."""
    consumer = Consumer({**conf, "group.id": "isin-pipeline-offsets", "enable.auto.commit": False})
    try:
        out: dict[tuple[str, int], int] = {}
        for topic, partition in tps:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            out[(topic, partition)] = int(high)
        return out
    finally:
        consumer.close()


def verified_end_offsets(
    conf: Mapping[str, Any],
    reported: Mapping[tuple[str, int], int],
    timeout: float = 10.0,
) -> dict[tuple[str, int], int]:
    """``reported`` end offsets, corrected with the high watermark of a fetch at ``end - 1``."""
    result = dict(reported)
    todo = {tp: off for tp, off in reported.items() if off > 0}
    if not todo:
        return result
    consumer = Consumer(
        {
            **conf,
            "group.id": "isin-pipeline-offsets",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "fetch.max.bytes": 1024 * 1024,
            "max.partition.fetch.bytes": 256 * 1024,
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, off - 1) for (t, p), off in todo.items()])
        pending = set(todo)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                tp = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("end-offset check of %s[%d]: %s", tp[0], tp[1], err.str())
                pending.discard(tp)
        for tp, off in todo.items():
            if tp in pending:
                continue
            _low, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            if high is not None and high != OFFSET_END and high >= 0:
                if high != off:
                    logger.debug("end offset of %s[%d]: reported %d, fetched %d", tp[0], tp[1], off, high)
                result[tp] = max(off, int(high))
        if pending:
            logger.warning(
                "could not verify end offsets of %s within %.0fs; using the reported ones", sorted(pending), timeout
            )
        return result
    except KafkaException as exc:
        logger.warning("end-offset check failed (%s); using the reported offsets", exc)
        return result
    finally:
        consumer.close()


def end_offsets(
    conf: Mapping[str, Any], tps: Iterable[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """True end offsets: ListOffsets, then verified against a fetch."""
    return verified_end_offsets(conf, list_end_offsets(conf, tps, timeout), timeout)


def offsets_for_timestamp(
    conf: Mapping[str, Any], topic: str, partitions: Iterable[int], when_ms: int, timeout: float = 10.0
) -> dict[int, int]:
    """Per partition, the offset of the first record at or after ``when_ms``; the end offset if none.

    Kafka answers "none" with -1. The embedded broker answers 0 instead, which would replay
    the whole partition, so each answer is checked against the timestamp of the record at it.
    """
    parts = list(partitions)
    consumer = Consumer({**conf, "group.id": "isin-pipeline-offsets", "enable.auto.commit": False})
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, when_ms) for p in parts], timeout=timeout)
    finally:
        consumer.close()
    ends = end_offsets(conf, [(topic, p) for p in parts], timeout)
    result: dict[int, int] = {}
    to_check: dict[int, int] = {}
    for tp in found:
        if tp.offset < 0:
            result[tp.partition] = ends[(topic, tp.partition)]
        else:
            to_check[tp.partition] = tp.offset
    for partition, offset in to_check.items():
        ts = _timestamp_at(conf, topic, partition, offset, timeout)
        if ts is None or ts < when_ms:
            result[partition] = ends[(topic, partition)]
        else:
            result[partition] = offset
    return result


def _timestamp_at(conf: Mapping[str, Any], topic: str, partition: int, offset: int, timeout: float) -> int | None:
    consumer = Consumer(
        {**conf, "group.id": "isin-pipeline-offsets", "enable.auto.commit": False, "enable.partition.eof": True}
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return None
                continue
            return int(msg.timestamp()[1])
        return None
    finally:
        consumer.close()
