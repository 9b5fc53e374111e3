"""``isin-pipeline tail`` and ``isin-pipeline snapshot``: the pipeline's topics as JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from core.console import table_console
from core.errors import ConfigError
from core.kafka import KafkaSettings
from ops.client import Item, TopicReader, current_set
from ops.timestamps import parse_timestamp
from schemas import CURRENT_RECORD, jsonable
from stream_app.records import record_json

TOPICS = ("current", "raw", "dlq", "runs")


def topic_name(settings: KafkaSettings, alias: str) -> str:
    """``current|raw|dlq|runs`` to the configured topic name; anything else is taken as a name."""
    return {
        "current": settings.topic_current,
        "raw": settings.topic_raw,
        "dlq": settings.topic_dlq,
        "runs": settings.topic_runs,
    }.get(alias, alias)


def parse_offsets(text: str) -> dict[int, int]:
    """``P:O[,P:O...]`` to {partition: offset}."""
    out: dict[int, int] = {}
    for part in text.split(","):
        try:
            p, o = part.strip().split(":")
            out[int(p)] = int(o)
        except ValueError:
            raise ConfigError(f"bad offset {part!r}: expected PARTITION:OFFSET, e.g. 0:1200,1:1180") from None
        if out[int(p)] < 0:
            raise ConfigError(f"bad offset {part!r}: offsets are not negative")
    return out


def item_json(item: Item) -> dict[str, Any]:
    """A record of any topic as JSON; a current record in its one JSON form (``record_json``)."""
    value = record_json(item.record) if item.record is not None and item.schema == CURRENT_RECORD.name else None
    return {
        "topic": item.topic,
        "partition": item.partition,
        "offset": item.offset,
        "timestamp": datetime.fromtimestamp(item.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "key": item.key,
        "schema": item.schema,
        "value": value if value is not None else jsonable(item.record),
        "headers": item.headers,
        **({"error": item.error} if item.error else {}),
    }


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tail",
        help="print a topic's records as JSON lines (or a table)",
        description="Decode a pipeline topic (either Avro wire format) to JSON lines on stdout. Without a "
        "start position it reads from the beginning, or from the end with --follow.",
    )
    p.add_argument("--topic", default="current", help=f"one of {', '.join(TOPICS)} or a topic name (default current)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offsets")
    start.add_argument(
        "--from-offset", metavar="P:O[,P:O...]", help="start at these offsets; the partitions not named are not read"
    )
    start.add_argument("--from-timestamp", metavar="ISO8601", help="start at the first record at or after this time")
    p.add_argument("--follow", action="store_true", help="keep reading new records until Ctrl-C")
    p.add_argument(
        "--format", choices=["json", "table"], default="json", help="JSON lines, or a table for people (default json)"
    )
    p.add_argument("--max-messages", type=int, metavar="N", help="stop after N records")
    p.set_defaults(func=cmd_tail)

    s = sub.add_parser(
        "snapshot",
        help="write the current record of every ISIN to a JSON-lines file",
        description="Read the compacted current-records topic to its end, apply tombstones, and write one JSON "
        "line per current ISIN, sorted by ISIN. This is how a downstream service bootstraps its copy.",
    )
    s.add_argument("--out", type=Path, required=True, help="output file (written atomically); - for stdout")
    s.add_argument(
        "--as-of",
        metavar="ISO8601",
        help="the table as it stood at this valid time, rebuilt from the change topic (same line shape)",
    )
    s.add_argument("--source", help="with --as-of: only this source's listings")
    s.add_argument(
        "--sources",
        type=Path,
        metavar="FILE",
        default=os.environ.get("SOURCES_FILE") or None,
        help="with --as-of: the sources file whose fields and [precedence] the golden view follows, as the "
        "workers' (default: $SOURCES_FILE)",
    )
    s.set_defaults(func=cmd_snapshot)


def cmd_tail(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    topic = topic_name(settings, args.topic)
    reader = TopicReader(settings, topic)
    if args.from_offset:
        start = reader.start_offsets(from_offsets=parse_offsets(args.from_offset))
    elif args.from_timestamp:
        start = reader.start_offsets(from_timestamp=parse_timestamp(args.from_timestamp))
    elif args.follow and not args.from_beginning:
        start = reader.end_offsets()
    else:
        start = reader.start_offsets()
    items = reader.read(start=start, follow=args.follow)
    if args.max_messages is not None:
        items = _take(items, args.max_messages)
    try:
        if args.format == "table":
            _print_table(items)
        else:
            out = sys.stdout
            for item in items:
                out.write(json.dumps(item_json(item), ensure_ascii=False) + "\n")
                if args.follow:
                    out.flush()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def _take(items: Iterable[Item], n: int) -> Iterator[Item]:
    if n <= 0:
        return
    for count, item in enumerate(items, start=1):
        yield item
        if count >= n:
            return


def _print_table(items: Iterable[Item], every: int = 50) -> None:
    console = table_console()
    rows: list[Item] = []

    def flush() -> None:
        table = Table(show_header=True, header_style="bold")
        for column in ("partition", "offset", "timestamp", "key", "schema", "summary"):
            table.add_column(column)
        for item in rows:
            table.add_row(
                str(item.partition),
                str(item.offset),
                datetime.fromtimestamp(item.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                item.key or "",
                (item.schema or "tombstone").rsplit(".", 1)[-1],
                _summary(item),
            )
        console.print(table)
        rows.clear()

    for item in items:
        rows.append(item)
        if len(rows) >= every:
            flush()
    if rows:
        flush()


def _summary(item: Item) -> str:
    record = item.record
    if item.error:
        return f"[red]{item.error}[/]"
    if record is None:
        return "removed"
    if "listings" in record:
        return f"{record['change']}: " + ", ".join(
            f"{listing['source']} ({len(listing['attributes'])} attrs)" for listing in record["listings"]
        )
    if "reason" in record:
        return f"line {record['line']}: {record['reason']}"
    if "events" in record:
        return f"end of run {record['run_id']}: {record['events']} events"
    if "status" in record:
        return f"{record['status']} {record.get('slot', '')} valid={record.get('valid')}"
    return f"{record.get('source', '')} line {record.get('line', '')}"


def cmd_snapshot(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    if args.as_of:
        return _snapshot_as_of(settings, args)
    if args.source:
        raise ConfigError("--source needs --as-of (the current topic holds every source's listing together)")
    records = current_set(settings)
    lines = (json.dumps(record_json(records[isin]), ensure_ascii=False) + "\n" for isin in sorted(records))
    if str(args.out) == "-":
        sys.stdout.writelines(lines)
        return 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(lines)
    tmp.replace(args.out)
    print(json.dumps({"out": str(args.out), "isins": len(records), "topic": settings.topic_current}))
    return 0


def _snapshot_as_of(settings: KafkaSettings, args: argparse.Namespace) -> int:
    from ops.history import snapshot_as_of
    from stream_app.golden import Golden

    when = parse_timestamp(args.as_of)
    golden = Golden.load(Path(args.sources) if args.sources else None, settings.topic_partitions)
    if str(args.out) == "-":
        snapshot_as_of(settings, when, sys.stdout, args.source, golden=golden)
        return 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        count = snapshot_as_of(settings, when, f, args.source, golden=golden)
    tmp.replace(args.out)
    print(
        json.dumps({"out": str(args.out), "isins": count, "as_of": when.isoformat(), "topic": settings.topic_changes})
    )
    return 0
