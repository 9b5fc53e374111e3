"""Which sources a scheduler replica runs: its partitions of the fleet's consumer group.

Every scheduler replica joins one Kafka consumer group on the scheduler topic
(``<TOPIC_RUNS>.schedulers``, ``SCHEDULER_PARTITIONS`` partitions, default 12). Nothing is
ever written to it: only its assignment matters. A source belongs to the partition its name
hashes to (``source_partition``), and the replica assigned that partition runs the source:
it alone runs its slots. When a replica joins, leaves or dies, the group rebalances and the
sources move with their partitions. ``cooperative-sticky`` assignment moves only what must
move: the other replicas keep their sources, and their runs in flight, through a rebalance.

A replica that is gone is noticed after the session timeout (``SCHEDULER_SESSION_TIMEOUT_S``,
6 s, heartbeats every second); one that stops cleanly leaves the group at once. Membership is
not a lock: a replica that lost a partition without noticing (a long pause) is fenced by the
slot-scoped transactional id of its run (``producer.run``), and the replica a source moves to
fences its unfinished runs first (``scheduler.source_scheduler``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from core.kafka import new_consumer

logger = logging.getLogger(__name__)


def source_partition(name: str, partitions: int) -> int:
    """The scheduler topic's partition of a source: a stable hash of its name (SHA-256, not
    Python's salted ``hash``), the same on every replica, in every process and version."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % partitions


class Ownership(Protocol):
    """Which partitions this replica holds: partition -> the generation it was (last) assigned in."""

    error: str | None

    def owned(self) -> Mapping[int, int]: ...


class Membership:
    """This replica's membership of the fleet's consumer group, kept by a thread of its own."""

    def __init__(self, conf: dict[str, Any], group: str, topic: str, session_timeout_s: float = 6.0) -> None:
        session_ms = int(session_timeout_s * 1000)
        self._conf = {
            **conf,
            "group.id": group,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(100, session_ms // 6),
            # The thread polls five times a second whatever the runs do; this only bounds a stall.
            "max.poll.interval.ms": max(60_000, session_ms * 2),
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
        self.group = group
        self.topic = topic
        self.error: str | None = None
        self._owned: dict[int, int] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def owned(self) -> dict[int, int]:
        with self._lock:
            return dict(self._owned)

    def start(self) -> Membership:
        self._thread = threading.Thread(target=self._run, name="scheduler-membership", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the group: the others take this replica's sources at once, not after the session timeout."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        with self._lock:
            self._generation += 1
            for tp in partitions:
                self._owned[tp.partition] = self._generation
            now = sorted(self._owned)
        logger.info("assigned partitions %s of %s; this replica holds %s", _ids(partitions), self.topic, now)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop(partitions, "revoked")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop(partitions, "lost (the group moved on without this replica)")

    def _drop(self, partitions: list[TopicPartition], how: str) -> None:
        if not partitions:
            return
        with self._lock:
            for tp in partitions:
                self._owned.pop(tp.partition, None)
            now = sorted(self._owned)
        logger.info("partitions %s of %s %s; this replica holds %s", _ids(partitions), self.topic, how, now)

    def _run(self) -> None:
        consumer = new_consumer(self._conf)
        try:
            consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                err = msg.error() if msg is not None else None
                if err is not None and err.fatal():
                    raise KafkaException(err)
        except Exception as exc:  # the thread must not die silently: the fleet checks .error
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("scheduler group membership failed: %s", self.error)
        finally:
            with self._lock:
                self._owned.clear()
            consumer.close()


def _ids(partitions: list[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in partitions)
