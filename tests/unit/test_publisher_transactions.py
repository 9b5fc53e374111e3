"""The run's transactions as the publisher counts and times them, over a stand-in producer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import producer.publish
from producer.publish import Publisher, PublishError
from producer.settings import ProducerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TransactionalStandIn:
    """What Publisher calls on a transactional confluent-kafka Producer, recorded."""

    def __init__(self, topic: str, clock: Clock) -> None:
        self.topic, self.clock = topic, clock
        self.calls: list[tuple[str, float]] = []
        self.refuse_begin_after = 1_000

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={self.topic: SimpleNamespace(error=None, partitions={0: None, 1: None})})

    def init_transactions(self, timeout: float) -> None:
        self.calls.append(("init", self.clock.now))

    def begin_transaction(self) -> None:
        if sum(1 for name, _ in self.calls if name == "begin") >= self.refuse_begin_after:
            raise KafkaException(KafkaError(KafkaError._STATE, "refused"))
        self.calls.append(("begin", self.clock.now))

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append(("commit", self.clock.now))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append(("abort", self.clock.now))

    def flush(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(producer.publish.time, "monotonic", clock)
    return clock


def _publisher(clock: Clock) -> tuple[Publisher, TransactionalStandIn]:
    settings = ProducerSettings(run_chunk_rows=10, run_chunk_s=600)
    stand_in = TransactionalStandIn(settings.topic_raw, clock)
    publisher = Publisher(settings, producer_factory=lambda conf: stand_in)  # type: ignore[arg-type,return-value]
    publisher.connect(transactional_id="run-slot")
    return publisher, stand_in


def test_each_transaction_is_timed_from_its_own_begin(clock: Clock) -> None:
    publisher, stand_in = _publisher(clock)
    clock.now = 103.0
    publisher.checkpoint(10)  # a full chunk: committed after 3 s, the next begun
    clock.now = 104.5
    publisher.checkpoint(4)  # not full: nothing
    publisher.checkpoint(6)  # full: committed 1.5 s after its begin
    clock.now = 110.0
    publisher.commit()  # the last one: 5.5 s
    assert [name for name, _ in stand_in.calls] == ["init", "begin", "commit", "begin", "commit", "begin", "commit"]
    assert publisher.chunks == 3
    assert publisher.longest_transaction_s == 5.5


def test_a_chunk_committed_is_counted_even_when_the_next_cannot_begin(clock: Clock) -> None:
    publisher, stand_in = _publisher(clock)
    stand_in.refuse_begin_after = 1
    clock.now = 112.0
    with pytest.raises(PublishError, match="cannot begin the run's next chunk"):
        publisher.checkpoint(10)
    assert publisher.chunks == 1
    assert publisher.longest_transaction_s == 12.0
    publisher.close()  # nothing open: nothing to abort
    assert [name for name, _ in stand_in.calls] == ["init", "begin", "commit"]


def test_an_aborted_transaction_is_not_counted(clock: Clock) -> None:
    publisher, stand_in = _publisher(clock)
    clock.now = 130.0
    publisher.close()
    assert [name for name, _ in stand_in.calls] == ["init", "begin", "abort"]
    assert (publisher.chunks, publisher.longest_transaction_s) == (0, 0.0)
