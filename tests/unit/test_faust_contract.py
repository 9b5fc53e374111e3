"""The contract between stream_app/faust/ and the installed Faust and aiokafka.

Each private member stream_app/faust/ uses is checked here: that it exists, its signature, and
where it can be shown without a broker, the behaviour relied on (the fetch loop's, the
read_committed consumer's, the metadata patch's, the table's files', recovery's, the assignor's).
The Faust loop ours is rewritten from is pinned by its source's digest. An upgrade of either
library that changes one fails here, with the member's name, instead of in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import sys
import textwrap
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiokafka
import aiokafka.client
import faust
import pytest
from aiokafka.consumer.subscription_state import Assignment, SubscriptionState, TopicPartitionState
from aiokafka.protocol.metadata import MetadataRequest, MetadataRequest_v5
from aiokafka.structs import ConsumerRecord
from faust.assignor.partition_assignor import PartitionAssignor
from faust.stores import rocksdb as faust_rocksdb
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

from stream_app.app import create_app
from stream_app.faust import (
    BatchingApp,
    BatchingConsumer,
    forbid_auto_create_topics,
    partition_db,
    standby_applied,
    standby_caught_up,
    standby_progress,
    stream_context,
    table_offsets,
    table_ready,
)
from stream_app.settings import StreamSettings
from stream_app.store import FaustTableStore


def on_own_loop(build: Callable[[], BatchingApp]) -> BatchingApp:
    """An app built on an event loop of its own: mode otherwise gives every app of a thread the
    same loop, and a test that closes its app's loop would close the next app's."""
    loop = asyncio.new_event_loop()

    async def built() -> BatchingApp:
        return build()

    app = loop.run_until_complete(built())
    app.loop = loop
    return app


def worker_app(state_dir: Path) -> BatchingApp:
    """A worker's Faust app, built from settings, never started (no network), with its consumer."""

    def build() -> BatchingApp:
        app = create_app(StreamSettings(state_dir=state_dir), check_state=False)
        assert isinstance(app.consumer, BatchingConsumer)  # built now, on the app's loop
        return app

    return on_own_loop(build)


def close(app: BatchingApp) -> None:
    """Close the loops made for an app: its own, and its consumer thread's if it was built."""
    if app._consumer is not None:
        app._consumer._thread.thread_loop.close()
    app.loop.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchingApp]:
    built = worker_app(tmp_path_factory.mktemp("state"))
    yield built
    close(built)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[BatchingApp]:
    """A worker's app of this test alone, for tests that change its state or run its loop."""
    built = worker_app(tmp_path)
    yield built
    close(built)


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


