"""``isin-pipeline schedule``, ``runs``, ``sources`` and the sources-file form of ``produce``
(``--sources FILE --only NAME``, a CronJob per source). The ``--source`` form of ``produce`` is
the producer's own (``producer/cli.py``); this module adds the sources file to it."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from datetime import UTC, datetime

from core.errors import ConfigError
from producer import cli as producer_cli
from producer.download import Credentials
from producer.run import RunPlan
from producer.settings import ProducerSettings
from producer.slots import parse_slot
from scheduler import reports
from scheduler.fleet import SourcesWatcher, default_group, fleet_of_one, reload_on_sighup, serve
from scheduler.metrics import RunMetrics
from scheduler.settings import SchedulerSettings
from scheduler.sources_file import Sources, flag_source, load_sources, parse_sources
from scheduler.spec import SourceSpec

logger = logging.getLogger(__name__)


def _sources_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sources", metavar="FILE", help="a sources file (TOML): its sources' own settings instead of these flags"
    )


def add_parsers(sub: argparse._SubParsersAction, produce: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """``schedule``, ``runs`` and ``sources``; and ``--sources``/``--only`` on ``produce``."""
    _sources_argument(produce)
    produce.add_argument("--only", metavar="NAME", help="with --sources: the source to run")
    produce.set_defaults(func=cmd_produce)
    s = sub.add_parser(
        "schedule",
        help="run every source of a sources file (or one --source) on its schedule, spread over the replicas",
        description="A long-running scheduler. Replicas join one Kafka consumer group and share the sources: "
        "each source belongs to a partition of the scheduler topic, and a replica runs the sources of its "
        "partitions, each slot once, remembering every run in the runs topic. The sources file is reloaded "
        "when it changes (and on SIGHUP).",
    )
    producer_cli.source_arguments(s)
    _sources_argument(s)
    when = s.add_mutually_exclusive_group()
    when.add_argument("--every", metavar="DURATION", help="run every DURATION (24h, 15m, 30s), from 00:00 UTC")
    when.add_argument("--cron", metavar="EXPR", help='run at the times of a cron expression, e.g. "15 7 * * *"')
    s.add_argument("--tz", help="time zone of --cron (IANA name, default UTC)")
    s.add_argument(
        "--catch-up",
        choices=["latest", "none"],
        help="after downtime: run the latest missed slot once (default), or wait for the next",
    )
    s.add_argument(
        "--retry-failed-after",
        metavar="DURATION",
        help="retry a failed run of the latest slot after this long; 0 never (default 10m)",
    )
    s.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    s.add_argument("--metrics-host", default="127.0.0.1", help="interface of the metrics server (default 127.0.0.1)")
    s.set_defaults(func=cmd_schedule)
    reports.add_parsers(sub)


_RUN_FLAGS = (  # noqa: SIM905 - a list of words
    "source_name list_format column isin_at encoding delimiter sheet header_row max_bytes max_delete_fraction "
    "deadline every cron tz catch_up retry_failed_after allow_shrink force_publish"
).split()


def _from_file(args: argparse.Namespace, allowed: tuple[str, ...] = ()) -> None:
    """With --sources, a source's settings come from the file: refuse the flags that would override them."""
    if args.source:
        raise ConfigError("give --source URL or --sources FILE, not both")
    given = [dest for dest in _RUN_FLAGS if dest not in allowed and getattr(args, dest, None)]
    if given:
        flags = ", ".join("--" + d.removeprefix("list_").replace("_", "-") for d in given)
        raise ConfigError(f"{flags}: with --sources, set this in the sources file ({args.sources})")


def sources_plan(
    args: argparse.Namespace, settings: ProducerSettings, source: str
) -> tuple[RunPlan, Credentials | None, int | None]:
    """``produce --sources FILE --only NAME``: the run of a configured source, for its latest slot."""
    _from_file(args, allowed=("allow_shrink", "force_publish"))
    if not args.only:
        raise ConfigError("--sources needs --only NAME: the source to run")
    spec = load_sources(args.sources, safety=settings.safety()).runnable(args.only)
    slot = parse_slot(args.slot) if args.slot else spec.schedule.latest(datetime.now(UTC))
    policy = replace(spec.safety, allow_shrink=spec.safety.allow_shrink or args.allow_shrink)
    plan = replace(spec.plan(slot, take_over=False), force_publish=spec.force_publish or args.force_publish)
    return replace(plan, policy=policy), spec.credentials, spec.max_bytes


def cmd_produce(args: argparse.Namespace) -> int:
    """``produce``: the sources-file form here, the ``--source`` form in the producer."""
    if args.sources:
        return producer_cli.cmd_produce(args, sources_plan, source=args.only)
    if args.only:
        raise ConfigError("--only NAME needs --sources FILE")
    return producer_cli.cmd_produce(args)


def _one_source(args: argparse.Namespace, settings: SchedulerSettings) -> SourceSpec:
    """``schedule --source URL --every|--cron``: the flags as a source, checked as in a sources file."""
    if not args.source:
        raise ConfigError("give --sources FILE, or --source URL with --every or --cron")
    return flag_source(
        args.source,
        args.source_name,
        producer_cli.hints_from_args(args),
        settings.safety(allow_shrink=args.allow_shrink),
        args.force_publish,
        every=args.every,
        cron=args.cron,
        tz=args.tz,
        catch_up=args.catch_up,
        retry_failed_after=args.retry_failed_after,
    )


def cmd_schedule(args: argparse.Namespace) -> int:

    settings = SchedulerSettings.model_validate(producer_cli.settings_from_args(args).model_dump())
    topic = settings.scheduler_topic().name
    watcher = None
    if args.sources:
        _from_file(args)
        sources = load_sources(args.sources, safety=settings.safety())

        def load(data: bytes, where: str) -> Sources:
            return parse_sources(data, where, safety=settings.safety())

        watcher = SourcesWatcher(args.sources, sources, load, settings.scheduler_reload_poll_s)
        group = settings.scheduler_group or default_group(topic)
    else:
        sources = fleet_of_one(_one_source(args, settings))
        group = settings.scheduler_group or default_group(topic, sources.sources[0].name)
    metrics = RunMetrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_host)
    with (
        producer_cli.stop_on_signals() as stop,
        reload_on_sighup() as reload,
        producer_cli.clients(settings, "scheduler", producer_cli.stop_reason(stop)) as (ctx, downloader),
    ):
        code = serve(
            ctx,
            settings,
            sources,
            group=group,
            metrics=metrics,
            stop=stop,
            downloader_for=downloader,
            watcher=watcher,
            reload=reload,
        )
    logger.info("scheduler stopped")
    return code
