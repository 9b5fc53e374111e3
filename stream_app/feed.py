"""Keeps a local store fed from the partitions of a topic co-partitioned with the raw topic.

Two stores are fed this way: the history (``HistoryStore``, from the change topic) and the
identifier index (``IdentifierIndex``, from the identifier topic). A ``TopicFeed`` is a thread
of the worker's feed process (``stream_app/feed_process.py``) with a confluent-kafka consumer,
assigned by hand (no group) to the topic's partitions of the raw-topic partitions Faust gave
this worker (and those it keeps a standby copy of), each from the offset after the one its store
holds: so a new or wiped state directory is restored from the topic, and a partition that comes
back resumes where it stopped. Records are written by the owner's dedup loop and read back here
a fetch later; ``FeedStatus.caught_up`` says whether a partition's store has everything the
topic had at its latest fetch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from rocksdict import Rdict, WriteBatch

from core.kafka import new_consumer
from stream_app.local_rocksdb import local_options
from stream_app.settings import StreamSettings

logger = logging.getLogger(__name__)


class FeedUnavailable(Exception):
    """A fed store cannot be read now (its feed process is not running or did not answer)."""


class FeedStore(Protocol):
    def offset(self, partition: int) -> int:
        """The last offset applied for ``partition``; -1 if none."""

    def apply(self, partition: int, records: list[tuple[bytes | None, bytes | None, int]]) -> Any:
        """(key, value, offset) of ``partition``, in offset order; at or below ``offset`` skipped."""

    def close(self) -> None: ...


class FedRocksDB:
    """The skeleton of a ``FeedStore``: a local RocksDB holding, per partition, the records a
    subclass keeps (``_write``) and the last offset applied, in one write batch per fetch."""

    _OFFSET = b"o"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), local_options())

    def close(self) -> None:
        self._db.close()

    def offset(self, partition: int) -> int:
        """The last offset applied for ``partition``; -1 if none."""
        raw = self._db.get(self._OFFSET + partition_bytes(partition))
        return -1 if raw is None else int(raw)

    def _apply(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> tuple[int, int]:
        """(key, value, offset) of ``partition`` in offset order, in one write batch with the last
        offset; records at or below the stored offset are skipped. Returns (records kept, last
        offset)."""
        done = self.offset(partition)
        wb = WriteBatch(raw_mode=True)
        count, last = 0, done
        for key, value, offset in records:
            if offset <= done:
                continue
            last = offset
            if self._write(wb, partition, key, value):
                count += 1
        if last > done:
            wb.put(self._OFFSET + partition_bytes(partition), str(last).encode())
            self._db.write(wb)
        return count, last

    def _write(self, wb: WriteBatch, partition: int, key: bytes | None, value: bytes | None) -> bool:
        """Add one record's writes to ``wb``; False if it is not one to keep."""
        raise NotImplementedError


def partition_bytes(partition: int) -> bytes:
    """A partition as the first bytes of a fed store's keys."""
    return partition.to_bytes(2, "big")


S = TypeVar("S", bound=FeedStore)
R = TypeVar("R", covariant=True)


class HistoryReads(Protocol):
    """What queries read of a history (``HistoryStore``, or the feed process's answer for it)."""

    def changes(self, partition: int, isin: str, source: str | None = None) -> list[dict[str, Any]]: ...

    def as_of(
        self, partition: int, isin: str, valid_at_ms: int, known_at_ms: int | None = None, source: str | None = None
    ) -> dict[str, Any] | None: ...


class IndexReads(Protocol):
    """What lookups read of an identifier index (``IdentifierIndex``, or the feed process's answer)."""

    def isins(self, partition: int, field: str, value: str) -> list[str]: ...


class Feed(Protocol[R]):
    """A fed store as the worker's queries see it (``stream_app.feed_process.RemoteFeed``: the
    feeds run in the feed process, whose ``TopicFeed.status`` the worker is sent)."""

    @property
    def store(self) -> R: ...

    def caught_up(self, partition: int) -> bool: ...

    def lag(self) -> int | None: ...


