"""Where the stream app relies on Faust's and aiokafka's internals: only here, and pinned by tests.

Faust's per-event machinery, not Kafka, is the ceiling of a worker (see the README's
Performance section), so the worker's consumer hands the raw topic's records to the dedup loop
a fetch at a time (``BatchingConsumer``), writes the table's RocksDB directly
(``partition_db``), and checks end offsets against a fetch. Each private member used says
below what it relies on; ``tests/unit/test_faust_contract.py`` checks that the installed
Faust and aiokafka still have it (it exists, its signature, the behaviour relied on), so that
an upgrade fails a test rather than a production run. Faust is pinned below 0.16: 0.15.3 is
the newest release, and it passes those tests.

What the batching consumer keeps from Faust: group membership, Faust's partition assignor
(which co-partitions the raw topic with the table's changelog), table recovery and standbys,
offset commits, rebalance flow control and the web server. What it changes: records of the
topics registered in ``app.batch_handlers`` are handed, as fetched, one list per partition, to
an async handler; offsets are committed through Faust's commit loop, only up to what a handler
has returned from. Every other topic (Faust's own, the changelog during recovery) goes through
Faust's usual path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import faust
from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
from faust.assignor.partition_assignor import PartitionAssignor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from core.kafka.offsets import verified_end_offsets

logger = logging.getLogger(__name__)


def forbid_auto_create_topics() -> None:
    """Make every aiokafka metadata request say ``allow_auto_topic_creation=false``.

    Relies on: ``aiokafka.client`` building its requests with the module-level name
    ``MetadataRequest`` (``MetadataRequest(topics)``, client.py), whose ``build()`` sends True
    when the flag is not given. aiokafka 0.14 has no setting for it, and Faust none either, so
    without this a worker that meets a missing topic (an embedded broker restarted empty)
    would create it with the broker's default partition count and no configs.
    """
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest

    current = aiokafka.client.MetadataRequest
    if isinstance(current, functools.partial):
        return
    aiokafka.client.MetadataRequest = functools.partial(  # type: ignore[misc]
        MetadataRequest, allow_auto_topic_creation=False
    )


def table_offsets(table: Any, partitions: list[int]) -> dict[int, int]:
    """The changelog offset each local table partition has applied, read from its RocksDB.

    Relies on: ``faust.stores.rocksdb.Store.partition_path(partition)`` and ``offset_key``
    (the key under which Faust, and our dedup loop, keep the changelog offset of a partition).
    """
    from rocksdict import AccessType, Options, Rdict

    store = table.data
    out: dict[int, int] = {}
    for partition in partitions:
        path = Path(store.partition_path(partition))
        if not path.exists():
            continue
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            raw = db.get(store.offset_key)
        finally:
            db.close()
        if raw is not None:
            out[partition] = int(raw)
    return out


def standby_progress(app: Any, tp: TP) -> tuple[bool, int | None]:
    """(whether ``tp`` is a standby partition of this worker, the last changelog offset applied).

    Relies on: Faust's Recovery keeping ``standby_tps`` (the standby changelog partitions) and
    ``standby_offsets`` (the last offset applied to each, which its rebalance seeks from and its
    progress counts against).
    """
    recovery = app.tables.recovery
    if tp not in recovery.standby_tps:
        return False, None
    seen = recovery.standby_offsets.get(tp)
    return True, None if seen is None or seen < 0 else int(seen)


def standby_caught_up(app: Any, tp: TP) -> bool:
    """Whether this worker keeps a standby copy of ``tp`` that has applied every record up to the
    high watermark of its latest fetch of ``tp`` (so behind the owner by at most what was written
    since that fetch: one fetch wait, when the topic is quiet).

    Relies on: ``standby_progress`` above, and Faust's ``Consumer.highwater(tp)`` (aiokafka's
    high watermark from the last fetch response, None before the first).
    """
    is_standby, applied = standby_progress(app, tp)
    if not is_standby:
        return False
    high = app.consumer.highwater(tp)
    if high is None:
        return False
    return high <= 0 or (applied is not None and applied >= high - 1)


def standby_applied(app: Any, tp: TP, offset: int) -> None:
    """Tell Faust's Recovery that the standby copy of ``tp`` holds the changelog up to ``offset``."""
    app.tables.recovery.standby_offsets[tp] = offset


def partition_db(store: Any, partition: int) -> Any:
    """The RocksDB (a rocksdict ``Rdict``) of one partition of a Faust RocksDB store.

    Relies on: ``faust.stores.rocksdb.Store._db_for_partition(partition)``, which opens the
    partition's database on first use and caches it. The dedup loop reads and writes it a batch
    at a time, with the changelog offset under ``Store.offset_key``.
    """
    return store._db_for_partition(partition)


