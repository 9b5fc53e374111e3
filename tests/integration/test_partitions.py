"""The producer gives each event its partition itself (``core.kafka.partitions``): it must be the
partition librdkafka's configured partitioner (``murmur2_random``, as the Java client and Faust)
picks for the same key, or an ISIN's events would move to another partition of the table."""

from __future__ import annotations

from pathlib import Path

from core.kafka import new_producer
from core.kafka.partitions import partitions_of
from producer.settings import ProducerSettings
from tests.integration.support import Pipeline


def test_the_producers_partitions_are_librdkafkas(pipeline: Pipeline, shared_data: Path) -> None:
    pipeline.create_topics()
    topic = pipeline.env["TOPIC_RAW"]
    lines = (shared_data / "nse_EQUITY_L.csv").read_text(encoding="utf-8").splitlines()[1:]
    keys = [line.split(",")[6].strip().encode() for line in lines]
    assert len(keys) == 2387 and all(len(k) == 12 for k in keys)
    settings = ProducerSettings(kafka_bootstrap_servers=pipeline.bootstrap, topic_raw=topic)
    producer = new_producer(settings.producer_config())
    for key in keys:  # no partition given: librdkafka's partitioner decides
        producer.produce(topic, b"not an event", key)
    assert producer.flush(30) == 0
    placed = {item.key: item.partition for item in pipeline.items(topic)}
    count = len({item.partition for item in pipeline.items(topic)})
    assert count == 6 and len(placed) == len(keys)
    ours = partitions_of(b"".join(keys), 12, count).tolist()
    assert [placed[k.decode()] for k in keys] == ours
