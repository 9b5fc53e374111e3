"""The Kafka access layer (core.kafka) without a broker: back-pressure and error mapping."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from core.errors import BrokerError, PublishError
from core.kafka.clients import murmur2, partition_for
from core.kafka.errors import kafka_error
from core.kafka.producing import produce, produce_batch


class FullQueueProducer:
    """A producer whose queue is full ``full`` times before it takes a record."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.queued: list[tuple[Any, ...]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, **kwargs: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.queued.append((topic, key, value, kwargs))

    def produce_batch(self, topic: str, messages: list[dict[str, Any]]) -> int:
        """As librdkafka: the records that fit, then every later one refused (the queue is full)."""
        room = max(0, len(messages) - self.full)
        self.full = 0
        for m in messages[:room]:
            self.queued.append((topic, m["key"], m["value"], {}))
        for m in messages[room:]:
            m["_error"] = KafkaError(KafkaError._QUEUE_FULL)
        return room

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_a_full_queue_waits_for_room_and_keeps_checking() -> None:
    producer = FullQueueProducer(full=3)
    checks: list[int] = []
    produce(producer, "t", b"v", b"k", partition=2, check=lambda: checks.append(1))  # type: ignore[arg-type]
    assert producer.queued == [("t", b"k", b"v", {"partition": 2})]
    assert producer.polls == 3 and len(checks) == 3


def test_a_check_can_stop_the_wait() -> None:
    def stop() -> None:
        raise PublishError("fenced")

    with pytest.raises(PublishError, match="fenced"):
        produce(FullQueueProducer(full=10), "t", b"v", check=stop)  # type: ignore[arg-type]


def test_a_batch_that_would_be_queued_out_of_order_fails() -> None:
    class Holes(FullQueueProducer):
        def produce_batch(self, topic: str, messages: list[dict[str, Any]]) -> int:
            messages[1]["_error"] = KafkaError(KafkaError._QUEUE_FULL)  # one refused, the next taken
            self.queued += [(topic, m["key"], m["value"], {}) for m in messages if "_error" not in m]
            return len(messages) - 1

    with pytest.raises(PublishError, match="in their order"):
        produce_batch(Holes(full=0), "t", [{"key": f"k{i}".encode(), "value": b"v"} for i in range(3)])  # type: ignore[arg-type]


def test_a_batch_requeues_what_did_not_fit() -> None:
    producer = FullQueueProducer(full=2)
    messages = [{"key": f"k{i}".encode(), "value": b"v"} for i in range(5)]
    produce_batch(producer, "t", messages)  # type: ignore[arg-type]
    assert [k for _, k, _, _ in producer.queued] == [f"k{i}".encode() for i in range(5)]  # in their order
    assert producer.polls == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (KafkaError._TRANSPORT, "cannot reach Kafka at b:9092 (reading x)"),
        (KafkaError._ALL_BROKERS_DOWN, "cannot reach Kafka at b:9092"),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, "isin-pipeline topics create"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "reading x: GROUP_AUTHORIZATION_FAILED"),
    ],
)
def test_librdkafka_errors_become_ours_with_advice(code: int, expected: str) -> None:
    error = kafka_error(KafkaException(KafkaError(code)), "b:9092", "reading x")
    assert isinstance(error, BrokerError) and expected in str(error)


def test_aiokafka_errors_become_ours_too() -> None:
    from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

    assert "cannot reach Kafka" in str(kafka_error(KafkaConnectionError("down"), "b:9092", "fetching"))
    assert "topics create" in str(kafka_error(UnknownTopicOrPartitionError(), "b:9092", "fetching"))


JAVA_MURMUR2 = {
    # Kafka's own cases for Utils.murmur2 (clients/src/test/.../UtilsTest.java), as Java ints
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
def test_murmur2_is_the_java_clients(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF


def test_murmur2_agrees_with_aiokafka_on_every_length() -> None:
    import random

    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    rng = random.Random(22)
    keys = [rng.randbytes(n) for n in range(70) for _ in range(20)]
    keys += [b"lei=HWUPKR0MPOU8FGXBT394|US0378331005", b"cusip=037833100|US0378331005", b"\xff" * 33]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]
    assert {partition_for(k, 6) for k in keys} == set(range(6))


@pytest.mark.parametrize("width", [4, 8, 12, 16])
def test_partitions_of_many_keys_are_partition_for_each(width: int) -> None:
    import random

    from core.kafka.partitions import partitions_of

    rng = random.Random(width)
    keys = [rng.randbytes(width) for _ in range(5000)] + [b"\x00" * width, b"\xff" * width]
    for count in (1, 6, 7, 64):
        assert partitions_of(b"".join(keys), width, count).tolist() == [partition_for(k, count) for k in keys]


def test_partitions_of_isins_and_keys_of_another_width() -> None:
    from core.kafka.partitions import partitions_of

    isins = [b"US0378331005", b"DE0007164600", b"XS2345678901", b"INE144J01027"]
    assert partitions_of(b"".join(isins), 12, 6).tolist() == [partition_for(k, 6) for k in isins]
    with pytest.raises(ValueError, match="multiple of 4"):
        partitions_of(b"A" * 20, 10, 6)
    with pytest.raises(ValueError, match="multiple of 4"):
        partitions_of(b"A" * 13, 12, 6)