@pytest.mark.parametrize(
    ("owner", "member", "expected"),
    [
        (faust_consumer.Consumer, "_wait_next_records", ["self", "timeout"]),
        (faust_consumer.Consumer, "_add_gap", ["self", "tp", "offset_from", "offset_to"]),
        (faust_consumer.Consumer, "_to_message", ["self", "tp", "record"]),
        (faust_consumer.Consumer, "_new_offset", ["self", "tp"]),
        (faust_consumer.Consumer, "_should_commit", ["self", "tp", "offset"]),
        (faust_consumer.Consumer, "_drain_messages", ["self", "fetcher"]),
        (faust_consumer.Consumer, "getmany", ["self", "timeout"]),
        (faust_consumer.Consumer, "wait_empty", ["self"]),
        (faust_aiokafka.Consumer, "_new_consumer_thread", ["self"]),
        (faust_aiokafka.Consumer, "highwaters", ["self", "partitions"]),
        (faust_aiokafka.Consumer, "highwater", ["self", "tp"]),
        (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"]),
        (faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer", ["self"]),
        (faust_rocksdb.Store, "_db_for_partition", ["self", "partition"]),
        (faust_rocksdb.Store, "partition_path", ["self", "partition"]),
        (faust.App, "_new_transport", ["self"]),
        (PartitionAssignor, "on_assignment", ["self", "assignment"]),
        (aiokafka.AIOKafkaConsumer, "highwater", ["self", "partition"]),
        (Assignment, "state_value", ["self", "tp"]),
        (MetadataRequest, "__init__", ["self", "topics", "allow_auto_topic_creation"]),
    ],
)
def test_the_members_the_adapter_calls_keep_their_signature(owner: type, member: str, expected: list[str]) -> None:
    assert hasattr(owner, member), f"{owner.__module__}.{owner.__qualname__}.{member} is gone"
    assert params(getattr(owner, member)) == expected, f"{owner.__qualname__}.{member} changed its signature"


def test_our_overrides_are_called_by_the_code_that_calls_the_originals() -> None:
    for name in ("_drain_messages", "_new_offset", "_new_consumer_thread", "wait_empty", "highwaters"):
        assert getattr(BatchingConsumer, name) is not getattr(faust_aiokafka.Consumer, name), name
    # the drain loop and the commit loop of Faust's base class still go through these names
    source = inspect.getsource(faust_consumer)
    calls = (
        "consumer._drain_messages(self)",
        "self._new_offset(tp)",
        "self._wait_next_records(timeout)",
        "self._thread = self._new_consumer_thread()",
    )
    for call in calls:
        assert call in source, f"Faust's consumer module no longer calls {call}"
    assert "self._new_transport()" in inspect.getsource(faust.App)


def test_the_consumer_state_the_drain_loop_uses(app: BatchingApp) -> None:
    consumer = app.consumer  # built, not started: no network
    assert isinstance(consumer, BatchingConsumer)
    for attr in ("_read_offset", "_acked", "_n_acked", "_commit_every", "_buffered_partitions", "suspend_flow"):
        assert hasattr(consumer, attr), f"Faust's Consumer has no {attr}"
    assert hasattr(consumer, "flow_active") and hasattr(consumer, "consumer_stopped_errors")
    # the fetcher is a mode.Service, like the consumer: both stop through their _stopped event
    assert isinstance(consumer, Service) and hasattr(consumer._stopped, "is_set"), "mode.Service lost _stopped"
    # what lag() reads of the AIOKafkaConsumer: _subscription.subscription.assignment.state_value(tp)
    assert isinstance(inspect.getattr_static(SubscriptionState, "subscription"), property)
    assert {"position", "has_valid_position"} <= set(dir(TopicPartitionState))


# The fetch loop of Faust's Consumer, as installed, hashed: stream_app/faust/consumer.py's
# BatchingConsumer._drain_messages is rewritten from _drain_messages and the getmany it iterates.
# An upgrade that changes either fails here: compare, carry the change over, then pin the digest.
UPSTREAM_SHA256 = {
    "_drain_messages": "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68",
    "getmany": "e486c434b7928ee8dc33eb66f8ad03adae289861dcec23f4cbd767ccc3c38148",
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_SHA256))
def test_the_faust_loop_ours_is_rewritten_from_is_the_installed_one(name: str) -> None:
    upstream = textwrap.dedent(inspect.getsource(getattr(faust_consumer.Consumer, name)))
    assert hashlib.sha256(upstream.encode()).hexdigest() == UPSTREAM_SHA256[name], (
        f"faust's Consumer.{name} changed: carry the change into BatchingConsumer._drain_messages "
        "(stream_app/faust/consumer.py), then pin the new digest here"
    )


def test_our_loop_keeps_the_state_upstreams_loop_keeps() -> None:
    upstream = inspect.getsource(faust_consumer.Consumer._drain_messages)
    upstream += inspect.getsource(faust_consumer.Consumer.getmany)
    ours = inspect.getsource(BatchingConsumer._drain_messages) + inspect.getsource(BatchingConsumer._deliver_one_by_one)
    for member in ("_read_offset", "_n_acked", "_commit_every", "commit", "consumer_stopped_errors", "should_stop"):
        assert f"self.{member}" in upstream and f"self.{member}" in ours, member
    for member in ("_wait_next_records", "_buffered_partitions", "flow_active", "_add_gap", "suspend_flow"):
        assert f"self.{member}" in upstream and f"self.{member}" in ours, member
    assert "app.consumer_generation_id" in upstream and "app.consumer_generation_id" in ours


def record(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"k%d" % offset, b"v", None, 2, 1, [])


def drain(app: BatchingApp, fetches: list[dict[TP, list[Any]]]) -> None:
    """Run our fetch loop over ``fetches`` (what _wait_next_records returns), then stop it."""
    consumer = app.consumer
    fetcher = type("Fetcher", (), {"_stopped": threading.Event()})()

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], None]:
        if not fetches:
            fetcher._stopped.set()
            return {}, None
        return fetches.pop(0), None

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 100  # type: ignore[method-assign]
    app.loop.run_until_complete(consumer._drain_messages(fetcher))


