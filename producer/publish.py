"""Publish a run's records with an idempotent, transactional confluent-kafka producer.

ISIN events go to the raw topic keyed by ISIN, each to the partition murmur2 gives its key (as
the Java client, librdkafka's ``murmur2_random`` and Faust: ``core.kafka.partitions``), dead
letters to the dead-letter topic, and after a completed run one ``EndOfRun`` marker to every
partition of the raw topic. Events are counted per partition as they are queued, and the first
and last of each batch report their offsets; the run fails if any record is still
unacknowledged or failed after a flush, or if its transaction cannot commit (a failed event
fails it).

A run's transactions (its chunks) share a transactional id scoped to its source and slot: each
chunk's events and dead letters commit together or not at all, the last one with the markers
and the final run record, and a second producer of the same slot (the replica a source moved
to, a duplicate cron start) fences the first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import BrokerError, PublishError
from core.failpoints import failpoint
from core.kafka import new_producer
from core.kafka.errors import kafka_error
from core.kafka.producing import Headers, produce, produce_batch
from producer.settings import ProducerSettings

logger = logging.getLogger(__name__)

POLL_EVERY = 1000
BROKERS_DOWN_GRACE_S = 10.0
ERROR_LOG_EVERY_S = 30.0


class FencedError(PublishError):
    """Another producer took over this run's slot; this run must not commit."""


class RunInterrupted(PublishError):
    """The run was asked to stop (SIGTERM, the source moved to another replica) before it completed."""


FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


@dataclass
class PartitionStats:
    """One raw-topic partition in this run: the events queued to it (acknowledged once a flush
    returns with no failure; a failed one fails the transaction's commit), and the offsets of its
    first and last events (each batch's first and last event carry a delivery callback)."""

    events: int = 0
    first_offset: int = -1
    last_offset: int = -1


