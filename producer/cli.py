"""``isin-pipeline produce``: one run of the producer, for cron systems and for humans."""

from __future__ import annotations

import argparse
import logging
import sys

import httpx

from isin_pipeline.topics import ensure_topics, pipeline_topics
from producer.download import Downloader, RetryPolicy, redact_url
from producer.publish import Publisher
from producer.run import RunContext, RunSummary, run_once
from producer.settings import ProducerSettings
from schemas import make_serde

logger = logging.getLogger(__name__)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, metavar="URL", help="http(s):// or file:// URL of the ISIN list")
    parser.add_argument(
        "--source-name",
        metavar="NAME",
        help="stable name of the source (default: the URL without credentials and query); "
        "set it when the URL changes every day, e.g. has a date in it",
    )
    parser.add_argument("--max-bytes", type=int, metavar="N", help="refuse bodies larger than N bytes (HTTP_MAX_BYTES)")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "produce",
        help="download a list once and publish it",
        description="Download an ISIN list once, validate every row, publish valid ISINs as Avro events "
        "keyed by ISIN and bad rows to the dead-letter topic. Prints one JSON summary line on stdout.",
    )
    add_source_arguments(p)
    p.set_defaults(func=cmd_produce)


def settings_from_args(args: argparse.Namespace) -> ProducerSettings:
    settings = ProducerSettings()
    if getattr(args, "max_bytes", None):
        settings = settings.model_copy(update={"http_max_bytes": args.max_bytes})
    return settings


def http_client(settings: ProducerSettings) -> httpx.Client:
    return httpx.Client(
        timeout=settings.http_timeout(),
        auth=settings.http_auth(),
        headers=settings.http_headers(),
        follow_redirects=True,
    )


def downloader(settings: ProducerSettings, client: httpx.Client) -> Downloader:
    return Downloader(
        client,
        policy=RetryPolicy(settings.http_retries, settings.http_backoff_s, settings.http_backoff_max_s),
        max_bytes=settings.http_max_bytes,
        spool_dir=settings.spool_dir,
    )


def cmd_produce(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    source = args.source_name or redact_url(args.source)
    ensure_topics(settings, pipeline_topics(settings))
    publisher = Publisher(settings)
    publisher.connect()
    summary: RunSummary | None = None
    try:
        with http_client(settings) as client:
            ctx = RunContext(
                publisher=publisher,
                downloader=downloader(settings, client),
                serde=make_serde(settings.schema_registry_config()),
                raw_topic=settings.topic_raw,
                dlq_topic=settings.topic_dlq,
            )
            summary = run_once(ctx, args.source, source)
    finally:
        publisher.close()
    sys.stdout.write(summary.to_json() + "\n")
    sys.stdout.flush()
    return 0
