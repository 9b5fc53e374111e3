"""The contract between stream_app/faust/ and the installed Faust and aiokafka.

Every private member the adapter uses is checked here: that it exists, its signature, and
where it can be shown without a broker, the behaviour the adapter relies on. An upgrade of
either library that changes one fails here, with the member's name, instead of in production.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiokafka
import aiokafka.client
import pytest
from aiokafka.protocol.metadata import MetadataRequest
from faust.stores import rocksdb as faust_rocksdb
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

from stream_app.faust import BatchingApp, BatchingConsumer, forbid_auto_create_topics, partition_db


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A worker's Faust app, built from settings, never started: no network."""
    from stream_app.app import create_app
    from stream_app.settings import StreamSettings

    built = create_app(StreamSettings(state_dir=tmp_path_factory.mktemp("state")), check_state=False)
    yield built
    built.loop.close()  # the loop Faust made for the app, with its self-pipe sockets


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


@pytest.mark.parametrize(
    ("owner", "member", "expected"),
    [
        (faust_consumer.Consumer, "_wait_next_records", ["self", "timeout"]),
        (faust_consumer.Consumer, "_add_gap", ["self", "tp", "offset_from", "offset_to"]),
        (faust_consumer.Consumer, "_to_message", ["self", "tp", "record"]),
        (faust_consumer.Consumer, "_new_offset", ["self", "tp"]),
        (faust_consumer.Consumer, "_drain_messages", ["self", "fetcher"]),
        (faust_consumer.Consumer, "wait_empty", ["self"]),
        (faust_aiokafka.Consumer, "_new_consumer_thread", ["self"]),
        (faust_aiokafka.Consumer, "highwaters", ["self", "partitions"]),
        (faust_aiokafka.Consumer, "highwater", ["self", "tp"]),
        (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"]),
        (faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer", ["self"]),
        (faust_rocksdb.Store, "_db_for_partition", ["self", "partition"]),
        (faust_rocksdb.Store, "partition_path", ["self", "partition"]),
        (aiokafka.AIOKafkaConsumer, "highwater", ["self", "partition"]),
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
    assert "self._new_transport()" in inspect.getsource(BatchingApp.__mro__[1])


def test_the_consumer_state_the_drain_loop_uses(app: Any) -> None:
    consumer = app.consumer  # built, not started: no network
    assert isinstance(consumer, BatchingConsumer)
    for attr in ("_read_offset", "_acked", "_n_acked", "_commit_every", "_buffered_partitions", "suspend_flow"):
        assert hasattr(consumer, attr), f"Faust's Consumer has no {attr}"
    assert hasattr(consumer, "flow_active") and hasattr(consumer, "consumer_stopped_errors")
    # the fetcher is a mode.Service, like the consumer: both stop through their _stopped event
    assert isinstance(consumer, Service) and hasattr(consumer._stopped, "is_set"), "mode.Service lost _stopped"
    consumer._thread.thread_loop.close()  # the consumer thread's own loop, made with it


def test_aiokafka_reads_the_isolation_level_and_keeps_the_subscription_state() -> None:
    async def build() -> tuple[str, Any]:
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", isolation_level="read_committed")
        try:
            return consumer._isolation_level, type(consumer._subscription)
        finally:
            await consumer.stop()

    isolation, subscription = asyncio.run(build())
    assert isolation == "read_committed"
    assert hasattr(subscription, "subscription")
    from aiokafka.consumer.subscription_state import Assignment, TopicPartitionState

    assert hasattr(Assignment, "state_value") and params(Assignment.state_value) == ["self", "tp"]
    assert {"position", "has_valid_position"} <= set(dir(TopicPartitionState))
    assert "self._isolation_level" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_metadata_requests_never_ask_for_topic_creation() -> None:
    forbid_auto_create_topics()
    forbid_auto_create_topics()  # idempotent
    request = aiokafka.client.MetadataRequest(["missing-topic"])
    built = request.build(MetadataRequest.ALL_TYPES[5] if hasattr(MetadataRequest, "ALL_TYPES") else _v5())
    assert built.allow_auto_topic_creation is False
    # aiokafka's client builds its requests through the module-level name we replace
    assert "MetadataRequest(" in inspect.getsource(aiokafka.client.AIOKafkaClient._metadata_update)


def _v5() -> Any:
    from aiokafka.protocol.metadata import MetadataRequest_v5

    return MetadataRequest_v5


def test_our_direct_writes_are_what_faust_reads_as_the_persisted_offset(app: Any) -> None:
    from faust.types import TP

    from stream_app.store import FaustTableStore

    table = app.isin.table  # type: ignore[attr-defined]
    store = FaustTableStore(table)
    store.apply(3, {b"US0378331005": b"value"}, changelog_offset=41)
    assert table.data.persisted_offset(TP(app.isin.settings.topic_current, 3)) == 41  # type: ignore[attr-defined]
    assert partition_db(table.data, 3).get(b"US0378331005") == b"value"
    assert Path(table.data.partition_path(3)).exists()


def test_the_recovery_state_the_standby_path_updates(app: Any) -> None:
    from faust.tables.recovery import Recovery
    from faust.types import TP

    from stream_app.faust import standby_applied, standby_progress

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


def test_a_restarted_worker_claims_the_partitions_it_saved_and_a_lone_one_saves_nothing(
    tmp_path: Path,
) -> None:
    """RestartStickyAssignor: what it reports before its first assignment, and what it saves."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
    from faust.assignor.partition_assignor import PartitionAssignor

    from stream_app.app import create_app
    from stream_app.faust import RestartStickyAssignor
    from stream_app.settings import StreamSettings

    assert isinstance(inspect.getattr_static(PartitionAssignor, "_metadata"), property)
    assert "self._metadata.dumps()" in inspect.getsource(PartitionAssignor.metadata)
    saved = ClientAssignment(actives={"isin.events": [1, 3]}, standbys={"isin.current": [0, 2]})
    (tmp_path / RestartStickyAssignor.FILE).write_bytes(saved.dumps())
    app = create_app(StreamSettings(state_dir=tmp_path), check_state=False)
    try:
        assignor = app.assignor
        assert isinstance(assignor, RestartStickyAssignor)
        assert assignor._metadata.assignment.actives == {"isin.events": [1, 3]}
        url = str(app.conf.canonical_url)

        def deliver(actives: dict[str, list[int]], hosts: list[str]) -> None:
            mine = ClientAssignment(actives=actives, standbys={})
            metadata = ClientMetadata(
                assignment=mine,
                url=url,
                changelog_distribution={h: {} for h in hosts},
                external_topic_distribution={},
                topic_groups={},
            )
            protocol = sorted(mine.kafka_protocol_assignment(app.tables))
            assignor.on_assignment(ConsumerProtocolMemberAssignment(0, protocol, assignor._compress(metadata.dumps())))

        # left alone (the other worker restarting): it takes everything, but claims its share
        deliver({"isin.events": [0, 1, 2, 3]}, [url])
        assert ClientAssignment.loads((tmp_path / RestartStickyAssignor.FILE).read_bytes()).actives == saved.actives
        assert assignor._metadata.assignment.actives == saved.actives
        # in a group of two it saves its share, and reports what it has
        deliver({"isin.events": [0, 2]}, [url, "http://other:6066"])
        assert ClientAssignment.loads((tmp_path / RestartStickyAssignor.FILE).read_bytes()).actives == {
            "isin.events": [0, 2]
        }
        assert assignor._metadata.assignment.actives == {"isin.events": [0, 2]}
        deliver({"isin.events": [0, 1, 2, 3]}, [url])
        assert assignor._metadata.assignment.actives == {"isin.events": [0, 2]}
    finally:
        app.loop.close()


def test_a_damaged_saved_assignment_costs_stickiness_not_a_start(tmp_path: Path) -> None:
    from stream_app.app import create_app
    from stream_app.faust import RestartStickyAssignor
    from stream_app.settings import StreamSettings

    (tmp_path / RestartStickyAssignor.FILE).write_bytes(b"{not json")
    app = create_app(StreamSettings(state_dir=tmp_path), check_state=False)
    try:
        assert app.assignor._metadata.assignment.actives == {}
    finally:
        app.loop.close()


def test_a_standby_copy_is_caught_up_when_it_applied_up_to_the_last_fetch_high_watermark(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faust.types import TP

    from stream_app.faust import standby_applied, standby_caught_up

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


# The fetch loop of Faust's Consumer, as installed, hashed: stream_app/faust/consumer.py's
# BatchingConsumer._drain_messages is a copy of it with the batch handlers added. An upgrade that
# changes upstream's loop fails here: compare the two, carry the change over, then re-pin.
DRAIN_MESSAGES_SHA256 = "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68"


def test_the_copied_fetch_loop_is_a_copy_of_the_installed_one() -> None:
    import hashlib
    import inspect
    import textwrap

    from faust.transport.consumer import Consumer

    upstream = textwrap.dedent(inspect.getsource(Consumer._drain_messages))
    assert hashlib.sha256(upstream.encode()).hexdigest() == DRAIN_MESSAGES_SHA256, (
        "faust's Consumer._drain_messages changed: carry the change into BatchingConsumer._drain_messages, "
        "then pin the new digest"
    )
    ours = inspect.getsource(BatchingConsumer._drain_messages)
    # the state upstream's loop keeps, ours keeps too
    for member in ("_read_offset", "_n_acked", "_commit_every", "commit", "consumer_stopped_errors", "should_stop"):
        assert f"self.{member}" in upstream and f"self.{member}" in ours, member
    # upstream fetches through getmany, which waits in _wait_next_records: ours calls that directly
    assert "_wait_next_records" in inspect.getsource(Consumer.getmany) and "self._wait_next_records" in ours


def test_the_installed_versions_are_the_pinned_ones() -> None:
    """The copied loop and the private members are those of exactly these releases (pyproject)."""
    from importlib.metadata import version

    assert (version("faust-streaming"), version("aiokafka")) == ("0.15.3", "0.14.0")
