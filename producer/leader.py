"""Leader election through a Kafka consumer group: no other infrastructure.

Every scheduler replica joins one consumer group on a one-partition coordination topic; the
member assigned partition 0 leads. When the leader dies, the group coordinator notices after
the session timeout and assigns partition 0 to another replica. A leader that lost its lease
without noticing (a long pause) is fenced by the run's slot-scoped transactional id, so it
cannot commit a second run of the same slot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

logger = logging.getLogger(__name__)


class LeaderElection:
    def __init__(
        self,
        conf: dict[str, Any],
        group: str,
        topic: str,
        session_timeout_s: float = 6.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._conf = {
            **conf,
            "group.id": group,
            "session.timeout.ms": int(session_timeout_s * 1000),
            "heartbeat.interval.ms": max(100, int(session_timeout_s * 1000 / 6)),
            "max.poll.interval.ms": max(60_000, int(session_timeout_s * 2000)),
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "partition.assignment.strategy": "range",
        }
        self.group = group
        self._topic = topic
        self._on_change = on_change
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.epoch = 0
        self.error: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def wait_leader(self, timeout: float) -> bool:
        return self._leader.wait(timeout)

    def start(self) -> LeaderElection:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the group (a clean handover: the next leader need not wait for the session timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        if leader:
            self.epoch += 1
            self._leader.set()
            logger.info("became the leader of %s (epoch %d)", self.group, self.epoch)
        else:
            self._leader.clear()
            logger.info("no longer the leader of %s", self.group)
        if self._on_change is not None:
            self._on_change(leader)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._set(any(tp.partition == 0 for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._set(False)

    def _run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            consumer.subscribe(
                [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                err = msg.error() if msg is not None else None
                if err is not None and err.fatal():
                    raise KafkaException(err)
        except Exception as exc:  # the thread must not die silently: the scheduler checks .error
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("leader election failed: %s", self.error)
        finally:
            self._set(False)
            consumer.close()