class RestartStickyAssignor(PartitionAssignor):
    """Faust's assignor, sticky across restarts: a worker gets back the partitions whose state it
    keeps on disk, instead of a fresh deal that moves half of them to a worker that must then
    restore them from the changelog before it serves (seconds for nothing; with a large table,
    minutes).

    Faust's assignor keeps what each member reports it holds (``ClientMetadata.assignment`` in
    the member's subscription), but a restarted member reports nothing, and one left alone for
    a while (the others restarting one at a time) reports everything. This one saves its
    assignment in the state directory on every rebalance of a group of two or more, and
    reports the saved share while it has no other (restarted) or holds everything alone: the
    cluster's assignor then gives each member back its share. A wiped state directory takes
    the file with it. Relies on: ``PartitionAssignor._metadata`` (the ClientMetadata that
    ``metadata()`` sends), ``_assignment``, ``changelog_distribution`` and ``on_assignment``.
    """

    FILE = "assignment.json"

    def __init__(self, app: Any, replicas: int = 0) -> None:
        super().__init__(app, replicas)
        self._saved_path = Path(app.conf.datadir) / self.FILE
        self._share: ClientAssignment | None = None  # the last share saved
        self._claiming = True  # restarted, or alone: report the share, not what it holds
        try:
            self._share = ClientAssignment.loads(self._saved_path.read_bytes())
        except FileNotFoundError:
            pass
        except Exception as exc:  # a damaged file costs stickiness, never a start
            logger.warning("ignoring the saved assignment %s: %s", self._saved_path, exc)

    @property
    def _metadata(self) -> ClientMetadata:
        metadata: ClientMetadata = super()._metadata
        if not self._claiming or self._share is None:
            return metadata
        return ClientMetadata(
            assignment=self._share,
            url=metadata.url,
            changelog_distribution=metadata.changelog_distribution,
            external_topic_distribution=metadata.external_topic_distribution,
            topic_groups=metadata.topic_groups,
        )

    def on_assignment(self, assignment: Any) -> None:
        super().on_assignment(assignment)
        self._claiming = len(self.changelog_distribution) < 2 and self._share is not None
        if self._claiming:
            return  # alone for now: keep claiming the share it had in the group
        self._share = self._assignment
        try:
            self._saved_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._saved_path.with_suffix(".tmp")
            tmp.write_bytes(self._share.dumps())
            tmp.replace(self._saved_path)
        except OSError as exc:
            logger.warning("could not save the assignment to %s: %s", self._saved_path, exc)


# -- the batching consumer -----------------------------------------------------------------

BatchHandler = Callable[[TP, list[Any]], Awaitable[None]]
StandbyHandler = Callable[[TP, list[Any]], Awaitable[bool]]
"""Applies a fetched batch of a changelog partition this worker keeps a standby copy of;
returns False to leave the batch to Faust (a partition that is not a standby one)."""


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust reads committed transactions only in its exactly-once mode; a producer run is one
    transaction, so the raw topic must be read ``read_committed`` (an aborted run is invisible)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        # Relies on: Faust's AIOKafkaConsumerThread._create_worker_consumer(transport) building the
        # AIOKafkaConsumer, and aiokafka reading its _isolation_level when the consumer starts
        # (Faust passes read_uncommitted outside its exactly-once mode, with no setting for it).
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        return consumer


