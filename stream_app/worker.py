"""Run a stream worker in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

import faust

from stream_app.app import create_app
from stream_app.broker_loss import LossWatch, loss_reason, restart_in_place, wait_for_topics
from stream_app.faust import stream_context
from stream_app.settings import StreamSettings

logger = logging.getLogger(__name__)


def run_worker(settings: StreamSettings, loglevel: str = "INFO") -> int:
    """Wait for the topics, build the app, run it. Returns the process exit code.

    While it runs, a ``LossWatch`` restarts it in place if the broker loses its data; a crash
    that turns out to be such a loss (Faust's ``ConsistencyError``) does the same.
    """
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not wait_for_topics(settings, stopping.is_set):
            return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    app = create_app(settings)
    logger.info(
        "stream worker %s starting: %s, HTTP API on %s, state in %s",
        settings.app_id,
        settings.describe(),
        settings.advertised_url,
        settings.state_dir,
    )
    ctx = stream_context(app)
    if ctx.golden is not None:
        logger.info(
            "golden view: %s (configuration %s)",
            f"sources file {settings.sources_file}" if settings.sources_file else "no sources file: sources by name",
            ctx.golden.fingerprint,
        )
    store = ctx.store
    watch = LossWatch(settings, lambda: dict(store.applied)).start()

    def check_highwaters(ends: dict[tuple[str, int], int]) -> None:
        """Before Faust's recovery compares the table with the changelog: a changelog that ends
        before what this worker applied is a loss, handled as the watch handles it (not a
        ConsistencyError crash first)."""
        applied = dict(store.applied)
        current = settings.topic_current
        short = {p: end for (topic, p), end in ends.items() if topic == current and end <= applied.get(p, -1)}
        if short:
            _restart_if_lost(settings, applied, f"the changelog ends at {short}, before what this worker applied")

    app.highwater_check = check_highwaters
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
        if code != 0:
            _restart_if_lost(settings, dict(store.applied), f"exit code {code}")
        return code
    except Exception as exc:  # the worker crashed: Faust re-raises the reason after shutdown
        _restart_if_lost(settings, dict(store.applied), f"{type(exc).__name__}: {exc}")
        logger.error("stream worker crashed: %s: %s", type(exc).__name__, exc)
        return 1
    finally:
        watch.stop()
    return 0


def _restart_if_lost(settings: StreamSettings, applied: dict[int, int], crash: str) -> None:
    """A crash caused by a broker that lost data is a restart, not an exit."""
    reason = loss_reason(settings, applied)
    if reason is None and "ConsistencyError" in crash:
        reason = f"Faust's recovery found the changelog behind the local table ({crash})"
    if reason is not None:
        restart_in_place(reason)
