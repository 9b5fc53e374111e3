"""The history and identifier feeds in a process of their own, beside the worker.

The feeds (``stream_app/feed.py``) read back every change and index record the dedup loop
writes, a few µs of Python each. In the worker's process that work holds the GIL the dedup loop
needs: a worker's day 1 of 300,000 new ISINs took 19.9 s with the feeds as threads and 13.8 s
without them (docs/performance.md). So a worker runs them in one child process (``spawn``: no
fork of a process with librdkafka threads), which owns their RocksDBs:

- the worker sends the partitions it keeps (``assign``) and ``stop`` over one pipe;
- the child sends each feed's ``FeedStatus`` back on that pipe when it changes, checked every
  ``STATUS_EVERY_S``, so ``caught_up`` and ``lag`` are answered in the worker from the latest;
- reads (``changes``, ``as_of``, ``isins``) go to the child over a second pipe and are answered
  there, from the store that holds at least what the last status said.

A child that dies is started again (its stores resume from their offsets, as on a restart); until
it reports, nothing is caught up and queries answer 503. A child whose worker died sees its
pipe close and stops. The child's side is ``stream_app/feed_child.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from core.logs import logging_setup
from stream_app.feed import FeedStatus, FeedUnavailable
from stream_app.feed_child import (
    HISTORY,
    IDENTIFIERS,
    STORE_WAIT_S,
    child_main,
    flock,
    lock_path,
    store_paths,
)
from stream_app.settings import StreamSettings

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
RESTART_BACKOFF_S = (1.0, 30.0)
__all__ = ["FeedProcess", "FeedReadError", "RemoteHistory", "RemoteIndex", "store_paths", "wait_for_feed_process"]
R = TypeVar("R")


class FeedReadError(RuntimeError):
    """A read raised in the feed process (a bug, not a retryable state): its error, as text."""


class FeedProcess:
    """The worker's side: starts the child, keeps its latest status, forwards reads."""

    def __init__(self, settings: StreamSettings, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._settings = settings
        self._call_timeout = call_timeout_s
        self._wanted: frozenset[int] = frozenset()
        self._generation = 0
        self._status: dict[str, FeedStatus] = {}
        self._lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False
        self._process: BaseProcess | None = None
        self._control: Connection | None = None
        self._calls: Connection | None = None
        self._watcher: threading.Thread | None = None
        self._seq = 0
        self.restarts = 0
        self.history: RemoteFeed[RemoteHistory] = RemoteFeed(self, HISTORY, RemoteHistory(self))
        self.index: RemoteFeed[RemoteIndex] = RemoteFeed(self, IDENTIFIERS, RemoteIndex(self))

    @property
    def pid(self) -> int | None:
        """The feed process's pid while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="feed-process-status", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        control, child_control = context.Pipe()
        calls, child_calls = context.Pipe()
        process = context.Process(
            target=child_main,
            args=(self._settings, logging_setup(), child_control, child_calls),
            name=f"{self._settings.app_id}-feeds",
            daemon=True,
        )
        process.start()
        child_control.close()
        child_calls.close()
        # no read is using the old pipes while they are swapped and closed (their numbers are reused)
        with self._call_lock, self._lock:
            if self._stopping.is_set():  # stop() ran meanwhile: this one is not wanted either
                process.kill()
                control.close()
                calls.close()
                return
            for connection in (self._control, self._calls):
                if connection is not None:
                    connection.close()
            self._process, self._control, self._calls = process, control, calls
            self._status = {}
            control.send(("assign", (self._generation, self._wanted)))

    def assign(self, partitions: Iterable[int]) -> None:
        """The partitions this worker keeps, for both feeds; a new assignment generation."""
        with self._lock:
            self._wanted = frozenset(partitions)
            self._generation += 1
            control = self._control
            if control is not None:
                # a dead child: the watcher starts another, which is sent the assignment
                with contextlib.suppress(OSError):
                    control.send(("assign", (self._generation, self._wanted)))

    def owns(self, partition: int) -> bool:
        return partition in self._wanted

    def status(self, name: str) -> FeedStatus | None:
        """The feed's latest status, if it follows the latest assignment."""
        status = self._status.get(name)
        return status if status is not None and status.generation == self._generation else None

    def _watch(self) -> None:
        """Receive the child's status; start it again if it dies."""
        backoff = RESTART_BACKOFF_S[0]
        while not self._stopping.is_set():
            control, process = self._control, self._process
            if control is None or process is None:
                return
            try:
                message = control.recv()
            except Exception as exc:  # EOF: the child died; anything else: a child not to trust
                if self._stopping.is_set():
                    return
                if not isinstance(exc, EOFError | OSError):
                    logger.exception("the feed process sent what the worker cannot read; stopping it")
                process.kill()
                process.join(timeout=5)
                logger.error(
                    "the feed process (history and identifier index) exited with code %s; starting it again in %.0fs",
                    process.exitcode,
                    backoff,
                )
                with self._lock:
                    self._status = {}
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, RESTART_BACKOFF_S[1])
                self.restarts += 1
                self._spawn()
                continue
            backoff = RESTART_BACKOFF_S[0]
            with self._lock:
                self._status = {**self._status, **message}

    def call(self, name: str, method: str, *args: Any) -> Any:
        """A read of one feed's store, answered by the child (blocking: run it off the event
        loop). A child that does not answer within the timeout is killed and started again."""
        with self._call_lock:
            calls, process = self._calls, self._process
            if calls is None or process is None or not process.is_alive():
                raise FeedUnavailable("the feed process is not running")
            self._seq += 1
            seq = self._seq
            deadline = time.monotonic() + self._call_timeout
            try:
                calls.send((seq, name, method, args))
                while True:
                    if not calls.poll(max(0.0, deadline - time.monotonic())):
                        logger.error(
                            "the feed process did not answer %s within %.0fs; restarting it", method, self._call_timeout
                        )
                        process.kill()
                        raise FeedUnavailable(f"the feed process did not answer {method} in time")
                    answered, ok, value = calls.recv()
                    if answered == seq:
                        break  # else: a late answer to an earlier read, dropped
            except (EOFError, OSError) as exc:
                raise FeedUnavailable(f"the feed process is gone: {exc!r}") from exc
        if not ok:
            raise FeedReadError(f"{name} {method} failed in the feed process: {value}")
        return value

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            control, process = self._control, self._process
        if control is not None:
            with contextlib.suppress(OSError):
                control.send(("stop", None))
        if process is not None:
            process.join(timeout=15)
            if process.is_alive():
                logger.warning("the feed process did not stop within 15s; killing it")
                process.kill()  # not terminate: a stopped (SIGSTOP) process keeps a SIGTERM pending
                process.join(timeout=5)
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for connection in (self._control, self._calls):
            if connection is not None:
                connection.close()


