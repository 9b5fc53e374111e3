"""The batching consumer: records of the registered topics go to batch handlers, a fetch at a
time, read ``read_committed``; every other topic goes through Faust's usual path.

Faust's per-event machinery, not Kafka, is the ceiling of a worker (see docs/performance.md), so
the raw topic's records are handed to the dedup loop one fetched list per partition. Offsets are
committed through Faust's commit loop, only up to what a handler has returned from.

``BatchingConsumer._drain_messages`` is not a copy of Faust's: it is a rewrite of Faust 0.15.3's
``Consumer._drain_messages`` together with ``Consumer.getmany`` (which upstream's loop iterates),
and ``tests/unit/test_faust_contract.py`` pins the source of both, so that an upgrade that changes
either fails there and says to carry the change over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from core.kafka.offsets import verified_end_offsets

logger = logging.getLogger(__name__)


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
        # mode.Service) whose _stopped event says it stopped.
        # Rewritten from Faust's _drain_messages and getmany. Kept: the stop conditions, the
        # 1 s wait for a fetch, the active/buffered partition filter, the generation and flow
        # checks (per partition here, per record upstream), records below the read offset
        # dropped, commit_every, the three exception branches. Changed: records go a partition
        # at a time (upstream's getmany interleaves partitions record by record); a batch
        # topic's list goes to its handler under the lock wait_empty takes, a standby
        # changelog's to its standby handler; a fetch met with the flow stopped is dropped
        # without upstream's perform_seek (Faust's recovery, as it completes, seeks the stream
        # partitions to their committed offsets); no diag flags, no sleep(0) every 100
        # records; end offsets are tracked once a batch, for batch topics only.
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
        """Faust's per-message delivery, from ``Consumer._drain_messages``, for one partition's
        records at or above its read offset: gaps, commit_every, the callback raced against
        ``suspend_flow``, the read offset. Unlike upstream, a gap is added also after read
        offset 0 (upstream tests ``gap > 1 and r_offset``), and the end offset is not tracked.

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
        # Relies on: Faust's recovery asking ``highwaters`` for the changelog ends it checks the
        # persisted offsets against (and raising ConsistencyError if one is past its end).
        reported: Mapping[TP, int] = await super().highwaters(*partitions)
        conf = getattr(self.app, "end_offset_check_conf", None)
        check = getattr(self.app, "highwater_check", None)
        if not reported or not (conf or check):
            return reported
        loop = asyncio.get_running_loop()
        keyed = {(tp.topic, tp.partition): off for tp, off in reported.items() if off is not None}
        fixed = await loop.run_in_executor(None, verified_end_offsets, conf, keyed) if conf else keyed
        if check is not None:
            await loop.run_in_executor(None, check, fixed)  # may restart the process in place
        return {tp: fixed.get((tp.topic, tp.partition), off) for tp, off in reported.items()}
