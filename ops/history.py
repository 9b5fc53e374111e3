"""``isin-pipeline history`` and ``changes``, and ``snapshot --as-of``: the past, from the change topic.

They read the change topic (``isin.changes``) directly, so they need no worker:

- ``history ISIN``: the ISIN's partition, its changes ordered by slot, then by ``recorded_at``;
- ``changes --source NAME --since T [--until T]``: what a source listed, amended and dropped
  between two valid times (the daily diff), from the first record recorded at or after ``since``
  (a change is recorded after the source said it);
- ``snapshot --as-of T``: the table as it stood at valid time ``T``, one partition at a time
  through an on-disk history (``stream_app.history.HistoryStore``), in ``snapshot``'s line shape.

A change seen twice (the same ``change_id``) counts once: the last record of an id wins.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING
from rich.table import Table

from core.console import table_console
from core.isin import InvalidIsin, validate_isin
from core.kafka import KafkaSettings, partition_for
from core.kafka.ranges import read_ranges
from ops.client import TopicReader
from ops.timestamps import parse_timestamp
from schemas import jsonable, make_serde
from stream_app.golden import Golden
from stream_app.history import HistoryStore, record_as_of
from stream_app.records import epoch_ms, record_json


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    h = sub.add_parser(
        "history",
        help="every change of one ISIN's listings, from the change topic",
        description="Read the ISIN's partition of the change topic: every LISTED, AMENDED and DELISTED of every "
        "source, ordered by slot (when the source said it), then by when the pipeline recorded it.",
    )
    h.add_argument("isin", metavar="ISIN", help="the ISIN")
    h.add_argument("--source", help="only this source's changes")
    h.add_argument("--format", choices=["table", "json"], default="table", help="a table (default) or JSON lines")
    h.set_defaults(func=cmd_history)

    c = sub.add_parser(
        "changes",
        help="what a source added, amended and dropped between two dates",
        description="The daily diff: every change of SOURCE's listings whose slot is at or after --since and "
        "before --until (default: now), from the change topic.",
    )
    c.add_argument("--source", required=True, help="the source's name")
    c.add_argument("--since", required=True, metavar="ISO8601", help="the first slot (valid time) to include")
    c.add_argument("--until", metavar="ISO8601", help="the slot to stop before (default: now)")
    c.add_argument("--format", choices=["table", "json"], default="json", help="JSON lines (default) or a table")
    c.set_defaults(func=cmd_changes)


def _changes(reader: TopicReader, start: dict[int, int]) -> Iterator[dict[str, Any]]:
    """The change topic's records from ``start``, the last record of each change id only."""
    last: dict[str, dict[str, Any]] = {}
    for item in reader.read(start=start):
        if item.record is not None and "change_id" in item.record:
            last[item.record["change_id"]] = item.record
    yield from last.values()


def history(settings: KafkaSettings, isin: str, source: str | None = None) -> list[dict[str, Any]]:
    """Every change of ``isin`` (of ``source``), ordered by slot, then by ``recorded_at``."""
    reader = TopicReader(settings, settings.topic_changes)
    partition = partition_for(isin.encode(), len(reader.partitions()))
    found = [
        c
        for c in _changes(reader, {partition: OFFSET_BEGINNING})
        if c["isin"] == isin and (source is None or c["source"] == source)
    ]
    return sorted(found, key=lambda c: (epoch_ms(c["slot"]), epoch_ms(c["recorded_at"])))


def source_changes(settings: KafkaSettings, source: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """``source``'s changes with ``since <= slot < until``, ordered by slot, then by ISIN."""
    reader = TopicReader(settings, settings.topic_changes)
    start = reader.start_offsets(from_timestamp=since)
    lo, hi = epoch_ms(since), epoch_ms(until)
    found = [c for c in _changes(reader, start) if c["source"] == source and lo <= epoch_ms(c["slot"]) < hi]
    return sorted(found, key=lambda c: (epoch_ms(c["slot"]), c["isin"], epoch_ms(c["recorded_at"])))


def snapshot_as_of(
    settings: KafkaSettings,
    as_of: datetime,
    out: TextIO,
    source: str | None = None,
    work_dir: Path | None = None,
    golden: Golden | None = None,
) -> int:
    """Write the record of every ISIN as it stood at ``as_of``, sorted by ISIN within each
    partition, with its golden view then as ``golden`` builds it; returns how many. One
    partition's history at a time, on disk."""
    serde = make_serde(settings.schema_registry_config())
    reader = TopicReader(settings, settings.topic_changes, serde)
    at = epoch_ms(as_of)
    written = 0
    records: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="isin-as-of-", dir=work_dir) as tmp:
        for partition in reader.partitions():
            store = HistoryStore(Path(tmp) / f"p{partition}.rdb", serde)
            try:
                for batch in _raw_batches(settings, reader, partition):
                    store.apply(partition, batch)
                for isin in store.isins(partition):
                    changes = store.changes(partition, isin, source)
                    record = record_as_of(isin, changes, at, golden=golden)
                    if record is not None:
                        records.append((isin, record_json(record)))
            finally:
                store.close()
    for _isin, record in sorted(records, key=lambda r: r[0]):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        written += 1
    return written


def _raw_batches(
    settings: KafkaSettings, reader: TopicReader, partition: int
) -> Iterator[list[tuple[bytes | None, bytes | None, int]]]:
    """One partition of the change topic to its end, as (key, value, offset) batches."""
    ends = reader.end_offsets([partition])
    conf = settings.confluent_config()
    for batch in read_ranges(conf, settings.topic_changes, {partition: OFFSET_BEGINNING}, ends, group="isin-as-of"):
        yield [(m.key(), m.value(), int(m.offset() or 0)) for m in batch]


def cmd_history(args: argparse.Namespace) -> int:
    try:
        isin = validate_isin(args.isin)
    except InvalidIsin as exc:
        print(f"isin-pipeline history: {args.isin!r}: {exc.reason}", file=sys.stderr)
        return 2
    _print(history(KafkaSettings(), isin, args.source), args.format)
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    until = parse_timestamp(args.until) if args.until else datetime.now(UTC)
    _print(source_changes(KafkaSettings(), args.source, parse_timestamp(args.since), until), args.format)
    return 0


def _print(changes: Iterable[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        for change in changes:
            sys.stdout.write(json.dumps(jsonable(change), ensure_ascii=False) + "\n")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("slot", "op", "isin", "source", "changed", "recorded_at", "run_id"):
        table.add_column(column)
    for c in changes:
        table.add_row(
            jsonable(c["slot"]),
            c["op"],
            c["isin"],
            c["source"],
            ", ".join(c["changed"]),
            jsonable(c["recorded_at"]),
            c["run_id"],
        )
    table_console().print(table)