class RemoteFeed(Generic[R]):
    """One feed of the child, as the worker's queries see it (``stream_app.feed.Feed``)."""

    def __init__(self, process: FeedProcess, name: str, store: R) -> None:
        self._process = process
        self._name = name
        self._store = store

    @property
    def store(self) -> R:
        return self._store

    def caught_up(self, partition: int) -> bool:
        status = self._process.status(self._name)
        return status is not None and self._process.owns(partition) and status.caught_up(partition)

    def lag(self) -> int | None:
        status = self._process.status(self._name)
        return None if status is None else status.lag()


class RemoteHistory:
    """``HistoryStore``'s reads, answered by the feed process."""

    def __init__(self, process: FeedProcess) -> None:
        self._process = process

    def changes(self, partition: int, isin: str, source: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._process.call(HISTORY, "changes", partition, isin, source)
        return result

    def as_of(
        self, partition: int, isin: str, valid_at_ms: int, known_at_ms: int | None = None, source: str | None = None
    ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._process.call(
            HISTORY, "as_of", partition, isin, valid_at_ms, known_at_ms, source
        )
        return result


class RemoteIndex:
    """``IdentifierIndex``'s reads, answered by the feed process."""

    def __init__(self, process: FeedProcess) -> None:
        self._process = process

    def isins(self, partition: int, field: str, value: str) -> list[str]:
        result: list[str] = self._process.call(IDENTIFIERS, "isins", partition, field, value)
        return result


def wait_for_feed_process(settings: StreamSettings, timeout_s: float = STORE_WAIT_S) -> None:
    """Wait until no feed process of this state directory runs: one of an earlier start of the
    worker (killed, or restarted in place) stops when it sees its worker gone, and until it has,
    its stores are neither opened again nor wiped. ``RuntimeError`` after ``timeout_s``."""
    path = lock_path(settings)
    if path.exists():
        with path.open("a") as handle:
            flock(handle, path, timeout_s)
            fcntl.flock(handle, fcntl.LOCK_UN)
