"""``isin-pipeline rebuild``: recompute the table from the raw topic and repair the current topic.

Three words, three things: ``stream_app/reindex.py`` (*reindex*) re-reads one run's keys from
the raw topic inside a running worker, for one end-of-run sweep; ``ops/replay.py`` (*replay*)
moves a consumer group's committed offsets and touches no data; *rebuild*, here, recomputes the
whole table from the raw topic and repairs the compacted topic where it differs.

For a new application version or a state you no longer trust. With the stream workers
stopped, for one partition after another (the raw and the current topics are co-partitioned,
so a partition's records come only from the same partition of the raw topic), it:

1. replays the partition of the raw topic from its earliest offset through the same dedup
   loop, into a private RocksDB on disk (end-of-run sweeps included; a run whose start is past
   retention gets no deletes, as in the live app);
2. reads the same partition of the compacted topic into a second RocksDB on disk, last wins,
   and walks the two in key order side by side, comparing by content (sources and content
   hashes);
3. writes only the differences to that partition of the compacted topic, and waits for their
   acknowledgements: changed or missing records, and tombstones for ISINs that should not be
   there;
4. deletes both scratch stores before the next partition.

Memory does not grow with the table: the records of a partition live on disk, what is held in
memory is one batch of the replay or of the read, and disk holds one partition at a time.
At the end it sets the stream app's committed raw offsets to where the replay ended. A rebuild
that stops half-way has repaired the partitions it finished and moved no offsets; running it
again is safe (with nothing left to repair, it writes nothing).

Workers started afterwards recover their tables from the compacted topic (Faust replays the
changelog after their last persisted offset), so they pick up the repair. If nothing
differs, nothing is written: the current set is the same as before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, KafkaError
from rocksdict import Options, Rdict

from core.errors import PublishError
from core.kafka import header_pairs, new_admin, new_producer
from core.kafka.offsets import end_offsets
from core.kafka.producing import produce
from core.kafka.ranges import read_ranges
from ops.client import TopicReader
from ops.rebuild_index import ExpectedIndex, index_differences, index_entries, sorted_differences
from ops.replay import ensure_idle, set_offsets
from schemas import Serde, make_serde
from stream_app.dedup import Dedup
from stream_app.golden import Golden
from stream_app.reindex import RawRangeReader
from stream_app.seen import SeenIndex
from stream_app.settings import StreamSettings
from stream_app.store import RdictTableStore, iter_items, write_changes

logger = logging.getLogger(__name__)

GROUP = "isin-pipeline-rebuild"

Send = Callable[[int, bytes, bytes | None], None]
"""(partition, key, record or None for a tombstone): a difference written to the compacted topic."""


class RecordView(NamedTuple):
    """A confluent-kafka message seen as the dedup loop reads records."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class PartitionResult:
    """What the rebuild of one partition found."""

    partition: int
    raw_events: int = 0
    isins: int = 0
    changed: int = 0
    removed: int = 0


class _NoOutput:
    """The replay writes nothing while it runs; differences are written after the comparison."""

    def send(self, partition: int, key: bytes, value: bytes | None) -> None:
        pass

    def dead_letter(self, key: bytes | None, value: bytes) -> None:
        pass

    def change(self, partition: int, key: bytes, value: bytes) -> None:
        pass

    def index(self, partition: int, key: bytes, value: bytes | None) -> None:
        pass

    async def flush(self) -> dict[int, int]:
        return {}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "rebuild",
        help="recompute the table from the raw topic and repair the compacted topic",
        description="With the stream workers stopped: replay the raw topic into a fresh table, write only the "
        "differences to the compacted topic, and move the stream app's raw offsets to the end of the replay.",
    )
    p.add_argument("--work-dir", type=Path, help="scratch directory for the rebuilt table (default: a temp dir)")
    p.add_argument("--dry-run", action="store_true", help="compare only: write nothing, move no offsets")
    p.add_argument(
        "--force",
        action="store_true",
        help="go on although the broker does not report the stream app's group empty (embedded broker)",
    )
    p.set_defaults(func=cmd_rebuild)


