"""The machine's limits, measured in the same run: raw produce and raw consume with confluent-kafka."""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import PARTITIONS, BenchError
from core.kafka import KafkaSettings
from core.kafka.producing import produce
from core.kafka.topics import TopicSpec, ensure_topics
from schemas import content_hash, make_serde
from schemas.fastpath import EventEncoder

LIMITS_SAMPLE = 2_000_000


def limits(bootstrap: str, csv_path: Path, rows: int, suffix: str) -> dict[str, float]:
    """Raw produce of the day's events, pre-encoded; raw consume of them, not decoded.

    Rates, measured on the first LIMITS_SAMPLE rows: at full scale, holding 9.3 million
    pre-encoded records in memory would cost the bench several GB for no better figure."""
    topic = f"bench-{suffix}.limits"
    settings = KafkaSettings(kafka_bootstrap_servers=bootstrap)
    ensure_topics(
        settings,
        [TopicSpec(topic, PARTITIONS, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})],
    )
    encode = EventEncoder(make_serde(None), topic, "bench", "limits", int(time.time() * 1000))
    with csv_path.open(newline="") as f:
        sample = itertools.islice(enumerate(csv.reader(f), start=1), 1, LIMITS_SAMPLE + 1)  # after the header
        records = [
            (isin.encode(), encode(isin, n, {"lei": lei}, content_hash("bench", {"lei": lei})))
            for n, (lei, isin) in sample
        ]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "batch.size": 1024 * 1024,
            "partitioner": "murmur2_random",
        }
    )
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        produce(producer, topic, value, key)
        if not i % 10_000:
            producer.poll(0)
    if producer.flush(120):
        raise BenchError("raw produce: records left unacknowledged")
    produce_s = time.perf_counter() - started

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{suffix}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 50,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got, started = 0, time.perf_counter()
    deadline = started + 300
    while got < len(records) and time.perf_counter() < deadline:
        for msg in consumer.consume(10_000, timeout=0.5):
            if msg.error() is None:
                got += 1
    consume_s = time.perf_counter() - started
    consumer.close()
    if got < len(records):
        raise BenchError(f"raw consume: {got} of {len(records)} records")
    return {
        "produce_rps": round(len(records) / produce_s),
        "consume_rps": round(got / consume_s),
        "records": len(records),
    }
