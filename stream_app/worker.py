"""Run a stream worker in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import logging

import faust

from stream_app.app import check_topics, create_app
from stream_app.settings import StreamSettings

logger = logging.getLogger(__name__)


def run_worker(settings: StreamSettings, loglevel: str = "INFO") -> int:
    """Check the topics, build the app, run it. Returns the process exit code."""
    check_topics(settings)
    app = create_app(settings)
    logger.info(
        "stream worker %s starting: %s, HTTP API on %s, state in %s",
        settings.app_id,
        settings.describe(),
        settings.advertised_url,
        settings.state_dir,
    )
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.spinner = None  # Faust's terminal spinner writes escape codes even into log files
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code
    except Exception as exc:  # the worker crashed: Faust re-raises the reason after shutdown
        logger.error("stream worker crashed: %s: %s", type(exc).__name__, exc)
        return 1
    return 0
