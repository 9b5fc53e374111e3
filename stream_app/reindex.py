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

from confluent_kafka import TopicPartition

from core.errors import BrokerError
from core.kafka.ranges import read_ranges, reading_consumer
from schemas import SerializationError
from schemas.fastpath import hash_and_run

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
        consumer = reading_consumer(self._conf, "isin-pipeline-reindex")
        try:
            watermarks = consumer.get_watermark_offsets(TopicPartition(self._topic, partition), timeout=10)
        finally:
            consumer.close()
        low = watermarks[0] if watermarks else 0
        if low > first:
            logger.warning(
                "raw partition %d starts at offset %d, after the run's first event %d", partition, low, first
            )
            return None
        keys: list[bytes] = []
        try:
            for batch in read_ranges(
                self._conf,
                self._topic,
                {partition: first},
                {partition: end},
                group="isin-pipeline-reindex",
                idle_timeout=self._timeout,
            ):
                for msg in batch:
                    key, value = msg.key(), msg.value()
                    if key is None or value is None:
                        continue
                    try:
                        if hash_and_run(value)[1] == run:
                            keys.append(key)
                    except (IndexError, SerializationError):
                        continue
        except BrokerError as exc:
            logger.error("re-reading raw partition %d from %d to %d failed: %s", partition, first, end, exc)
            return None
        logger.info(
            "re-read %d keys of run %s in partition %d in %.1fs",
            len(keys),
            run_id,
            partition,
            time.monotonic() - started,
        )
        return keys