class Publisher:
    """Owns one confluent-kafka Producer, created on ``connect()``, never at construction."""

    def __init__(
        self,
        settings: ProducerSettings,
        producer_factory: Callable[[dict[str, Any]], Producer] = new_producer,
        should_stop: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._factory = producer_factory
        self._should_stop = should_stop
        self._transactional = False
        self._producer: Producer | None = None
        self._raw_topic = settings.topic_raw
        self.partitions: dict[int, PartitionStats] = {}
        self.delivered = 0
        """Events acknowledged: queued before a flush that returned with every record done and no
        failure a callback heard (a failure of an event without one fails the commit instead)."""
        self._queued = 0
        self.dead_letters_delivered = 0
        self.failed = 0
        """Failed deliveries a callback heard (of records sent one by one, and of each batch's
        first and last event); the others fail the transaction's commit."""
        self._first_error: str | None = None
        self._fatal: str | None = None
        self._brokers_down_since: float | None = None
        self._fenced = False
        self._since_poll = 0
        self._last_logged: dict[str, float] = {}
        self._chunk_started = 0.0
        self._chunk_events = 0
        self.chunks = 0
        """Transactions the run committed (its chunks; the last holds the markers and record)."""
        self.longest_transaction_s = 0.0
        """The longest of them, from its begin to its commit acknowledged (committed ones only)."""

    # -- lifecycle ----------------------------------------------------------------------

    def connect(self, timeout: float | None = None, transactional_id: str | None = None) -> int:
        """Create the producer and check the raw topic; returns its partition count.

        With a ``transactional_id``, fence any older producer of that id and begin a transaction.
        """
        timeout = timeout if timeout is not None else self._settings.kafka_connect_timeout_s
        # No delivery callback for every record: a Python call per event cost the run about a
        # third of its process's time. Records sent one by one (markers, dead letters) carry
        # one, and so do the first and last events of each batch (send_events).
        conf = {**self._settings.producer_config(), "error_cb": self._on_error}
        if transactional_id:
            conf["transactional.id"] = transactional_id
            conf["transaction.timeout.ms"] = self._settings.producer_transaction_timeout_ms
        self._producer = self._factory(conf)
        try:
            md = self._producer.list_topics(self._raw_topic, timeout=timeout)
        except KafkaException as exc:
            raise kafka_error(exc, self._settings.kafka_bootstrap_servers, "connecting the run's producer") from exc
        topic = md.topics.get(self._raw_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise BrokerError(f"topic {self._raw_topic} does not exist on {self._settings.kafka_bootstrap_servers}")
        count = len(topic.partitions)
        self.partitions = {p: PartitionStats() for p in range(count)}
        if transactional_id:
            try:
                self._producer.init_transactions(timeout)
                self._producer.begin_transaction()
                self._chunk_started, self._chunk_events = time.monotonic(), 0
            except KafkaException as exc:
                raise kafka_error(
                    exc, self._settings.kafka_bootstrap_servers, f"starting the run's transaction {transactional_id}"
                ) from exc
            self._transactional = True
        return count

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("Publisher.connect() was not called")
        return self._producer

    # -- callbacks (run inside poll/flush, on this thread) -----------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if err.code() in FENCED_CODES:
                self._fenced = True
            self.failed += 1
            if self._first_error is None:
                self._first_error = f"{err.name()}: {err.str()}"
            if err.fatal():
                self._fatal = f"{err.name()}: {err.str()}"
            return
        self._brokers_down_since = None
        if msg.topic() == self._raw_topic:
            if msg.key() is None:  # an end-of-run marker, not an event
                return
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None  # set on every delivered message
            stats = self.partitions.get(partition)
            if stats is None:
                stats = self.partitions[partition] = PartitionStats()
            if stats.first_offset < 0 or offset < stats.first_offset:
                stats.first_offset = offset
            if offset > stats.last_offset:
                stats.last_offset = offset
        else:
            self.dead_letters_delivered += 1

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in FENCED_CODES:
            self._fenced = True
        if err.fatal():
            self._fatal = f"{err.name()}: {err.str()}"
        elif err.code() == KafkaError._ALL_BROKERS_DOWN and self._brokers_down_since is None:
            self._brokers_down_since = time.monotonic()
        text = err.str()
        now = time.monotonic()
        if self._last_logged.get(text, -ERROR_LOG_EVERY_S) + ERROR_LOG_EVERY_S <= now:
            self._last_logged[text] = now
            logger.warning("kafka client error: %s", text)

    def _check_health(self) -> None:
        if self._fenced:
            raise FencedError("another producer took over this run's slot (fenced)")
        stop = self._should_stop()
        if stop:
            raise RunInterrupted(stop)
        if self._fatal:
            raise PublishError(f"the Kafka producer hit a fatal error: {self._fatal}")
        down = self._brokers_down_since
        if down is not None and time.monotonic() - down > BROKERS_DOWN_GRACE_S:
            raise PublishError(
                f"lost the connection to every Kafka broker at {self._settings.kafka_bootstrap_servers} "
                f"for more than {BROKERS_DOWN_GRACE_S:.0f}s"
            )

    # -- sending ------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        produce(
            self.producer,
            topic,
            value,
            key,
            partition=partition,
            headers=headers,
            on_delivery=self._on_delivery,
            check=self._check_health,
        )
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self.producer.poll(0)
            self._check_health()

    @property
    def partition_count(self) -> int:
        """The raw topic's partitions (known once connected)."""
        return len(self.partitions)

    def send_events(self, partition: int, messages: list[dict[str, Any]]) -> None:
        """Queue events ``[{"key": ..., "value": ...}, ...]`` (no headers) of one raw-topic
        partition, in their order, with one call.

        They are counted here. Only the first and the last carry a delivery callback: a
        partition's events are appended in the order they are queued, so their offsets bound the
        partition's events (``first_offset`` and ``last_offset`` of its end-of-run marker). An
        event whose delivery fails fails the transaction's commit, and so the run."""
        if not messages:
            return
        stats = self.partitions[partition]
        producer = self.producer
        messages[0]["callback"] = messages[-1]["callback"] = self._on_delivery
        produce_batch(producer, self._raw_topic, messages, check=self._check_health, partition=partition)
        stats.events += len(messages)
        self._queued += len(messages)
        producer.poll(0)
        self._check_health()

    def flush(self, what: str) -> None:
        """Wait for every queued record; raise PublishError if any is missing or failed."""
        timeout = self._settings.producer_flush_timeout_s
        deadline = time.monotonic() + timeout
        remaining = len(self.producer)
        while remaining and time.monotonic() < deadline:
            remaining = self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            self._check_health()
        if remaining:
            raise PublishError(f"{remaining} {what} not acknowledged by Kafka within {timeout:.0f}s")
        if self.failed:
            raise PublishError(f"{self.failed} {what} failed delivery; first error: {self._first_error}")
        self.delivered, self._queued = self.delivered + self._queued, 0

    def checkpoint(self, sent: int) -> None:
        """After ``sent`` more events: commit the open transaction and begin the next one, when
        it holds ``RUN_CHUNK_ROWS`` events or is ``RUN_CHUNK_S`` old (called between batches of
        events only, so that the end-of-run markers and the run record share the last one)."""
        if not self._transactional:
            return
        self._chunk_events += sent
        age = time.monotonic() - self._chunk_started
        if self._chunk_events < self._settings.run_chunk_rows and age < self._settings.run_chunk_s:
            return
        self.flush("events of a chunk of the run")
        self._commit("a chunk of the run")
        failpoint("run.chunk_committed")
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise PublishError(f"cannot begin the run's next chunk: {exc.args[0].str()}") from exc
        self._chunk_started, self._chunk_events = time.monotonic(), 0
        self._transactional = True

    def commit(self) -> None:
        """Commit the run's last transaction; FencedError if another producer took over the slot."""
        if not self._transactional:
            return
        self._commit("the run's transaction")

    def _commit(self, what: str) -> None:
        try:
            self.producer.commit_transaction(self._settings.producer_flush_timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in FENCED_CODES or self._fenced:
                raise FencedError(f"another producer took over this run's slot: {err.str()}") from exc
            raise PublishError(f"cannot commit {what}: {err.str()}") from exc
        self._transactional = False
        self.chunks += 1
        self.longest_transaction_s = max(self.longest_transaction_s, round(time.monotonic() - self._chunk_started, 3))

    def abort(self) -> None:
        """Abort the run's transaction (best effort: a fenced or dead producer cannot)."""
        if not self._transactional or self._producer is None:
            return
        self._transactional = False
        try:
            self._producer.abort_transaction(10.0)
        except KafkaException as exc:
            logger.warning("could not abort the run's transaction: %s", exc.args[0].str())

    def close(self) -> None:
        """Abort an open transaction, or flush anything still queued (for error paths)."""
        if self._transactional:
            self.abort()
        elif self._producer is not None and len(self._producer):
            self._producer.flush(5.0)