class BatchingConsumer(faust_aiokafka.Consumer):
    # Faust's lifecycle lines keep Faust's logger names (quiet unless LOG_LEVEL=DEBUG).
    logger = logging.getLogger("faust.transport.consumer")
    _n_acked: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_next: dict[TP, int] = {}
        self._batch_lock: asyncio.Lock | None = None

    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        # Relies on: Faust's Consumer._new_consumer_thread() building its consumer thread.
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def _handlers(self) -> Mapping[str, BatchHandler]:
        return getattr(self.app, "batch_handlers", {})

    def _lock(self) -> asyncio.Lock:
        if self._batch_lock is None:
            self._batch_lock = asyncio.Lock()
        return self._batch_lock

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by integration tests
        # Relies on (Faust's Consumer): _drain_messages(fetcher) being the fetch loop it runs;
        # _wait_next_records(timeout) -> (records by TP, active partitions or None); the state
        # it keeps per partition: _read_offset (next offset to deliver), _acked (read by the
        # commit loop), _n_acked and _commit_every, _buffered_partitions; and a fetcher (a
        # mode.Service) whose _stopped event says it stopped. Our _drain_messages is Faust's
        # own, with the handler call for batch topics added.
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        handlers = self._handlers
        standby_handlers: Mapping[str, StandbyHandler] = getattr(self.app, "standby_handlers", {})
        commit_every = self._commit_every
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    # Faust's read offset is the lowest offset still to deliver (a seek sets it to
                    # the committed offset); records below it were delivered already.
                    r_offset = read_offset[tp]
                    if r_offset is not None:
                        batch = [r for r in batch if r.offset >= r_offset]
                    if not batch:
                        continue
                    standby = standby_handlers.get(tp.topic)
                    if standby is not None and await standby(tp, batch):
                        read_offset[tp] = batch[-1].offset  # as Faust's one-by-one path leaves it
                        continue
                    handler = handlers.get(tp.topic)
                    if handler is None:
                        await self._deliver_one_by_one(tp, batch)
                        continue
                    async with self._lock():
                        if not self.flow_active:
                            break
                        await handler(tp, batch)
                    last = batch[-1].offset
                    read_offset[tp] = last + 1
                    self._batch_next[tp] = last + 1
                    self._acked[tp]  # registers tp for Faust's commit loop
                    self._n_acked += len(batch)
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                logger.info("broker stopped consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            logger.exception("drain messages raised: %r", exc)
            raise

    async def _deliver_one_by_one(self, tp: TP, batch: list[Any]) -> None:
        """Faust's own per-message delivery, as in ``Consumer._drain_messages``.

        Relies on: Consumer._add_gap(tp, offset_from, offset_to) and _to_message(tp, record)."""
        callback = self.callback
        read_offset = self._read_offset
        generation = self.app.consumer_generation_id
        for record in batch:
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            offset = record.offset
            r_offset = read_offset[tp]
            if r_offset is not None and offset - r_offset > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, r_offset + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
            read_offset[tp] = offset

    def lag(self, topic: str) -> dict[int, int]:
        """Records of ``topic`` not yet handed to a handler, per assigned partition.

        High watermark from the last fetch (right on every broker) minus the fetch position,
        which, unlike the last processed offset, steps over transaction markers.
        """
        # Relies on: the consumer thread's _ensure_consumer() (the AIOKafkaConsumer), aiokafka's
        # consumer._subscription.subscription.assignment.state_value(tp) with .position and
        # .has_valid_position, and the public consumer.highwater(tp).
        out: dict[int, int] = {}
        try:
            consumer = self._thread._ensure_consumer()
            assignment = consumer._subscription.subscription.assignment
        except Exception:  # not started, or rebalancing: nothing to report
            return out
        for tp in list(self.assignment()):
            if tp.topic != topic:
                continue
            try:
                high = consumer.highwater(tp)
                state = assignment.state_value(tp)
                position = state.position if state is not None and state.has_valid_position else None
            except Exception:  # noqa: S112 - a partition being revoked: skip it
                continue
            if high is not None and position is not None:
                out[tp.partition] = max(0, int(high) - int(position))
        return out

    def _new_offset(self, tp: TP) -> int | None:
        # Relies on: Faust's commit loop asking _new_offset(tp) for the offset to commit of tp,
        # and committing it only if it is past the committed one (_should_commit). Kept, not
        # popped: a commit that fails (a rebalance) is tried again, not lost until the next batch.
        if tp.topic in self._handlers:
            return self._batch_next.get(tp)
        return super()._new_offset(tp)  # type: ignore[no-any-return]

    async def wait_empty(self) -> None:
        """Rebalance and shutdown wait here until the batch in flight is done."""
        async with self._lock():
            pass
        await super().wait_empty()

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        reported: Mapping[TP, int] = await super().highwaters(*partitions)
        conf = getattr(self.app, "end_offset_check_conf", None)
        if not conf or not reported:
            return reported
        loop = asyncio.get_running_loop()
        keyed = {(tp.topic, tp.partition): off for tp, off in reported.items() if off is not None}
        fixed = await loop.run_in_executor(None, verified_end_offsets, conf, keyed)
        return {tp: fixed.get((tp.topic, tp.partition), off) for tp, off in reported.items()}


class BatchingTransport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """faust.App whose consumer hands registered topics to batch handlers."""

    logger = logging.getLogger("faust.app.base")

    batch_handlers: dict[str, BatchHandler]
    standby_handlers: dict[str, StandbyHandler]
    end_offset_check_conf: dict[str, Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers = {}
        self.standby_handlers = {}

    def _new_transport(self) -> Any:
        # Relies on: faust.App._new_transport() building the transport, whose Consumer class
        # attribute is the consumer it creates.
        return BatchingTransport(self.conf.broker_consumer, self)

    def standby_topic(self, topic: Any, handler: StandbyHandler) -> None:
        """Hand the fetched batches of ``topic``'s standby partitions (a table's changelog) to
        ``handler`` instead of Faust's one-event-at-a-time standby path."""
        for name in topic.topics:
            self.standby_handlers[name] = handler

    def batch_topic(self, topic: Any, handler: BatchHandler) -> None:
        """Subscribe to ``topic`` (a faust Topic) and hand its records to ``handler`` in batches."""
        for name in topic.topics:
            self.batch_handlers[name] = handler
        self.topics.add(topic)
