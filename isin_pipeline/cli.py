"""``isin-pipeline``: one command line for the broker, the producer, the stream app and the tools."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from core.errors import PipelineError
from core.logs import setup_logging
from isin_pipeline import __version__

logger = logging.getLogger(__name__)


def _add_broker(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "broker",
        help="run the embedded Kafka-compatible broker (tansu) in the foreground",
        description="Run the embedded, memory-only, Kafka-compatible broker on 127.0.0.1 until Ctrl-C. "
        "For development and the demo; production runs on Apache Kafka.",
    )
    p.add_argument("--port", type=int, default=9092, help="listen port (default 9092)")
    p.add_argument(
        "--no-topics",
        action="store_true",
        help="do not create the pipeline's topics at start (by default they are, with their configured counts)",
    )

    def run(args: argparse.Namespace) -> int:
        from core.broker import run_foreground
        from isin_pipeline.topics import create_all

        def topics(bootstrap: str) -> None:
            created = create_all(bootstrap)
            print(f"created the pipeline's topics: {', '.join(created) or 'none (they exist)'}", flush=True)

        return run_foreground(args.port, on_ready=None if args.no_topics else topics)

    p.set_defaults(func=run)


def _add_demo(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline once on the embedded broker",
        description="Start the embedded broker and a stream worker, serve a bundled real ISIN list over "
        "loopback HTTP, run one produce, wait for the table to catch up, show the result, stop.",
    )
    p.add_argument("--keep-running", action="store_true", help="leave everything up for exploring the API until Ctrl-C")
    p.add_argument("--web-port", type=int, default=0, help="HTTP API port (default: a free port)")

    def run(args: argparse.Namespace) -> int:
        from isin_pipeline.demo import run_demo

        return run_demo(keep_running=args.keep_running, web_port=args.web_port, log_level=args.log_level)

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    from isin_pipeline import topics
    from ops import cli as ops_cli
    from producer import cli as producer_cli
    from scheduler import cli as scheduler_cli
    from stream_app import cli as stream_cli

    parser = argparse.ArgumentParser(
        prog="isin-pipeline",
        description="Daily ISIN lists into Kafka: validated Avro events, a deduplicated table, "
        "a log-compacted topic of current records, and an HTTP API. "
        "Configuration comes from the environment (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, ...); "
        "see docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _logging_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_broker(sub)
    scheduler_cli.add_parsers(sub, producer_cli.add_parsers(sub))
    stream_cli.add_parsers(sub)
    ops_cli.add_parsers(sub)
    _add_demo(sub)
    topics.add_parser(sub)
    for command in sub.choices.values():
        _logging_arguments(command, argparse.SUPPRESS)  # also after the subcommand; not set: the top's
    return parser


def _logging_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--log-level",
        default=default if default is not None else os.environ.get("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (LOG_LEVEL, default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=default if default is not None else os.environ.get("LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="log line format on stderr (LOG_FORMAT, default text)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format, os.environ.get("LIBRARY_LOG_LEVEL", "WARNING"))
    try:
        return int(args.func(args))
    except PipelineError as exc:
        print(f"isin-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "settings"
        print(f"isin-pipeline {args.command}: configuration error: {where}: {first.get('msg')}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # an environment value that does not parse (JSON, say)
        print(f"isin-pipeline {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"isin-pipeline {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
