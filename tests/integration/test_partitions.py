"""The producer gives each event its partition itself (``core.kafka.partitions``): it must be the
partition librdkafka's configured partitioner (``murmur2_random``, as the Java client and Faust)
picks for the same key, or an ISIN's events would move to another partition of the table."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from core.broker import EmbeddedBroker
from core.errors import PublishError
from core.kafka import new_producer
from core.kafka.partitions import partitions_of
from producer.publish import Publisher
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


def test_an_event_without_a_callback_that_fails_delivery_fails_the_commit(
    embedded_broker_only: str, tmp_path: Path
) -> None:
    """What the publisher relies on, since most events carry no delivery callback: librdkafka
    counts the open transaction's failed deliveries and will not commit it. The broker is frozen
    (SIGSTOP) while a chunk's events are in flight; they time out; it is thawed; the commit fails."""
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").__enter__()
    try:
        pipeline = Pipeline(broker.bootstrap, uuid.uuid4().hex[:10], tmp_path)
        pipeline.create_topics()
        settings = ProducerSettings(
            kafka_bootstrap_servers=broker.bootstrap,
            topic_raw=pipeline.env["TOPIC_RAW"],
            producer_delivery_timeout_ms=2000,
            producer_linger_ms=5,
        )
        publisher = Publisher(settings)
        publisher.connect(transactional_id=f"delivery-{uuid.uuid4().hex[:8]}")
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            messages = [{"key": b"US0378331005", "value": b"an event"} for _ in range(20)]
            publisher.producer.produce_batch(settings.topic_raw, messages, partition=0)  # no callbacks
            deadline = time.monotonic() + 30
            while len(publisher.producer) and time.monotonic() < deadline:
                publisher.producer.poll(0.2)
            assert len(publisher.producer) == 0  # every event done: timed out, and nobody was told
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        assert publisher.failed == 0
        with pytest.raises(PublishError, match="cannot commit"):
            publisher.commit()
        publisher.close()
    finally:
        broker.stop()
