"""``isin-pipeline lookup`` and ``isin-pipeline conflicts``: the golden record from the topics.

Like ``history``, they need no worker:

- ``lookup --lei X`` reads the identifier's partition of the identifier topic
  (``isin.identifiers``: the ISINs that carry it, tombstones applied), then those ISINs'
  partitions of the compacted topic, and prints their records;
- ``conflicts`` reads the compacted topic and prints every record whose sources disagree, with
  its conflicts (``--field``, ``--source`` to narrow), and the counts by field and source pair.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING
from rich.table import Table

from core.console import table_console
from core.golden import FIELDS, LOOKUP_FIELDS, clean
from core.kafka import KafkaSettings, partition_for
from core.kafka.ranges import read_ranges
from ops.client import TopicReader, current_set
from stream_app.conflicts import pairs
from stream_app.identifier_index import identifier, index_partition
from stream_app.records import record_json


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "lookup",
        help="the ISINs that carry an identifier (LEI, CUSIP, SEDOL, FIGI, ticker), with their records",
        description="Read the identifier's partition of the identifier topic, then the records of the ISINs "
        "that carry it from the compacted topic. Give exactly one identifier.",
    )
    group = p.add_mutually_exclusive_group(required=True)
    for name in LOOKUP_FIELDS:
        group.add_argument(f"--{name}", metavar=name.upper(), help=f"the ISINs whose sources give this {name}")
    p.add_argument("--format", choices=["table", "json"], default="table", help="a table (default) or JSON lines")
    p.set_defaults(func=cmd_lookup)

    c = sub.add_parser(
        "conflicts",
        help="the records whose sources disagree on a field, and the counts by field and source pair",
        description="Read the compacted topic and print every record with a conflict between its sources.",
    )
    c.add_argument("--field", choices=FIELDS, help="only conflicts on this field")
    c.add_argument("--source", help="only conflicts this source takes part in")
    c.add_argument("--format", choices=["table", "json"], default="table", help="a table (default) or JSON lines")
    c.set_defaults(func=cmd_conflicts)


def lookup(settings: KafkaSettings, field_name: str, value: str) -> list[dict[str, Any]]:
    """The current records of the ISINs that carry ``field_name=value``, by ISIN."""
    index = TopicReader(settings, settings.topic_identifiers)
    partitions = len(index.partitions())
    partition = index_partition(field_name, value, partitions)
    prefix = identifier(field_name, value) + b"|"
    present: dict[str, bool] = {}
    ends = index.end_offsets([partition])
    conf = settings.confluent_config()
    group = f"{settings.kafka_client_id}-lookup"
    for batch in read_ranges(conf, settings.topic_identifiers, {partition: OFFSET_BEGINNING}, ends, group=group):
        for msg in batch:
            key = msg.key() or b""
            rest = key[len(prefix) :]
            if key.startswith(prefix) and b"|" not in rest:
                present[rest.decode()] = msg.value() is not None
    isins = sorted(isin for isin, there in present.items() if there)
    if not isins:
        return []
    wanted = set(isins)
    records: dict[str, dict[str, Any]] = {}
    current = TopicReader(settings, settings.topic_current)
    start = {partition_for(isin.encode(), partitions): OFFSET_BEGINNING for isin in isins}
    for item in current.read(start=start):
        if item.key in wanted:
            if item.record is None:
                records.pop(item.key, None)
            else:
                records[item.key] = item.record
    return [record_json(records[isin]) for isin in isins if isin in records]


def conflicts(
    records: Iterable[dict[str, Any]], field_name: str | None = None, source: str | None = None
) -> list[dict[str, Any]]:
    """``{"isin", "conflicts"}`` of every record with a matching conflict, by ISIN."""
    out = []
    for record in sorted(records, key=lambda r: r["isin"]):
        matching = [
            c
            for c in record.get("conflicts") or []
            if (field_name is None or c["field"] == field_name) and (source is None or source in c["values"])
        ]
        if matching:
            out.append({"isin": record["isin"], "conflicts": matching})
    return out


def cmd_lookup(args: argparse.Namespace) -> int:
    field_name = next(name for name in LOOKUP_FIELDS if getattr(args, name) is not None)
    value = clean(field_name, getattr(args, field_name))
    if value is None:
        print(f"isin-pipeline lookup: {getattr(args, field_name)!r} is not a valid {field_name}", file=sys.stderr)
        return 2
    found = lookup(KafkaSettings(), field_name, value)
    if args.format == "json":
        sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in found)
        return 0
    table = Table(title=f"{field_name}={value}: {len(found)} ISIN(s)")
    for column in ("isin", "name", "issuer_name", "lei", "sources"):
        table.add_column(column)
    for record in found:
        golden = record.get("golden") or {}
        row = [golden.get(f, {}).get("value", "") for f in ("name", "issuer_name", "lei")]
        table.add_row(record["isin"], *row, ", ".join(item["source"] for item in record["listings"]))
    table_console().print(table)
    return 0


def cmd_conflicts(args: argparse.Namespace) -> int:
    found = conflicts(current_set(KafkaSettings()).values(), args.field, args.source)
    counts = Counter(pair for item in found for pair in pairs(item["conflicts"]))
    if args.format == "json":
        sys.stdout.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in found)
        return 0
    table = Table(title=f"{len(found)} record(s) with conflicts")
    for column in ("isin", "field", "values"):
        table.add_column(column)
    for item in found:
        for conflict in item["conflicts"]:
            values = "; ".join(f"{s}: {v}" for s, v in sorted(conflict["values"].items()))
            table.add_row(item["isin"], conflict["field"], values)
    summary = Table(title="conflicts by field and source pair")
    for column in ("field", "source", "other source", "records"):
        summary.add_column(column)
    for (field_name, a, b), n in sorted(counts.items()):
        summary.add_row(field_name, a, b, str(n))
    console = table_console()
    console.print(table)
    console.print(summary)
    return 0