def test_our_fetch_loop_hands_batches_to_handlers_and_the_rest_to_faust(fresh: BatchingApp) -> None:
    raw, other, changelog = TP("isin.events", 1), TP("faust-own", 0), TP("isin.current", 2)
    batches: list[tuple[TP, list[int]]] = []
    delivered: list[tuple[str, int]] = []

    async def handler(tp: TP, batch: list[Any]) -> None:
        batches.append((tp, [r.offset for r in batch]))

    async def standby(tp: TP, batch: list[Any]) -> bool:
        return True  # a standby partition: applied

    async def callback(message: Any) -> None:
        delivered.append((message.topic, message.offset))

    fresh.batch_handlers["isin.events"] = handler
    fresh.standby_handlers["isin.current"] = standby
    consumer = fresh.consumer
    consumer.callback = callback
    drain(
        fresh,
        [
            {raw: [record("isin.events", 1, o) for o in (5, 6, 7)], other: [record("faust-own", 0, o) for o in (0, 1)]},
            {raw: [record("isin.events", 1, o) for o in (6, 7, 8)], changelog: [record("isin.current", 2, 3)]},
        ],
    )
    assert batches == [(raw, [5, 6, 7]), (raw, [8])]  # what was delivered already is dropped
    assert delivered == [("faust-own", 0), ("faust-own", 1)]  # Faust's own path, one by one
    assert consumer._read_offset[raw] == 9 and consumer._read_offset[other] == 1
    assert consumer._read_offset[changelog] == 3  # as Faust's standby path leaves it
    assert consumer._n_acked == 4 and raw in consumer._acked
    assert consumer._new_offset(raw) == 9  # what Faust's commit loop commits: after the last handled


def test_our_fetch_loop_hands_nothing_while_the_flow_is_stopped(fresh: BatchingApp) -> None:
    batches: list[list[int]] = []

    async def handler(tp: TP, batch: list[Any]) -> None:
        batches.append([r.offset for r in batch])

    fresh.batch_handlers["isin.events"] = handler
    fresh.consumer.flow_active = False  # a rebalance under way
    drain(fresh, [{TP("isin.events", 0): [record("isin.events", 0, 0)]}])
    assert batches == []
    assert fresh.consumer._new_offset(TP("isin.events", 0)) is None  # nothing to commit


