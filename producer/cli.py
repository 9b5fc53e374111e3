"""``isin-pipeline produce``, ``schedule`` and ``runs``."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from core.console import table_console
from core.errors import ConfigError, PipelineError
from core.kafka.topics import ensure_topics
from producer.download import Downloader, RetryPolicy, redact_url
from producer.progress import RunProgress
from producer.reading import FORMATS, ReadHints
from producer.run import RunContext, RunPlan, RunSummary, execute
from producer.runs import RunLog, RunWriter
from producer.schedule import Schedule, parse_duration, parse_slot
from producer.settings import ProducerSettings
from schemas import make_serde

logger = logging.getLogger(__name__)

EXIT_SUSPICIOUS = 3


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "produce",
        help="download a list once and publish it (for cron systems and humans)",
        description="One run: download an ISIN list, validate every row, publish valid ISINs as Avro events "
        "keyed by ISIN and bad rows to the dead-letter topic, as one transaction. Prints one JSON summary line. "
        "With --cron/--every/--slot the run belongs to a scheduled slot and is skipped if that slot is done or "
        "running elsewhere (safe when a cron system starts it twice).",
    )
    _source_arguments(p)
    slot = p.add_mutually_exclusive_group()
    slot.add_argument("--slot", metavar="ISO8601", help="the slot this run is for (default: now, a one-off run)")
    slot.add_argument("--every", metavar="DURATION", help="the slot is the latest multiple of DURATION (24h, 15m)")
    slot.add_argument("--cron", metavar="EXPR", help='the slot is the latest time of a cron expression ("15 7 * * *")')
    p.add_argument("--tz", default="UTC", help="time zone of --cron (IANA name, default UTC)")
    p.set_defaults(func=cmd_produce)

    s = sub.add_parser(
        "schedule",
        help="run a list on a schedule, once per slot, with leader election among replicas",
        description="A long-running scheduler. Replicas elect a leader through a Kafka consumer group; the "
        "leader runs each slot once, remembering every run in the runs topic.",
    )
    _source_arguments(s)
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", metavar="DURATION", help="run every DURATION (24h, 15m, 30s), from 00:00 UTC")
    when.add_argument("--cron", metavar="EXPR", help='run at the times of a cron expression, e.g. "15 7 * * *"')
    s.add_argument("--tz", default="UTC", help="time zone of --cron (IANA name, default UTC)")
    s.add_argument(
        "--catch-up",
        choices=["latest", "none"],
        default="latest",
        help="after downtime: run the latest missed slot once (default), or wait for the next",
    )
    s.add_argument(
        "--retry-failed-after",
        default="10m",
        metavar="DURATION",
        help="retry a failed run of the latest slot after this long; 0 never (default 10m)",
    )
    s.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    s.add_argument("--metrics-host", default="127.0.0.1", help="interface of the metrics server (default 127.0.0.1)")
    s.set_defaults(func=cmd_schedule)

    r = sub.add_parser(
        "runs",
        help="show the run history from the runs topic",
        description="The runs topic read to its end: one line per run, its slot, status, counts and reason.",
    )
    r.add_argument("--source", metavar="NAME", help="only this source (its name, or the URL it was named after)")
    r.add_argument(
        "--format", choices=["table", "json"], default="table", help="a table for people, or JSON lines (default table)"
    )
    r.set_defaults(func=cmd_runs)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, metavar="URL", help="http(s):// or file:// URL of the ISIN list")
    _reader_arguments(parser)
    parser.add_argument(
        "--source-name",
        metavar="NAME",
        help="stable name of the source (default: the URL without credentials and query); "
        "set it when the URL changes every day, e.g. has a date in it",
    )
    parser.add_argument("--max-bytes", type=int, metavar="N", help="refuse bodies larger than N bytes (HTTP_MAX_BYTES)")
    parser.add_argument(
        "--allow-shrink",
        action="store_true",
        help="accept a real shrink: publish deletions although the list has more than --max-delete-fraction "
        "fewer distinct ISINs than the last successful run (the other doubts still hold deletions back)",
    )
    parser.add_argument(
        "--max-delete-fraction",
        type=float,
        metavar="F",
        help="a run with this share fewer distinct ISINs than the last successful one publishes no deletions "
        "(MAX_DELETE_FRACTION, default 0.05)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="the whole download, retries included, must finish within this (HTTP_DEADLINE_S, default 3600)",
    )
    parser.add_argument(
        "--force-publish",
        action="store_true",
        help="publish even if the list is unchanged since the last run (no conditional GET, no content-hash check)",
    )


def _reader_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "reading the list", "Detected from the file when not given; the summary says what was detected."
    )
    group.add_argument("--format", dest="list_format", choices=FORMATS, help="the list's format")
    group.add_argument(
        "--column",
        metavar="NAME|INDEX",
        help="the ISIN column: a header or a 1-based index; XML: an element or attribute name; JSON: a key path",
    )
    group.add_argument(
        "--isin-at", metavar="START:END", help="fixed width: 1-based, inclusive byte positions of the ISIN"
    )
    group.add_argument("--encoding", help="the text's encoding (e.g. cp1251); default: detected over the whole file")
    group.add_argument("--delimiter", help="the field delimiter of delimited text (\\t for a tab)")
    group.add_argument("--sheet", help="a workbook's sheet to read (name or 1-based index); default: every sheet")
    group.add_argument("--header-row", type=int, metavar="N", help="1-based row of the header; 0: no header")


def hints_from_args(args: argparse.Namespace) -> ReadHints:
    isin_at = None
    if args.isin_at:
        try:
            first, last = (int(x) for x in args.isin_at.split(":"))
        except ValueError:
            raise ConfigError(f"--isin-at {args.isin_at!r}: expected START:END, e.g. 10:21") from None
        isin_at = (first, last)
    delimiter = args.delimiter.replace("\\t", "\t") if args.delimiter else None
    if delimiter is not None and len(delimiter) != 1:
        raise ConfigError(f"--delimiter {args.delimiter!r}: one character")
    return ReadHints(
        format=args.list_format,
        column=args.column,
        isin_at=isin_at,
        encoding=args.encoding,
        delimiter=delimiter,
        sheet=args.sheet,
        header_row=args.header_row,
    )


def settings_from_args(args: argparse.Namespace) -> ProducerSettings:
    settings = ProducerSettings()
    update: dict[str, Any] = {}
    if getattr(args, "max_bytes", None):
        update["http_max_bytes"] = args.max_bytes
    if getattr(args, "deadline", None):
        update["http_deadline_s"] = args.deadline
    if getattr(args, "max_delete_fraction", None) is not None:
        update["max_delete_fraction"] = args.max_delete_fraction
    return ProducerSettings.model_validate({**settings.model_dump(), **update}) if update else settings


@contextmanager
def run_context(settings: ProducerSettings, source: str, stop: Callable[[], str | None]) -> Iterator[RunContext]:
    """Topics checked, clients built: everything a run needs, for the duration of a command."""
    ensure_topics(settings, settings.topics())
    serde = make_serde(settings.schema_registry_config())
    # No credentials on the client and no redirects by httpx: the downloader adds the source's
    # credentials only to requests for the source's own origin, and follows redirects itself.
    client = httpx.Client(timeout=settings.http_timeout(), follow_redirects=False)
    downloader = Downloader(
        client,
        policy=RetryPolicy(settings.http_retries, settings.http_backoff_s, settings.http_backoff_max_s),
        max_bytes=settings.http_max_bytes,
        spool_dir=settings.spool_dir,
        credentials=settings.credentials(),
        deadline_s=settings.http_deadline_s,
    )
    runs = RunLog(settings, serde)
    try:
        with client, RunProgress(source) as progress:
            yield RunContext(
                settings=settings,
                downloader=downloader,
                serde=serde,
                runs=runs,
                writer=RunWriter(settings, serde),
                progress=progress,
                should_stop=stop,
            )
    finally:
        runs.close()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event (with the signal's name as the reason) instead of killing."""
    stop = threading.Event()
    reason: dict[str, str] = {}

    def handler(signum: int, _frame: Any) -> None:
        reason["signal"] = signal.Signals(signum).name
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    stop.reason = reason  # type: ignore[attr-defined]
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop_reason(stop: threading.Event) -> Callable[[], str | None]:
    def reason() -> str | None:
        return f"interrupted by {stop.reason.get('signal', 'a stop request')}" if stop.is_set() else None  # type: ignore[attr-defined]

    return reason


