"""The feeds' own process: reads answered from its stores, progress reported, a dead one started
again, and one whose worker is gone stops. No broker: its consumers never reach one (the feeds
through a broker are in the integration tests of history and lookups)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import LISTING_CHANGE, make_serde
from stream_app.changes import listing_changes
from stream_app.feed import FeedStatus, FeedUnavailable
from stream_app.feed_process import FeedProcess, store_paths, wait_for_feed_process
from stream_app.history import HistoryStore
from stream_app.identifier_index import IdentifierIndex, index_key
from stream_app.records import merge_event
from stream_app.settings import StreamSettings

SERDE = make_serde(None)
ISIN = "INE144J01027"
LEI = "335800Z8IO3CJGPTHZ36"


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def settings(tmp_path: Path) -> StreamSettings:
    """A worker's settings whose broker is never there (port 9, discard, refuses on loopback),
    with one change of ISIN in the history and its LEI in the index, written before the start."""
    settings = StreamSettings(kafka_bootstrap_servers="127.0.0.1:9", state_dir=tmp_path, app_id="feeds-test")
    record = merge_event(
        None,
        {
            "content_hash": "h",
            "run_id": "r1",
            "isin": ISIN,
            "country_code": "IN",
            "source": "nse",
            "line": 2,
            "attributes": {"name": "20 Microns"},
            "published_at": 0,
        },
    )
    history = HistoryStore(tmp_path / "feeds-test-history.rdb", SERDE)
    changes = listing_changes(ISIN, None, record, "r1", 86_400_000, 86_405_000)
    history.apply(3, [(ISIN.encode(), SERDE.encode("changes", LISTING_CHANGE, c), i) for i, c in enumerate(changes)])
    history.close()
    index = IdentifierIndex(tmp_path / "feeds-test-identifiers.rdb")
    index.apply(1, [(index_key("lei", LEI, ISIN), ISIN.encode(), 0)])
    index.close()
    return settings


@pytest.fixture
def feeds(settings: StreamSettings) -> Iterator[FeedProcess]:
    process = FeedProcess(settings)
    process.assign([1, 3])
    process.start()
    try:
        yield process
    finally:
        process.stop()


def child_pid(feeds: FeedProcess) -> int:
    pid = feeds.pid
    assert pid is not None
    return pid


def test_reads_are_answered_by_the_process_from_its_stores(feeds: FeedProcess) -> None:
    wait_until("the first status", lambda: feeds.status("history") is not None)
    changes = feeds.history.store.changes(3, ISIN)
    assert [(c["op"], c["source"]) for c in changes] == [("LISTED", "nse")]
    record = feeds.history.store.as_of(3, ISIN, 86_400_001)
    assert record is not None and record["listings"][0]["attributes"] == {"name": "20 Microns"}
    assert feeds.history.store.as_of(3, ISIN, 86_399_999) is None  # before it was listed
    assert feeds.index.store.isins(1, "lei", LEI) == [ISIN]
    assert feeds.index.store.isins(1, "lei", "5493001KJTIIGC8Y1R12") == []


def test_progress_is_reported_but_nothing_is_caught_up_before_a_fetch(feeds: FeedProcess) -> None:
    status = wait_until("the assignment in the status", lambda: feeds.status("history"))
    assert isinstance(status, FeedStatus)
    status = wait_until("the assignment", lambda: (s := feeds.status("history")) and s.assigned and s)
    assert status.assigned == frozenset({1, 3})
    assert status.offsets == {1: -1, 3: 0}  # the stored offsets, as the child's stores hold them
    # no broker answered: no high watermark, so not caught up and no lag figure
    assert not feeds.history.caught_up(3)
    assert feeds.history.lag() is None
    assert feeds.owns(3) and not feeds.owns(2)


def test_a_killed_feed_process_is_started_again_and_answers(feeds: FeedProcess) -> None:
    wait_until("the first status", lambda: feeds.status("identifiers") is not None)
    first = child_pid(feeds)
    os.kill(first, signal.SIGKILL)
    status = wait_until(
        "a second feed process, following the assignment",
        lambda: feeds.restarts == 1 and (s := feeds.status("identifiers")) is not None and s.assigned and s,
    )
    assert status.assigned == frozenset({1, 3})  # the new one was given the worker's partitions
    assert child_pid(feeds) != first
    assert feeds.index.store.isins(1, "lei", LEI) == [ISIN]


def test_a_feed_process_that_does_not_answer_is_replaced_and_a_late_answer_never_read(
    settings: StreamSettings,
) -> None:
    feeds = FeedProcess(settings, call_timeout_s=0.5)
    feeds.assign([1, 3])
    feeds.start()
    try:
        wait_until("the first status", lambda: feeds.status("history") is not None)
        first = child_pid(feeds)
        os.kill(first, signal.SIGSTOP)  # alive, holding its pipes, answering nothing
        wait_until("the feed process to be stopped", lambda: state(first) == "T", timeout=10)
        with pytest.raises(FeedUnavailable, match="did not answer"):
            feeds.index.store.isins(1, "lei", LEI)
        wait_until("a second feed process", lambda: feeds.restarts == 1 and feeds.status("history") is not None)
        assert child_pid(feeds) != first
        # the next reads get their own answers, not the first one's
        assert feeds.history.store.changes(3, "INE000000000") == []
        assert feeds.index.store.isins(1, "lei", LEI) == [ISIN]
    finally:
        feeds.stop()


def test_caught_up_needs_the_latest_assignment_and_the_store_at_the_last_fetch(settings: StreamSettings) -> None:
    feeds = FeedProcess(settings)  # not started: the status is set as the child would send it
    feeds.assign([3])
    current = FeedStatus(frozenset({3}), {3: 10}, {3: 9}, generation=1)
    feeds._status = {"history": current}
    assert feeds.history.caught_up(3) and feeds.history.lag() == 0
    assert not feeds.history.caught_up(2)  # not kept here
    feeds._status = {"history": FeedStatus(frozenset({3}), {3: 11}, {3: 9}, generation=1)}
    assert not feeds.history.caught_up(3) and feeds.history.lag() == 1  # a record not in the store yet
    feeds.assign([2, 3])  # given back meanwhile: a status of the assignment before says nothing
    feeds._status = {"history": current}
    assert not feeds.history.caught_up(3) and feeds.history.lag() is None


def test_a_read_while_the_process_is_down_is_an_error_not_an_answer(feeds: FeedProcess) -> None:
    wait_until("the first status", lambda: feeds.status("history") is not None)
    feeds.stop()
    with pytest.raises(FeedUnavailable):
        feeds.history.store.changes(3, ISIN)
    assert feeds.pid is None


WORKER = """
import sys, time
from pathlib import Path
from stream_app.feed_process import FeedProcess, store_paths, wait_for_feed_process
from stream_app.settings import StreamSettings

