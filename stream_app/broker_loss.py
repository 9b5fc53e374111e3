"""A running worker that notices the broker lost its data, and waits for missing topics.

The embedded broker keeps nothing across a restart, and on a real cluster a topic can be
deleted and created again. Faust cannot go on from there: its recovery stops with a
``ConsistencyError`` (the table's changelog offsets are past the broker's end), and without
its topics the worker has nothing to read. So:

- ``LossWatch`` checks every ``LOSS_CHECK_S`` (a thread of its own, whatever state Faust is in)
  that the pipeline's topics exist and that the changelog still reaches every offset this
  worker applied. When it finds a loss it says once what happened and ``restart_in_place``
  replaces the process with a fresh start of the same command (``os.execv``: the same pid, so
  supervisors and probes keep tracking it).
- The fresh start (``wait_for_topics``) waits for missing topics, saying what to run
  (``isin-pipeline topics create``), while a holding HTTP server answers ``/livez`` 200 and
  every other path 503 (not ready); then ``create_app`` finds the local state ahead of the
  broker, wipes it and Faust rebuilds the table from what the broker has. Nothing is deleted
  downstream because of the loss: the table is rebuilt, not swept.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.errors import PipelineError
from core.kafka.offsets import end_offsets
from core.kafka.topics import missing_topics
from stream_app.settings import StreamSettings

logger = logging.getLogger(__name__)

RESTART_ENV = "ISIN_PIPELINE_RESTARTED_BECAUSE"
"""Set across ``restart_in_place``: why the process was restarted (its first lines say so)."""
MAX_RESTARTS = 20
_COUNT_ENV = "ISIN_PIPELINE_RESTARTS"


def loss_reason(settings: StreamSettings, applied: Mapping[int, int]) -> str | None:
    """Why the broker no longer has this worker's data, or None (also when it cannot be reached:
    a broker that is down has lost nothing we can tell)."""
    try:
        missing = missing_topics(settings, settings.topics(), timeout=min(10.0, settings.kafka_connect_timeout_s))
    except PipelineError:
        return None
    if missing:
        return f"the broker no longer has the topic{'s' if len(missing) > 1 else ''} {', '.join(sorted(missing))}"
    if not applied:
        return None
    topic = settings.topic_current
    try:
        ends = end_offsets(settings.confluent_config(), [(topic, p) for p in sorted(applied)])
    except Exception as exc:  # a broker going away mid-check: check again next time
        logger.debug("loss check: end offsets of %s: %s", topic, exc)
        return None
    behind = {p: (off, ends[(topic, p)]) for p, off in sorted(applied.items()) if off >= ends[(topic, p)]}
    if not behind:
        return None
    shown = ", ".join(
        f"partition {p} applied offset {off}, the broker ends at {end}" for p, (off, end) in behind.items()
    )
    return f"the broker's {topic} ends before what this worker applied ({shown})"


def restart_in_place(reason: str) -> None:
    """Replace this process with a fresh start of the same command (same pid)."""
    count = int(os.environ.get(_COUNT_ENV, "0")) + 1
    if count > MAX_RESTARTS:
        logger.error("the broker lost data again (%s), after %d restarts in place: stopping", reason, MAX_RESTARTS)
        os._exit(1)
    logger.error(
        "the broker lost this worker's data: %s (restarted empty, or topics deleted and created again). "
        "Restarting in place (pid %d) to wipe the local state and rebuild the table from what the broker "
        "has; not ready until then. No deletion is published because of the loss.",
        reason,
        os.getpid(),
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    sys.stdout.flush()
    os.environ[RESTART_ENV] = reason
    os.environ[_COUNT_ENV] = str(count)
    os.closerange(3, _max_fd())  # sockets, RocksDB files and their locks go with the old image
    os.execv(sys.executable, [sys.executable, "-m", "isin_pipeline", *sys.argv[1:]])  # noqa: S606


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


class LossWatch:
    """Runs ``loss_reason`` every ``interval_s`` in a daemon thread; on a loss, ``on_loss``."""

    def __init__(
        self,
        settings: StreamSettings,
        applied: Callable[[], Mapping[int, int]],
        on_loss: Callable[[str], None] = restart_in_place,
    ) -> None:
        self._settings = settings
        self._applied = applied
        self._on_loss = on_loss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-loss-watch", daemon=True)

    def start(self) -> LossWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._settings.loss_check_s):
            # applied offsets first, then the broker's ends: the log only grows, so a healthy
            # partition's end, read after, is always past what was applied before
            reason = loss_reason(self._settings, dict(self._applied()))
            if reason is not None and not self._stop.is_set():
                self._on_loss(reason)
                return


class _Holding(BaseHTTPRequestHandler):
    """The worker's port while it waits for its topics: alive, not ready."""

    reason = "waiting"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        alive = self.path.split("?", 1)[0] == "/livez"
        body = json.dumps({"status": "alive"} if alive else {"error": f"not ready: {self.reason}"}).encode()
        self.send_response(200 if alive else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def wait_for_topics(settings: StreamSettings, should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Until the pipeline's topics exist (then the usual partition check); False if told to stop.

    Meanwhile the worker's HTTP port answers ``/livez`` 200 and every other path 503.
    """
    from core.kafka.topics import check_topics

    why = os.environ.get(RESTART_ENV)
    if why:
        logger.warning("restarted in place because %s", why)
    missing = missing_topics(settings, settings.topics())
    if not missing:
        check_topics(settings, settings.topics())
        return True
    handler = type("Holding", (_Holding,), {"reason": f"topics {', '.join(missing)} missing"})
    server = None
    try:
        server = ThreadingHTTPServer((settings.web_host, settings.web_port), handler)
        threading.Thread(target=server.serve_forever, name="holding-http", daemon=True).start()
    except OSError as exc:
        logger.warning("cannot answer on %s:%s while waiting: %s", settings.web_host, settings.web_port, exc)
    try:
        said = 0.0
        while missing:
            if time.monotonic() - said >= 60:
                logger.error(
                    "topic%s %s missing on %s: waiting for them (not ready); create them with "
                    "`isin-pipeline topics create` (same environment)",
                    "s" if len(missing) > 1 else "",
                    ", ".join(missing),
                    settings.kafka_bootstrap_servers,
                )
                said = time.monotonic()
            if should_stop():
                return False
            time.sleep(min(1.0, settings.loss_check_s))
            try:
                missing = missing_topics(settings, settings.topics())
            except PipelineError as exc:
                logger.debug("waiting for topics: %s", exc)
        logger.info("the pipeline's topics exist: starting")
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    check_topics(settings, settings.topics())
    return True
