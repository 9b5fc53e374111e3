"""How the publisher queues a run's events: each to its key's partition, in order, counted as
queued, with only each batch's first and last event reporting its offset."""

from __future__ import annotations

import gzip
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.kafka import partition_for
from producer import parallel
from producer.publish import Publisher
from producer.publishing import ListRun, ReadResult, Topics, publish_list, send_in_partitions
from producer.reading import ReadHints
from producer.settings import ProducerSettings
from schemas import make_serde


class Delivered:
    def __init__(self, topic: str, key: bytes, partition: int, offset: int) -> None:
        self._fields = (topic, key, partition, offset)

    def topic(self) -> str:
        return self._fields[0]

    def key(self) -> bytes:
        return self._fields[1]

    def partition(self) -> int:
        return self._fields[2]

    def offset(self) -> int:
        return self._fields[3]


class StandIn:
    """A producer that appends each partition's messages to a log, and reports deliveries on
    ``poll`` to the messages that carry a callback (as librdkafka does)."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.count = topic, partitions
        self.logs: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.pending: list[tuple[Any, Delivered]] = []
        self.calls: list[tuple[int, int]] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(
            topics={self.topic: SimpleNamespace(error=None, partitions=dict.fromkeys(range(self.count)))}
        )

    def produce_batch(self, topic: str, messages: list[dict[str, Any]], partition: int = -1) -> int:
        assert partition >= 0
        self.calls.append((partition, len(messages)))
        log = self.logs[partition]
        for m in messages:
            log.append(m["key"])
            if "callback" in m:
                self.pending.append((m["callback"], Delivered(topic, m["key"], partition, 100 + len(log) - 1)))
        return len(messages)

    def poll(self, timeout: float) -> int:
        served, self.pending = self.pending, []
        for callback, msg in served:
            callback(None, msg)
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def __len__(self) -> int:
        return 0


def test_events_go_to_their_keys_partitions_in_order_and_are_counted() -> None:
    settings = ProducerSettings()
    stand_in = StandIn(settings.topic_raw, 6)
    publisher = Publisher(settings, producer_factory=lambda conf: stand_in)  # type: ignore[arg-type,return-value]
    assert publisher.connect() == 6
    keys = [f"US{n:09d}{n % 10}".encode() for n in range(3000)]
    for first in range(0, 3000, 1000):
        batch = [{"key": k, "value": b"v"} for k in keys[first : first + 1000]]
        send_in_partitions(publisher, batch, b"".join(keys[first : first + 1000]))
    # each key in the partition murmur2 gives it, each partition's keys in their order
    for p in range(6):
        assert stand_in.logs[p] == [k for k in keys if partition_for(k, 6) == p]
    stats = publisher.partitions
    assert [stats[p].events for p in range(6)] == [len(stand_in.logs[p]) for p in range(6)]
    assert sum(s.events for s in stats.values()) == 3000
    # one call per partition and batch, and two callbacks per call at most
    assert len(stand_in.calls) == 3 * 6 and sum(n for _, n in stand_in.calls) == 3000
    assert publisher.delivered == 0  # queued, not yet acknowledged
    publisher.flush("events")
    assert publisher.delivered == 3000
    for p in range(6):  # the first and last offsets of each partition's events
        assert (stats[p].first_offset, stats[p].last_offset) == (100, 100 + len(stand_in.logs[p]) - 1)


def test_only_the_first_and_last_event_of_a_batch_carry_a_callback() -> None:
    settings = ProducerSettings()
    stand_in = StandIn(settings.topic_raw, 6)
    publisher = Publisher(settings, producer_factory=lambda conf: stand_in)  # type: ignore[arg-type,return-value]
    publisher.connect()
    messages: list[dict[str, Any]] = [{"key": f"DE{n:010d}".encode(), "value": b"v"} for n in range(50)]
    publisher.send_events(3, messages)
    assert [i for i, m in enumerate(messages) if "callback" in m] == [0, 49]
    one: list[dict[str, Any]] = [{"key": b"DE0000000001", "value": b"v"}]
    publisher.send_events(4, one)
    assert "callback" in one[0]
    publisher.send_events(5, [])
    assert [s.events for s in publisher.partitions.values()] == [0, 0, 0, 50, 1, 0]


def _compressible_list(tmp_path: Path, rows: int) -> tuple[Path, bytes]:
    """A list that packs more than eight times (a long constant column), gzipped."""
    alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def check_digit(body: str) -> str:
        digits = "".join(str(alnum.index(c)) for c in body)
        total = sum(d - 9 if d > 9 else d for d in (int(ch) * (2 - i % 2) for i, ch in enumerate(reversed(digits))))
        return str((10 - total % 10) % 10)

    isins = [f"DE{n:09d}" for n in range(rows)]
    text = "ISIN,NOTE\n" + "".join(f"{b}{check_digit(b)},{'a long constant note ' * 8}\n" for b in isins)
    path = tmp_path / "list.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    return path, text.encode()


@pytest.mark.parametrize("early", [True, False])
def test_a_list_read_in_ranges_by_processes_started_early_or_not(tmp_path: Path, early: bool) -> None:
    """The range processes start before the list is unpacked when the download looks large
    enough (``worth_warming``), else once it is known to be read in ranges: the same events."""
    path, text = _compressible_list(tmp_path, 20_000)
    min_bytes = len(text) // 20 if early else len(text)  # the gzip is less than an eighth of the text
    assert parallel.worth_warming(path, min_bytes) is early
    events: dict[str, list[tuple[int, bytes]]] = {}
    for workers in (1, 2):
        settings = ProducerSettings()
        stand_in = StandIn(settings.topic_raw, 6)
        publisher = Publisher(settings, producer_factory=lambda conf, s=stand_in: s)  # type: ignore[misc]
        publisher.connect()
        run = ListRun(
            make_serde(None),
            Topics(settings.topic_raw, settings.topic_dlq),
            publisher,
            "list",
            "run-1",
            ReadHints(),
            1 << 30,
            str(tmp_path),
            workers=workers,
            parallel_min_bytes=min_bytes,
        )
        result = ReadResult()
        publish_list(path, run, result)
        assert result.valid == 20_000
        assert ("ranges" in result.layout) is (workers == 2), result.layout
        events[f"{workers}"] = [(p, k) for p, log in stand_in.logs.items() for k in log]
    assert events["1"] == events["2"] and len(events["1"]) == 20_000
