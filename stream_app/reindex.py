"""Re-read one run's keys from the raw topic, for a sweep whose seen index is incomplete.

This happens when a partition moved to this worker in the middle of a run, or this
worker's state was wiped: the ISINs the run delivered before that are read again from the
raw topic (keys and the events' leading run id, no Avro decoding) between the run's first
event and its end-of-run marker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from schemas import SerializationError
from schemas.fastpath import leading_strings

logger = logging.getLogger(__name__)


class RawRangeReader:
    def __init__(self, conf: dict[str, Any], topic: str, timeout_s: float = 300.0) -> None:
        self._conf = conf
        self._topic = topic
        self._timeout = timeout_s

    async def __call__(self, partition: int, run_id: str, first: int, end: int) -> list[bytes] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.read, partition, run_id, first, end)

    def read(self, partition: int, run_id: str, first: int, end: int) -> list[bytes] | None:
        """Keys of ``run_id``'s events in ``[first, end)``, or None if that range is not complete."""
        started = time.monotonic()
        run = run_id.encode()
        consumer = Consumer(
            {
                **self._conf,
                "group.id": "isin-pipeline-reindex",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.queue.backoff.ms": 50,
            }
        )
        try:
            watermarks = consumer.get_watermark_offsets(TopicPartition(self._topic, partition), timeout=10)
            low = watermarks[0] if watermarks else 0
            if low > first:
                logger.warning(
                    "raw partition %d starts at offset %d, after the run's first event %d", partition, low, first
                )
                return None
            consumer.assign([TopicPartition(self._topic, partition, first)])
            keys: list[bytes] = []
            deadline = started + self._timeout
            while time.monotonic() < deadline:
                for msg in consumer.consume(10_000, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            logger.warning(
                                "raw partition %d ended at %d before the marker at %d", partition, msg.offset(), end
                            )
                            return None
                        logger.warning("re-reading raw partition %d: %s", partition, err.str())
                        continue
                    offset = msg.offset()
                    if offset is None or offset >= end:
                        logger.info(
                            "re-read %d keys of run %s in partition %d in %.1fs",
                            len(keys),
                            run_id,
                            partition,
                            time.monotonic() - started,
                        )
                        return keys
                    key, value = msg.key(), msg.value()
                    if key is None or value is None:
                        continue
                    try:
                        if leading_strings(value, 2)[1] == run:
                            keys.append(key)
                    except (IndexError, SerializationError):
                        continue
            logger.error("re-reading raw partition %d timed out after %.0fs", partition, self._timeout)
            return None
        finally:
            consumer.close()
