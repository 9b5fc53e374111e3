"""``isin-pipeline stream``: the Faust worker with the dedup table and the HTTP API."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``stream`` (the operator tools' commands are in ``ops/cli.py``)."""
    add_stream_parser(sub)


def add_stream_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "stream",
        help="run a stream worker: dedup table, compacted topic, HTTP API",
        description="Run one Faust worker. Several workers (each with its own --state-dir and "
        "--web-port) share the table partitions; queries answer on any of them.",
    )
    p.add_argument("--web-port", type=int, help="HTTP API port (WEB_PORT, default 6066)")
    p.add_argument("--web-host", help="HTTP API interface (WEB_HOST, default 127.0.0.1)")
    p.add_argument("--state-dir", type=Path, help="RocksDB state directory (STATE_DIR, default ./state)")
    p.add_argument(
        "--sources",
        type=Path,
        metavar="FILE",
        help="the sources file whose fields and [precedence] the golden view follows (SOURCES_FILE)",
    )
    p.set_defaults(func=cmd_stream)


def cmd_stream(args: argparse.Namespace) -> int:
    from stream_app.settings import StreamSettings
    from stream_app.worker import run_worker

    overrides = {
        name: value
        for name, value in (
            ("web_port", args.web_port),
            ("web_host", args.web_host),
            ("state_dir", args.state_dir),
            ("sources_file", args.sources),
        )
        if value is not None
    }
    settings = StreamSettings(**overrides)  # type: ignore[arg-type]
    if settings.sources_file is not None:
        from core.golden import GoldenConfig

        GoldenConfig.load(settings.sources_file)  # a bad file fails here, before any connection
    return run_worker(settings, args.log_level)