@dataclass(frozen=True)
class FeedStatus:
    """A feed's progress, as its thread last saw it (and as a feed process reports it)."""

    assigned: frozenset[int] | None
    """The partitions the feed's consumer is assigned; None before its first assignment."""
    high: dict[int, int]
    """Each partition's high watermark at its latest fetch."""
    offsets: dict[int, int]
    """The last offset the store applied, per assigned partition."""
    generation: int = 0
    """The assignment (``TopicFeed.assign``'s) the consumer follows: a status of an earlier one
    says nothing about a partition given back since."""

    def caught_up(self, partition: int) -> bool:
        """Whether the partition's store holds every record up to the topic's end at the last fetch."""
        if self.assigned is None or partition not in self.assigned:
            return False
        high = self.high.get(partition)
        return high is not None and self.offsets.get(partition, -1) >= high - 1

    def lag(self) -> int | None:
        """Records not yet in the store over the assigned partitions; None before every one was fetched."""
        if self.assigned is None:
            return None
        total = 0
        for partition in self.assigned:
            high = self.high.get(partition)
            if high is None:
                return None
            total += max(0, high - 1 - self.offsets.get(partition, -1))
        return total


class TopicFeed(Generic[S]):
    def __init__(self, settings: StreamSettings, topic: str, store: S, name: str) -> None:
        self._settings = settings
        self._topic = topic
        self._name = name
        self.store = store
        self._wanted: frozenset[int] = frozenset()
        self._generation = 0
        self._assigned: frozenset[int] | None = None
        self._followed = 0
        self._high: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-feed", daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def start(self) -> TopicFeed[S]:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.store.close()

    def assign(self, partitions: Iterable[int], generation: int = 0) -> None:
        """The partitions this worker keeps (its raw-topic partitions, and standby ones), as of
        assignment ``generation`` (reported back in ``status``)."""
        with self._lock:
            self._wanted = frozenset(partitions)
            self._generation = generation

    def status(self) -> FeedStatus:
        """What the feed holds now: the partitions assigned, each one's high watermark at its
        latest fetch, and the last offset its store applied."""
        followed, assigned = self._followed, self._assigned
        offsets = {p: self.store.offset(p) for p in assigned} if assigned is not None else {}
        return FeedStatus(assigned, dict(self._high), offsets, followed)

    def _run(self) -> None:
        consumer = new_consumer(
            self._settings.confluent_config(),
            **{
                "group.id": f"{self._settings.app_id}-{self._name}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 100,
                "fetch.queue.backoff.ms": 50,
            },
        )
        try:
            while not self._stop.is_set():
                with self._lock:
                    wanted, generation = self._wanted, self._generation
                if wanted != self._assigned:
                    starts = {p: self.store.offset(p) + 1 for p in wanted}
                    consumer.assign(
                        [
                            TopicPartition(self._topic, p, off if off > 0 else OFFSET_BEGINNING)
                            for p, off in starts.items()
                        ]
                    )
                    self._followed = -1  # a status taken meanwhile matches no assignment
                    self._assigned = wanted
                    self._high = {}
                self._followed = generation
                batch = consumer.consume(1000, timeout=0.2)
                by_partition: dict[int, list[tuple[bytes | None, bytes | None, int]]] = {}
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    partition, offset = msg.partition(), msg.offset()
                    if partition is None or offset is None or partition not in wanted:
                        continue
                    by_partition.setdefault(partition, []).append((msg.key(), msg.value(), offset))
                for partition, records in by_partition.items():
                    self.store.apply(partition, records)
                for partition in wanted:
                    try:
                        _low, high = consumer.get_watermark_offsets(
                            TopicPartition(self._topic, partition), timeout=0.5, cached=True
                        )
                    except Exception:  # noqa: S112 - not fetched yet
                        continue
                    if high is not None and high >= 0:
                        self._high[partition] = int(high)
        except Exception:
            logger.exception("the %s feed stopped", self._name)
        finally:
            consumer.close()