def plan_slot(args: argparse.Namespace, now: datetime) -> datetime:
    if args.slot:
        return parse_slot(args.slot)
    if args.every or args.cron:
        return Schedule.parse(args.every, args.cron, args.tz).latest(now)
    return now.replace(microsecond=0)


def cmd_produce(args: argparse.Namespace) -> int:
    """One run; exactly one JSON summary on stdout, whatever happens."""
    source = args.source_name or redact_url(args.source)
    try:
        settings = settings_from_args(args)
        plan = RunPlan(
            args.source,
            source,
            plan_slot(args, datetime.now(UTC)),
            force_publish=args.force_publish,
            hints=hints_from_args(args),
            policy=settings.safety(allow_shrink=args.allow_shrink),
        )
        with stop_on_signals() as stop, run_context(settings, source, _stop_reason(stop)) as ctx:
            summary = execute(ctx, plan)
    except PipelineError as exc:
        # The run's own summary says how far it got; before a run started, one that says why not.
        _print_summary(exc.summary or _not_started(source, str(exc)))
        raise
    except ValidationError as exc:
        _print_summary(_not_started(source, f"configuration error: {exc.errors()[0].get('msg')}"))
        raise
    except Exception as exc:  # a bug: still one summary, and a reason instead of a bare traceback
        logger.exception("produce failed on an internal error")
        _print_summary(_not_started(source, f"internal error: {type(exc).__name__}: {exc}"))
        raise PipelineError(f"internal error: {type(exc).__name__}: {exc}") from exc
    _print_summary(summary)
    if summary.status == "suspicious":
        print(f"isin-pipeline produce: suspicious run: {summary.reason}", file=sys.stderr)
        return EXIT_SUSPICIOUS
    return 0


