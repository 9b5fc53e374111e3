"""The feed process itself (``stream_app/feed_process.py`` starts it and talks to it): both
feeds as threads over the worker's partitions, their statuses sent back when they change, reads
served on a pipe of their own. Also what both sides agree on: the stores' paths, and the lock a
feed process holds for its whole life."""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from core.logs import setup_logging
from schemas import make_serde
from stream_app.feed import FeedStatus, TopicFeed
from stream_app.golden import Golden
from stream_app.history import HistoryStore
from stream_app.identifier_index import IdentifierIndex
from stream_app.settings import StreamSettings

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 0.05
STORE_WAIT_S = 30.0
HISTORY, IDENTIFIERS = "history", "identifiers"


def store_paths(settings: StreamSettings) -> tuple[Path, Path]:
    """The history's and the identifier index's RocksDBs in the worker's state directory."""
    state = settings.state_dir
    return state / f"{settings.app_id}-history.rdb", state / f"{settings.app_id}-identifiers.rdb"


def lock_path(settings: StreamSettings) -> Path:
    """The file a feed process holds an exclusive ``flock`` on, from before it opens the stores
    until it exits (the kernel lets go of it however the process ends)."""
    return settings.state_dir / f"{settings.app_id}-feeds.lock"


def flock(handle: IO[str], path: Path, timeout_s: float) -> None:
    """An exclusive ``flock`` on ``handle``, waited for up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{path} is held by another process after {timeout_s:.0f}s "
                    "(a feed process of an earlier start of this worker?)"
                ) from None
            if not waited:
                logger.warning("waiting for the feed process of an earlier start to stop (%s)", path)
                waited = True
            time.sleep(0.1)


READS = {HISTORY: frozenset({"changes", "as_of"}), IDENTIFIERS: frozenset({"isins"})}


def child_main(settings: StreamSettings, logs: tuple[str, str, str], control: Connection, calls: Connection) -> None:
    """The feed process: both feeds as threads, reads served on ``calls``, until ``stop`` or
    until the worker's end of ``control`` closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the worker stops us
    setup_logging(*logs)
    settings = type(settings).model_validate(settings.model_dump())  # validated again: its secrets masked here too
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_path(settings).open("a")  # held until this process ends
    flock(lock, lock_path(settings), STORE_WAIT_S)
    commands: list[tuple[str, Any]] = []
    try:
        while control.poll(0):  # a worker gone already (killed while this one started): stop here
            commands.append(control.recv())
    except (EOFError, OSError):
        logger.warning("the worker of this feed process is gone; stopping before opening its stores")
        return
    serde = make_serde(settings.schema_registry_config())
    golden = Golden.load(settings.sources_file, settings.topic_partitions)
    paths = store_paths(settings)
    history = TopicFeed(settings, settings.topic_changes, HistoryStore(paths[0], serde, golden), HISTORY)
    index = TopicFeed(settings, settings.topic_identifiers, IdentifierIndex(paths[1]), IDENTIFIERS)
    feeds: dict[str, TopicFeed[Any]] = {HISTORY: history, IDENTIFIERS: index}
    threading.Thread(target=_serve_reads, args=(feeds, calls), name="feed-reads", daemon=True).start()
    sent: dict[str, FeedStatus] = {}
    try:
        while True:
            while commands or control.poll(STATUS_EVERY_S):
                command, argument = commands.pop(0) if commands else control.recv()
                if command == "stop":
                    return
                generation, partitions = argument
                for feed in feeds.values():
                    feed.assign(partitions, generation)
                    if not feed.started:
                        feed.start()
            changed = {}
            for name, feed in feeds.items():
                status = feed.status()
                if sent.get(name) != status:
                    changed[name] = sent[name] = status
            if changed:
                control.send(changed)
    except (EOFError, OSError):
        logger.warning("the worker of this feed process is gone; stopping")
    finally:
        for feed in feeds.values():
            if feed.started:
                feed.stop()
            else:
                feed.store.close()
        lock.close()


def _serve_reads(feeds: dict[str, TopicFeed[Any]], calls: Connection) -> None:
    while True:
        try:
            seq, name, method, args = calls.recv()
        except (EOFError, OSError):
            return
        try:
            if method not in READS.get(name, ()):
                raise ValueError(f"{name} has no read {method}")
            reply: tuple[int, bool, Any] = (seq, True, getattr(feeds[name].store, method)(*args))
        except Exception as exc:  # the worker gets the error, the feeds go on
            logger.exception("a %s read (%s) failed", name, method)
            reply = (seq, False, repr(exc))
        try:
            calls.send(reply)
        except (EOFError, OSError):
            return
