"""``isin-pipeline produce --source URL``: one run of one list, and what the other commands share."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError
from pydantic_settings import SettingsError

from core.errors import ConfigError, PipelineError
from core.kafka.topics import ensure_topics
from producer.download import Credentials, Downloader, RetryPolicy
from producer.hints import read_hints
from producer.progress import RunProgress
from producer.reading import FORMATS, ReadHints
from producer.run import RunContext, RunPlan, RunSummary, execute
from producer.runs import RunLog, RunWriter
from producer.settings import ProducerSettings
from producer.slots import Schedule, parse_slot
from producer.urls import redact_url
from schemas import make_serde

logger = logging.getLogger(__name__)

EXIT_SUSPICIOUS = 3


def add_parsers(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """The ``produce`` command; returns its parser (the scheduler adds its sources-file form)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "produce",
        help="download a list once and publish it (for cron systems and humans)",
        description="One run: download an ISIN list, validate every row, publish valid ISINs as Avro events "
        "keyed by ISIN and bad rows to the dead-letter topic, as one transaction. Prints one JSON summary line. "
        "With --cron/--every/--slot the run belongs to a scheduled slot and is skipped if that slot is done or "
        "running elsewhere (safe when a cron system starts it twice). With --sources FILE --only NAME, one run of "
        "a configured source, for its latest slot (a Kubernetes CronJob per source, or by hand).",
    )
    source_arguments(p)
    slot = p.add_mutually_exclusive_group()
    slot.add_argument("--slot", metavar="ISO8601", help="the slot this run is for (default: now, a one-off run)")
    slot.add_argument("--every", metavar="DURATION", help="the slot is the latest multiple of DURATION (24h, 15m)")
    slot.add_argument("--cron", metavar="EXPR", help='the slot is the latest time of a cron expression ("15 7 * * *")')
    p.add_argument("--tz", help="time zone of --cron (IANA name, default UTC)")
    p.set_defaults(func=cmd_produce)
    return p


def source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="URL", help="http(s):// or file:// URL of the ISIN list")
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
    return read_hints(
        format=args.list_format,
        column=args.column,
        isin_at=args.isin_at,
        encoding=args.encoding,
        delimiter=args.delimiter,
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
def clients(
    settings: ProducerSettings, label: str, stop: Callable[[], str | None]
) -> Iterator[tuple[RunContext, Callable[[Credentials | None, int | None], Downloader]]]:
    """Topics checked, clients built: everything runs need, for the duration of a command; and a
    maker of downloaders with a source's own credentials and size limit (one HTTP client)."""
    ensure_topics(settings, settings.topics())
    serde = make_serde(settings.schema_registry_config())
    # No credentials on the client and no redirects by httpx: the downloader adds the source's
    # credentials only to requests for the source's own origin, and follows redirects itself.
    client = httpx.Client(timeout=settings.http_timeout(), follow_redirects=False)

    def downloader(credentials: Credentials | None = None, max_bytes: int | None = None) -> Downloader:
        return Downloader(
            client,
            policy=RetryPolicy(settings.http_retries, settings.http_backoff_s, settings.http_backoff_max_s),
            max_bytes=max_bytes or settings.http_max_bytes,
            spool_dir=settings.spool_dir,
            credentials=settings.credentials() if credentials is None else credentials,
            deadline_s=settings.http_deadline_s,
        )

    runs = RunLog(settings, serde)
    try:
        with client, RunProgress(label) as progress:
            ctx = RunContext(
                settings=settings,
                downloader=downloader(),
                serde=serde,
                runs=runs,
                writer=RunWriter(settings, serde),
                progress=progress,
                should_stop=stop,
            )
            yield ctx, downloader
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


def stop_reason(stop: threading.Event) -> Callable[[], str | None]:
    def reason() -> str | None:
        return f"interrupted by {stop.reason.get('signal', 'a stop request')}" if stop.is_set() else None  # type: ignore[attr-defined]

    return reason


def plan_slot(args: argparse.Namespace, now: datetime) -> datetime:
    if args.slot:
        return parse_slot(args.slot)
    if args.every or args.cron:
        return Schedule.parse(args.every, args.cron, args.tz or "UTC").latest(now)
    return now.replace(microsecond=0)


Planner = Callable[[argparse.Namespace, ProducerSettings, str], tuple[RunPlan, Credentials | None, int | None]]


def flags_plan(
    args: argparse.Namespace, settings: ProducerSettings, source: str
) -> tuple[RunPlan, Credentials | None, int | None]:
    """``produce --source URL``: the run the flags describe."""
    if not args.source:
        raise ConfigError("give --source URL, or --sources FILE --only NAME")
    plan = RunPlan(
        args.source,
        source,
        plan_slot(args, datetime.now(UTC)),
        force_publish=args.force_publish,
        hints=hints_from_args(args),
        policy=settings.safety(allow_shrink=args.allow_shrink),
    )
    return plan, None, None


def cmd_produce(args: argparse.Namespace, planner: Planner = flags_plan, source: str | None = None) -> int:
    """One run; exactly one JSON summary on stdout, whatever happens."""
    source = source or args.source_name or redact_url(args.source or "")
    try:
        settings = settings_from_args(args)
        plan, credentials, max_bytes = planner(args, settings, source)
        with stop_on_signals() as stop, clients(settings, source, stop_reason(stop)) as (ctx, downloader):
            if credentials is not None or max_bytes is not None:
                ctx = replace(ctx, downloader=downloader(credentials, max_bytes))
            summary = execute(ctx, plan)
    except PipelineError as exc:
        # The run's own summary says how far it got; before a run started, one that says why not.
        print_summary(exc.summary or not_started(source, str(exc)))
        raise
    except ValidationError as exc:
        print_summary(not_started(source, f"configuration error: {exc.errors()[0].get('msg')}"))
        raise
    except SettingsError as exc:
        print_summary(not_started(source, f"configuration error: {exc}"))
        raise
    except Exception as exc:  # a bug: still one summary, and a reason instead of a bare traceback
        logger.exception("produce failed on an internal error")
        print_summary(not_started(source, f"internal error: {type(exc).__name__}: {exc}"))
        raise PipelineError(f"internal error: {type(exc).__name__}: {exc}") from exc
    print_summary(summary)
    if summary.status == "suspicious":
        print(f"isin-pipeline produce: suspicious run: {summary.reason}", file=sys.stderr)
        return EXIT_SUSPICIOUS
    return 0


def not_started(source: str, reason: str) -> RunSummary:
    return RunSummary(run_id="", source=source, status="failed", reason=reason)


def print_summary(summary: Any) -> None:
    sys.stdout.write(summary.to_json() + "\n")
    sys.stdout.flush()