def _not_started(source: str, reason: str) -> RunSummary:
    return RunSummary(run_id="", source=source, status="failed", reason=reason)


def _print_summary(summary: Any) -> None:
    sys.stdout.write(summary.to_json() + "\n")
    sys.stdout.flush()


def cmd_schedule(args: argparse.Namespace) -> int:
    from producer.leader import LeaderElection
    from producer.metrics import RunMetrics
    from producer.scheduler import SchedulePolicy, Scheduler

    settings = settings_from_args(args)
    source = args.source_name or redact_url(args.source)
    retry = 0.0 if args.retry_failed_after.strip() in ("0", "0s") else parse_duration(args.retry_failed_after)
    policy = SchedulePolicy(Schedule.parse(args.every, args.cron, args.tz), args.catch_up, retry_failed_after_s=retry)
    metrics = RunMetrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_host)
    with stop_on_signals() as stop, run_context(settings, source, _stop_reason(stop)) as ctx:
        group = f"{settings.kafka_client_id}-scheduler.{_slug(source)}"
        election = LeaderElection(
            settings.confluent_config(),
            group,
            settings.scheduler_topic().name,
            settings.scheduler_session_timeout_s,
            on_change=lambda leader: metrics.leader.labels(source).set(1 if leader else 0),
        ).start()
        try:
            scheduler = Scheduler(
                ctx,
                args.source,
                source,
                policy,
                election,
                metrics,
                stop,
                args.allow_shrink,
                args.force_publish,
                hints=hints_from_args(args),
                safety=settings.safety(),
            )
            code = scheduler.run()
        finally:
            election.stop()
    logger.info("scheduler stopped")
    return code


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100]


def cmd_runs(args: argparse.Namespace) -> int:
    settings = ProducerSettings()
    log = RunLog(settings, make_serde(settings.schema_registry_config()))
    try:
        log.refresh()
    finally:
        log.close()
    source = None
    if args.source:
        source = args.source if any(r.source == args.source for r in log.records) else redact_url(args.source)
    history = log.history(source)
    if args.format == "json":
        for run in history:
            sys.stdout.write(json.dumps(run.to_json()) + "\n")
        return 0
    from rich.table import Table

    table = Table(title=f"runs of {source}" if source else "runs")
    for column in ("slot", "source", "status", "run", "started", "took", "valid", "invalid", "published", "reason"):
        table.add_column(column)
    for run in history:
        took = "" if run.finished_at is None else f"{(run.finished_at - run.started_at) / 1000:.1f}s"
        started = datetime.fromtimestamp(run.started_at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            run.slot,
            run.source,
            run.status,
            run.run_id,
            started,
            took,
            str(run.valid),
            str(run.invalid),
            str(run.published),
            run.reason or "",
        )
    table_console().print(table)
    return 0