def test_the_worker_consumer_reads_committed_where_faust_would_not(fresh: BatchingApp) -> None:
    thread = fresh.consumer._thread

    async def build() -> tuple[str, str]:
        ours = thread._create_worker_consumer(fresh.transport)
        theirs = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer(thread, fresh.transport)
        try:
            assert isinstance(ours, aiokafka.AIOKafkaConsumer)
            return ours._isolation_level, theirs._isolation_level
        finally:
            await ours.stop()
            await theirs.stop()

    assert fresh.loop.run_until_complete(build()) == ("read_committed", "read_uncommitted")
    # aiokafka hands the attribute to its fetcher when the consumer starts
    assert "isolation_level=self._isolation_level" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_the_metadata_requests_aiokafkas_client_sends_never_ask_for_topic_creation() -> None:
    from aiokafka.client import AIOKafkaClient, ConnectionGroup
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.errors import KafkaError

    assert MetadataRequest(["t"]).build(MetadataRequest_v5).allow_auto_topic_creation is True  # unpatched
    forbid_auto_create_topics()
    forbid_auto_create_topics()  # idempotent
    sent: list[Any] = []

    class Connection:
        async def send(self, request: Any) -> Any:
            sent.append(request)
            raise KafkaError("no broker here")

    async def update() -> None:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")
        client._conns[("bootstrap", ConnectionGroup.DEFAULT)] = Connection()

        async def get_conn(node_id: Any, **kwargs: Any) -> Connection:
            return Connection()

        client._get_conn = get_conn  # type: ignore[method-assign]
        try:
            await client._metadata_update(ClusterMetadata(), {"missing-topic"})
        finally:
            client._conns.clear()
            await client.close()

    asyncio.run(update())
    built = [request.build(MetadataRequest_v5) for request in sent]
    assert [(b.topics, b.allow_auto_topic_creation) for b in built] == [(["missing-topic"], False)]


def test_our_direct_writes_are_what_faust_reads_as_the_persisted_offset(app: BatchingApp) -> None:
    ctx = stream_context(app)
    table = ctx.table
    FaustTableStore(table).apply(3, {b"US0378331005": b"value"}, changelog_offset=41)
    assert table.data.persisted_offset(TP(ctx.settings.topic_current, 3)) == 41
    assert partition_db(table.data, 3).get(b"US0378331005") == b"value"
    assert partition_db(table.data, 3) is partition_db(table.data, 3)  # opened once, cached by Faust
    assert Path(table.data.partition_path(3)).exists()


def test_table_offsets_reads_what_each_partition_applied_from_its_files(fresh: BatchingApp) -> None:
    table = stream_context(fresh).table
    partitions = list(range(fresh.conf.topic_partitions))
    assert table_offsets(table, partitions) == {}  # no files yet
    store = FaustTableStore(table)
    store.apply(3, {b"US0378331005": b"value"}, changelog_offset=41)
    store.apply(0, {}, changelog_offset=7)
    store.apply(1, {b"DE0007164600": b"value"}, changelog_offset=None)  # records, no offset
    # read while Faust's handles are open: a read-only open replays the write-ahead log
    assert table_offsets(table, partitions) == {0: 7, 3: 41}


def test_the_recovery_state_the_standby_path_updates(app: BatchingApp) -> None:
    from faust.tables.recovery import Recovery

    recovery = app.tables.recovery
    assert isinstance(recovery, Recovery)
    tp = TP("isin.current", 2)
    assert standby_progress(app, tp) == (False, None)
    recovery.standby_tps.add(tp)
    assert standby_progress(app, tp) == (True, None)
    standby_applied(app, tp, 120)
    assert standby_progress(app, tp) == (True, 120)
    # Faust counts a standby's progress from these offsets, against its highwaters
    recovery.standby_highwaters[tp] = 150
    assert recovery.standby_remaining()[tp] == 30
    source = inspect.getsource(sys.modules[Recovery.__module__])
    assert "consumer, assigned_standby_tps, standby_offsets" in source, "Faust no longer seeks standbys from them"


def test_a_worker_is_ready_once_recovery_completed_and_while_no_rebalance_runs(fresh: BatchingApp) -> None:
    assert not table_ready(fresh)  # never recovered
    fresh.tables.recovery.completed.set()
    assert table_ready(fresh)
    fresh.rebalancing = True
    assert not table_ready(fresh)
    assert "self.completed.set()" in inspect.getsource(type(fresh.tables.recovery))