def cmd_rebuild(args: argparse.Namespace) -> int:
    settings = StreamSettings()
    with tempfile.TemporaryDirectory(prefix="isin-rebuild-", dir=args.work_dir) as tmp:
        summary = rebuild(settings, Path(tmp), dry_run=args.dry_run, force=args.force)
    print(json.dumps(summary))
    return 0


def rebuild(settings: StreamSettings, work_dir: Path, dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    started = time.monotonic()
    conf = settings.confluent_config()
    admin = new_admin(conf)
    ensure_idle(admin, settings.app_id, force=force)
    serde = make_serde(settings.schema_registry_config())
    partitions = TopicReader(settings, settings.topic_raw, serde).partitions()
    ends = {p: off for (_, p), off in end_offsets(conf, [(settings.topic_raw, p) for p in partitions]).items()}

    results: list[PartitionResult] = []
    writer = None if dry_run else _Writer(settings)
    golden = Golden.load(settings.sources_file, settings.topic_partitions)  # built as the workers build them
    expected = ExpectedIndex(work_dir / "index-expected.rdb", golden, serde)
    for partition in partitions:  # one at a time: memory and scratch space do not grow with the table
        send = writer.send if writer is not None else None
        result = rebuild_partition(
            settings, serde, partition, ends[partition], work_dir / f"p{partition}", send, golden, expected
        )
        if writer is not None:
            writer.flush()  # this partition's repair acknowledged before the next one begins
        results.append(result)
        logger.info(
            "rebuild: partition %d (%d of %d): %d raw events, %d ISINs, %d changed, %d removed",
            partition,
            len(results),
            len(partitions),
            result.raw_events,
            result.isins,
            result.changed,
            result.removed,
        )
    try:
        index = _repair_index(settings, partitions, expected, work_dir, dry_run)
    finally:
        expected.close()
    if not dry_run:
        set_offsets(admin, settings.app_id, settings.topic_raw, ends)
    changed = sum(r.changed for r in results)
    removed = sum(r.removed for r in results)
    return {
        "raw_events": sum(r.raw_events for r in results),
        "isins": sum(r.isins for r in results),
        "changed": changed,
        "removed": removed,
        "written": 0 if dry_run else changed + removed,
        "index_entries": expected.entries,
        "index_changed": index[0],
        "index_removed": index[1],
        "raw_offsets": {str(p): off for p, off in ends.items()},
        "dry_run": dry_run,
        "duration_s": round(time.monotonic() - started, 3),
    }


def rebuild_partition(
    settings: StreamSettings,
    serde: Serde,
    partition: int,
    end: int,
    scratch: Path,
    send: Send | None,
    golden: Golden,
    expected: ExpectedIndex | None = None,
) -> PartitionResult:
    """One partition: the raw topic replayed into a store on disk, compared with the compacted
    topic's partition (read into another), differences given to ``send``, the index entries the
    rebuilt records need added to ``expected``; the scratch removed."""
    conf = settings.confluent_config()
    store = RdictTableStore(scratch / "table")
    seen = SeenIndex(scratch / "seen.rdb")
    seen.on_assigned([partition])
    reindex = RawRangeReader(conf, settings.topic_raw)
    dedup = Dedup(serde, store, _NoOutput(), seen, reindex, settings.topic_current, golden=golden)
    current: Rdict | None = None
    try:

        async def replay() -> None:
            for batch in _raw_batches(conf, settings.topic_raw, partition, end):
                await dedup.process(partition, batch)

        asyncio.run(replay())
        logger.info("rebuild: partition %d replayed: %s", partition, dedup.stats.as_dict())
        current = _current_partition(settings, partition, scratch / "current.rdb")
        result = compare_partition(serde, partition, store.items(partition), iter_items(current), send)
        result.raw_events = dedup.stats.events
        if expected is not None:
            expected.add(store.items(partition))
        return result
    finally:
        store.close()
        seen.close()
        if current is not None:
            current.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _repair_index(
    settings: StreamSettings, partitions: list[int], expected: ExpectedIndex, work_dir: Path, dry_run: bool
) -> tuple[int, int]:
    """The identifier topic against the rebuilt table's entries, one partition at a time
    (``ops/rebuild_index.py``); returns (entries written again, tombstones)."""
    topic = settings.topic_identifiers
    writer = None if dry_run else _Writer(settings, topic)
    changed = removed = 0
    for partition in partitions:  # co-partitioned with the raw topic: the same partitions
        path = work_dir / f"index-p{partition}.rdb"
        current = _current_partition(settings, partition, path, topic)
        try:
            for key, value in index_differences(expected.partition(partition), index_entries(current)):
                if value is None:
                    removed += 1
                else:
                    changed += 1
                if writer is not None:
                    writer.send(partition, key, value)
        finally:
            current.close()
            shutil.rmtree(path, ignore_errors=True)
        if writer is not None:
            writer.flush()
    logger.info("rebuild: identifier index: %d entries written again, %d removed", changed, removed)
    return changed, removed


def compare_partition(
    serde: Serde,
    partition: int,
    rebuilt: Iterator[tuple[bytes, bytes]],
    current: Iterator[tuple[bytes, bytes]],
    send: Send | None,
) -> PartitionResult:
    """The rebuilt partition against the compacted topic's, both in key order: each difference
    counted and, unless ``send`` is None (a dry run), sent as it is found."""
    result = PartitionResult(partition)

    def counted() -> Iterator[tuple[bytes, bytes]]:
        for item in rebuilt:
            result.isins += 1
            yield item

    for key, value in _differences(serde, counted(), current):
        if value is None:
            result.removed += 1
        else:
            result.changed += 1
        if send is not None:
            send(partition, key, value)
    return result


def _content(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What counts as a change: which sources list the ISIN, and what they say."""
    return sorted((item["source"], item["content_hash"]) for item in record["listings"])


def _raw_batches(conf: dict[str, Any], topic: str, partition: int, end: int) -> Iterator[list[RecordView]]:
    """One partition of the raw topic from the beginning to ``end``, a batch at a time, in offset order."""
    for batch in read_ranges(conf, topic, {partition: OFFSET_BEGINNING}, {partition: end}, group=GROUP):
        views: list[RecordView] = []
        for msg in batch:
            offset = msg.offset()
            assert offset is not None
            views.append(RecordView(offset, msg.key(), msg.value(), header_pairs(msg.headers())))
        yield views


def _current_partition(settings: StreamSettings, partition: int, path: Path, topic: str | None = None) -> Rdict:
    """One partition of the compacted topic (or of ``topic``, compacted too) read to its end into
    an on-disk store, last wins, tombstones applied (on the embedded broker, which does not
    compact, every version is read)."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    db = Rdict(str(path), opts)
    conf = settings.confluent_config()
    topic = topic or settings.topic_current
    end = end_offsets(conf, [(topic, partition)])[(topic, partition)]
    for batch in read_ranges(conf, topic, {partition: OFFSET_BEGINNING}, {partition: end}, group=GROUP):
        changes: dict[bytes, bytes | None] = {}
        for msg in batch:
            key = msg.key()
            if key is not None:
                changes[key] = msg.value()
        write_changes(db, changes)
    return db


def _differences(
    serde: Serde, rebuilt: Iterator[tuple[bytes, bytes]], current: Iterator[tuple[bytes, bytes]]
) -> Iterator[tuple[bytes, bytes | None]]:
    """(key, record to write, or None for a tombstone) where the two sorted streams differ by content."""

    def same(new: bytes, old: bytes) -> bool:
        return _content(serde.decode(new).record) == _content(serde.decode(old).record)

    return sorted_differences(rebuilt, current, same)


class _Writer:
    """The differences to the compacted topic, as they are found (produce waits when librdkafka's
    queue is full, so memory stays bounded); ``flush`` waits for every acknowledgement."""

    def __init__(self, settings: StreamSettings, topic: str | None = None) -> None:
        self._settings = settings
        self._topic = topic or settings.topic_current
        self._failures: list[str] = []
        self._producer = new_producer(settings.output_producer_config(), **{"client.id": f"{settings.app_id}-rebuild"})

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures.append(err.str())

    def send(self, partition: int, key: bytes, value: bytes | None) -> None:
        produce(self._producer, self._topic, value, key, partition=partition, on_delivery=self._on_delivery)

    def flush(self) -> None:
        remaining = self._producer.flush(self._settings.output_flush_timeout_s)
        if remaining or self._failures:
            raise PublishError(
                f"rebuild: {remaining} records unacknowledged, {len(self._failures)} failed: {self._failures[:1]}"
            )
