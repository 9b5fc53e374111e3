"""``isin-pipeline rebuild``: recompute the table from the raw topic and repair the current topic.

For a new application version or a state you no longer trust. With the stream workers
stopped, it:

1. replays the raw topic from its earliest offsets through the same dedup loop, into a
   private RocksDB (end-of-run sweeps included; a run whose start is past retention gets
   no deletes, as in the live app);
2. compares the result with the compacted topic, by content (sources and content hashes);
3. writes only the differences to the compacted topic: changed or missing records, and
   tombstones for ISINs that should not be there;
4. sets the stream app's committed raw offsets to where the replay ended.

Workers started afterwards recover their tables from the compacted topic (Faust replays the
changelog after their last persisted offset), so they pick up the repair. If nothing
differs, nothing is written: the current set is the same as before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from core.errors import PublishError
from core.kafka import header_pairs, partition_for
from core.kafka.offsets import end_offsets
from core.kafka.producing import produce
from core.kafka.ranges import read_ranges
from schemas import make_serde
from stream_app.client import TopicReader, current_set
from stream_app.dedup import Dedup
from stream_app.reindex import RawRangeReader
from stream_app.replay import ensure_idle, set_offsets
from stream_app.seen import SeenIndex
from stream_app.settings import StreamSettings
from stream_app.store import RdictTableStore

logger = logging.getLogger(__name__)


class RecordView(NamedTuple):
    """A confluent-kafka message seen as the dedup loop reads records."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class _NoOutput:
    """The replay writes nothing while it runs; differences are written at the end."""

    def send(self, partition: int, key: bytes, value: bytes | None) -> None:
        pass

    def dead_letter(self, key: bytes | None, value: bytes) -> None:
        pass

    def change(self, partition: int, key: bytes, value: bytes) -> None:
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
    admin = AdminClient(conf)
    ensure_idle(admin, settings.app_id, force=force)
    serde = make_serde(settings.schema_registry_config())
    partitions = TopicReader(settings, settings.topic_raw, serde).partitions()
    ends = {p: off for (_, p), off in end_offsets(conf, [(settings.topic_raw, p) for p in partitions]).items()}

    store = RdictTableStore(work_dir / "table")
    seen = SeenIndex(work_dir / "seen.rdb")
    seen.on_assigned(partitions)
    dedup = Dedup(serde, store, _NoOutput(), seen, RawRangeReader(conf, settings.topic_raw), settings.topic_current)
    try:

        async def replay() -> None:
            for partition, batch in _raw_batches(conf, settings.topic_raw, ends):
                await dedup.process(partition, batch)

        asyncio.run(replay())
        logger.info("replayed %d raw events: %s", dedup.stats.events, dedup.stats.as_dict())

        before = current_set(settings, serde)
        changes: list[tuple[int, bytes, bytes | None]] = []
        rebuilt = 0
        for partition in partitions:
            for key, value in store.items(partition):
                rebuilt += 1
                isin = key.decode()
                old = before.pop(isin, None)
                if old is None or _content(old) != _content(serde.decode(value).record):
                    changes.append((partition, key, value))
        changes += [(partition_for(isin.encode(), len(partitions)), isin.encode(), None) for isin in before]
    finally:
        store.close()
        seen.close()

    if not dry_run:
        _write(settings, changes)
        set_offsets(admin, settings.app_id, settings.topic_raw, ends)
    return {
        "raw_events": dedup.stats.events,
        "isins": rebuilt,
        "changed": sum(1 for c in changes if c[2] is not None),
        "removed": sum(1 for c in changes if c[2] is None),
        "written": 0 if dry_run else len(changes),
        "raw_offsets": {str(p): off for p, off in ends.items()},
        "dry_run": dry_run,
        "duration_s": round(time.monotonic() - started, 3),
    }


def _content(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What counts as a change: which sources list the ISIN, and what they say."""
    return sorted((item["source"], item["content_hash"]) for item in record["listings"])


def _raw_batches(conf: dict[str, Any], topic: str, ends: dict[int, int]) -> Iterator[tuple[int, list[RecordView]]]:
    """The raw topic from the beginning to ``ends``, as (partition, records in offset order)."""
    start = {p: OFFSET_BEGINNING for p in ends}
    for batch in read_ranges(conf, topic, start, ends, group="isin-pipeline-rebuild", idle_timeout=60):
        by_partition: dict[int, list[RecordView]] = {}
        for msg in batch:
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            view = RecordView(offset, msg.key(), msg.value(), header_pairs(msg.headers()))
            by_partition.setdefault(partition, []).append(view)
        yield from by_partition.items()


def _write(settings: StreamSettings, changes: list[tuple[int, bytes, bytes | None]]) -> None:
    if not changes:
        return
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err.str())

    producer = Producer({**settings.output_producer_config(), "client.id": f"{settings.app_id}-rebuild"})
    for partition, key, value in changes:
        produce(producer, settings.topic_current, value, key, partition=partition, on_delivery=on_delivery)
    remaining = producer.flush(settings.output_flush_timeout_s)
    if remaining or failures:
        raise PublishError(f"rebuild: {remaining} records unacknowledged, {len(failures)} failed: {failures[:1]}")