def test_a_standby_copy_is_caught_up_when_it_applied_up_to_the_last_fetch_high_watermark(
    app: BatchingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    tp = TP("isin.current", 4)
    highs: dict[TP, int | None] = {tp: None}
    monkeypatch.setattr(app.consumer, "highwater", lambda t: highs[t])
    assert not standby_caught_up(app, tp)  # not a standby partition here
    app.tables.recovery.standby_tps.add(tp)
    try:
        assert not standby_caught_up(app, tp)  # no fetch yet
        highs[tp] = 0
        assert standby_caught_up(app, tp)  # an empty partition
        highs[tp] = 10
        assert not standby_caught_up(app, tp)  # nothing applied
        standby_applied(app, tp, 8)
        assert not standby_caught_up(app, tp)
        standby_applied(app, tp, 9)  # the last record, offset 9, of a partition whose next is 10
        assert standby_caught_up(app, tp)
    finally:
        app.tables.recovery.standby_tps.discard(tp)


def test_the_worker_context_is_a_typed_attribute_of_the_app(fresh: BatchingApp, tmp_path: Path) -> None:
    ctx = stream_context(fresh)
    assert fresh.isin is ctx and ctx.table.name == ctx.settings.table_name
    bare = on_own_loop(lambda: BatchingApp("bare", broker="kafka://127.0.0.1:1", datadir=str(tmp_path / "bare")))
    try:
        assert bare.isin is None
        with pytest.raises(RuntimeError, match="create_app"):
            stream_context(bare)
    finally:
        close(bare)


def test_the_installed_versions_are_the_exactly_pinned_ones() -> None:
    """The rewritten loop and the private members are those of exactly these releases."""
    from importlib.metadata import version

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = {"faust-streaming==0.15.3", "aiokafka==0.14.0"}
    assert pins <= set(pyproject["project"]["dependencies"]), "pyproject.toml must pin both exactly"
    assert (version("faust-streaming"), version("aiokafka")) == ("0.15.3", "0.14.0")


def test_the_table_opens_its_partitions_with_bounded_rocksdb_memory(fresh: BatchingApp) -> None:
    """Faust's defaults give every table partition a 2 GB block cache and three 64 MB memtables;
    the table's store is given the settings' instead, and opens a partition with them."""
    settings = stream_context(fresh).settings
    store = stream_context(fresh).table.data
    options = store.rocksdb_options
    assert options.block_cache_size == settings.table_block_cache_mb * 1024 * 1024 < 2 * 1024**3
    assert options.write_buffer_size == settings.table_write_buffer_mb * 1024 * 1024 < 64 * 1024 * 1024
    assert options.max_write_buffer_number == 2
    assert options.bloom_filter_size == settings.table_bloom_bits == 10  # Faust's default is 3
    db = partition_db(store, 0)  # opened with those options: a put and a get work
    db[b"k"] = b"v"
    assert db[b"k"] == b"v"


def test_every_assignment_drops_the_dedup_loops_table_digests(
    fresh: BatchingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's recovery, standby copies and other workers write the table's stores outside the
    dedup loop: the app's partitions-assigned signal must drop every digest the loop holds."""
    from stream_app import feed_process
    from stream_app.digest import PartitionDigest

    started: list[str] = []
    monkeypatch.setattr(feed_process.FeedProcess, "start", lambda self: started.append("start"))
    monkeypatch.setattr(feed_process.FeedProcess, "assign", lambda self, partitions: started.append("assign"))
    digests = stream_context(fresh).dedup._digests
    digests._held[0] = PartitionDigest()  # type: ignore[index]  # as after the first batch of partition 0
    assert digests.get(0) is not None
    fresh.loop.run_until_complete(fresh.on_partitions_assigned.send(assigned=set()))
    assert digests.get(0) is None
    assert started == ["assign", "start"]  # the signal's handler ran through