feeds = FeedProcess(StreamSettings(kafka_bootstrap_servers="127.0.0.1:9", state_dir=Path(sys.argv[1]), app_id="t"))
feeds.start()
deadline = time.monotonic() + 60
while feeds.status("history") is None and time.monotonic() < deadline:
    time.sleep(0.05)
print(feeds.pid, flush=True)
time.sleep(120)
"""


def state(pid: int) -> str | None:
    """The process state letter of ``pid`` (R, S, T for stopped, Z for a zombie), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an orphan that exited waits for init to reap it)."""
    return state(pid) not in (None, "Z")


def test_the_process_stops_when_its_worker_is_killed(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True) as worker:
        try:
            assert worker.stdout is not None
            child = int(worker.stdout.readline())
            assert running(child)
            worker.kill()  # SIGKILL: no stop command, no cleanup; only the pipe closes
            worker.wait(30)
            wait_until("the orphaned feed process to stop", lambda: not running(child), timeout=30)
        finally:
            worker.kill()
            worker.wait(30)


def test_a_worker_waits_for_the_feed_process_of_an_earlier_start(settings: StreamSettings) -> None:
    feeds = FeedProcess(settings)
    feeds.start()
    try:
        wait_until("the first status", lambda: feeds.status("history") is not None)
        with pytest.raises(RuntimeError, match="held by another process"):
            wait_for_feed_process(settings, timeout_s=0.3)
        started = time.monotonic()
        stopper = threading.Timer(1.0, feeds.stop)
        stopper.start()
        wait_for_feed_process(settings, timeout_s=30)  # returns once the feed process let go
        assert time.monotonic() - started >= 1.0
        stopper.join()
    finally:
        feeds.stop()
    store = HistoryStore(store_paths(settings)[0], SERDE)  # and this process may open its stores
    assert store.offset(3) == 0
    store.close()
