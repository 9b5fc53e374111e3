"""``isin-pipeline runs`` and ``isin-pipeline sources check``: what the runs topic and a sources file say."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from core.console import table_console
from producer.runs import RunLog
from producer.urls import redact_url
from scheduler.membership import source_partition
from scheduler.settings import SchedulerSettings
from scheduler.sources_file import SourcesError, load_sources
from schemas import make_serde


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser(
        "runs",
        help="show the state of every source, or one source's run history, from the runs topic",
        description="The runs topic read to its end: one line per source (its last slot, status, counts, the age "
        "of its last success, its next slot with --sources), or with --source NAME one line per run of it.",
    )
    r.add_argument("--source", metavar="NAME", help="one source's history (its name, or the URL it was named after)")
    r.add_argument("--sources", metavar="FILE", help="a sources file: list its sources too, with their next slots")
    r.add_argument(
        "--format", choices=["table", "json"], default="table", help="a table for people, or JSON lines (default table)"
    )
    r.set_defaults(func=cmd_runs)

    c = sub.add_parser(
        "sources",
        help="check a sources file",
        description="Validate a sources file and print each source with its next three slots in its own time "
        "zone; exit 2 with every error found, each naming its source and key.",
    )
    c.add_argument("action", choices=["check"], help="check: validate the file, show the next slots")
    c.add_argument("file", metavar="FILE", help="the sources file (TOML)")
    c.set_defaults(func=cmd_sources)


def cmd_sources(args: argparse.Namespace) -> int:
    settings = SchedulerSettings()
    try:
        sources = load_sources(args.file, safety=settings.safety())
    except SourcesError as exc:
        for error in exc.errors:
            print(f"{exc.where}: {error}", file=sys.stderr)
        print(f"isin-pipeline sources check: {len(exc.errors)} errors in {exc.where}", file=sys.stderr)
        return 2
    partitions = settings.scheduler_partitions
    count = f"{len(sources.sources)} source{'s' if len(sources.sources) != 1 else ''}"
    print(f"{args.file}: {count} ({len(sources.enabled())} enabled), {partitions} partitions")
    now = datetime.now(UTC)
    for spec in sources.sources:
        print(spec.describe(now, source_partition(spec.name, partitions)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    settings = SchedulerSettings()
    configured = load_sources(args.sources, safety=settings.safety()) if args.sources else None
    log = RunLog(settings, make_serde(settings.schema_registry_config()))
    try:
        log.refresh()
    finally:
        log.close()
    if args.source:
        source = args.source if any(r.source == args.source for r in log.records) else redact_url(args.source)
        runs = [
            {**r.to_json(), "took_s": None if r.finished_at is None else (r.finished_at - r.started_at) / 1000}
            for r in log.history(source)
        ]
        columns = (
            "slot",
            "status",
            "run_id",
            "owner",
            "started_at",
            "took_s",
            "valid",
            "invalid",
            "published",
            "reason",
        )
        return _show(runs, columns, args.format, f"runs of {source}")
    from scheduler.fleet import source_states

    states = source_states(log, configured, datetime.now(UTC))
    for state in states if args.format == "table" else []:
        age = state["last_success_age_s"]
        state["last_success"] = "never" if age is None else f"{_age(age)} ago"
        state["status"] = state["status"] or "never run"
    by_source = ("source", "slot", "status", "rows", "valid", "published", "last_success", "next_slot")
    return _show(states, by_source, args.format, "sources: the last run of each, and its next slot")


def _show(rows: list[dict[str, Any]], columns: tuple[str, ...], fmt: str, title: str) -> int:
    """JSON lines, or a table of ``columns`` for people."""
    if fmt == "json":
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return 0
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(k) is None else str(row[k]) for k in columns))
    table_console().print(table)
    return 0


def _age(seconds: float) -> str:
    s = int(seconds)
    for unit, size, small, rest in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit} {s % size // rest:02d}{small}"
    return f"{s}s"
