"""The dedup loop: raw ISIN events in, only new, changed and removed ISINs out.

For each batch of one raw-topic partition, in offset order:

1. an event whose ``content_hash`` (its first field, read without decoding) is already
   among the stored record's ``listing_hashes`` (its first field) is unchanged: nothing is
   written;
2. otherwise the event is decoded and merged into the record, which is sent to the
   current-records topic (the table's changelog) and kept in a pending overlay;
3. at the end of the batch, or before an end-of-run marker, the output is flushed and then
   the pending records, the changelog offset and the run's seen ISINs are written to RocksDB;
4. an end-of-run marker sweeps the partition: every record listed by the marker's source but
   not seen in that run loses that listing, and is deleted (tombstone) if no source is left.

Crash safety: the table is written only after the output was acknowledged, in one RocksDB
write batch with the changelog offset, and Faust commits the raw offsets only after the
batch handler returned. A crash anywhere replays from the last committed raw offset against
a table that never runs ahead of the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from core.failpoints import failpoint
from schemas import CURRENT_RECORD, DEAD_LETTER, END_OF_RUN, ISIN_EVENT, LISTING_CHANGE, Serde, SerializationError
from schemas.fastrecords import EventReader, fast_encoder
from stream_app.changes import backfill_changes, listing_changes
from stream_app.dedup_io import UNCHANGED, DedupStats, Output, Parsed, Reindex, read_segment, unswept
from stream_app.digest import Digests
from stream_app.fresh import FreshIsin
from stream_app.golden import Golden
from stream_app.records import listing_hashes, merge_event, remove_source
from stream_app.seen import SeenIndex
from stream_app.store import TableStore

logger = logging.getLogger(__name__)

SWEEP_YIELD_EVERY = 20_000
YIELD_EVERY = 2_000
"""Events of a batch between two yields to the event loop (a fetch holds up to MAX_POLL_RECORDS)."""


class Dedup:
    def __init__(
        self,
        serde: Serde,
        store: TableStore,
        output: Output,
        seen: SeenIndex,
        reindex: Reindex,
        current_topic: str,
        dlq_topic: str | None = None,
        changes_topic: str | None = None,
        clock: Callable[[], float] = time.time,
        changes_empty: Callable[[int], Awaitable[bool]] | None = None,
        golden: Golden | None = None,
        digest: bool = True,
    ) -> None:
        self._serde = serde
        self._store = store
        self._output = output
        self._seen = seen
        self._reindex = reindex
        self._encode = fast_encoder(serde, current_topic, CURRENT_RECORD)
        self._read_event = EventReader(serde)
        self._fresh = FreshIsin(serde, output, current_topic, changes_topic or None, golden, clock)
        self._encode_dead = serde.encoder(dlq_topic, DEAD_LETTER) if dlq_topic else None
        self._encode_change = fast_encoder(serde, changes_topic, LISTING_CHANGE) if changes_topic else None
        self._clock = clock
        self._changes_empty = changes_empty
        self._backfill_checked: set[int] = set()
        self._golden = golden
        self._golden_checked: set[int] = set()
        self.stats = DedupStats()
        self._batch = DedupStats()
        self._dead_pending = False
        self._digests = Digests(store, digest, SWEEP_YIELD_EVERY)
        self._apply = self._digests.apply  # every write of the store, so that the digests follow it
        self.net_keys: dict[int, int] = {}
        """Keys added minus keys deleted per partition, as committed to the store: with one count
        of the store, this keeps the table's size exact without walking it again."""

    async def process(self, partition: int, records: Sequence[Any]) -> None:
        """Apply one batch of raw records (aiokafka ConsumerRecords) of one partition."""
        if not records:
            return
        if not self.stats.first_event_at:
            self.stats.first_event_at = time.time()
        if self._changes_empty is not None and partition not in self._backfill_checked:
            await self._backfill(partition)
        if self._golden is not None and partition not in self._golden_checked:
            await self._regolden(partition)
        await self._digests.of(partition)  # built here if it is not: held from this batch on
        applied = self._seen.begin_batch(partition, records[0].offset)
        if applied >= 0:  # delivered again: the table holds these already (see stream_app/seen.py)
            again = sum(1 for r in records if r.offset <= applied)
            self.stats.redelivered += again
            records = records[again:]
            if not records:
                return
        pending: dict[bytes, bytes | None] = {}
        seen_runs: dict[bytes, list[bytes]] = {}
        stats = self._batch = DedupStats()
        read = self._store.reader(partition)
        olds: dict[bytes, bytes | None] | None = None  # the stored records of the segment's keys (see below)
        parsed: Parsed = []
        segment_start = 0
        send = self._output.send
        decode = self._serde.decode
        encode = self._encode
        fresh = self._fresh
        read_event = self._read_event
        for index, rec in enumerate(records):
            key = rec.key
            value = rec.value
            if value is None:
                continue
            if key is None:
                await self._commit(partition, pending, seen_runs, rec.offset - 1)
                self._committed(partition, stats)
                pending, seen_runs = {}, {}
                await self._end_of_run(partition, value, rec.offset)
                read = self._store.reader(partition)  # after the awaits: the store as it is now
                olds = None
                continue
            if olds is None:  # a key left out: the digest knows its every event of the segment unchanged
                held = self._digests.get(partition)  # None if off, or forgotten since (a rebalance)
                olds, parsed = read_segment(read, held, records, index)
                segment_start = index
            stats.events += 1
            if not stats.events % YIELD_EVERY:
                await asyncio.sleep(0)  # a large batch: queries and heartbeats go on meanwhile
            item = parsed[index - segment_start]  # IsinEvent's content_hash and run_id
            if item is None:
                self._reject(partition, rec.offset, "not an IsinEvent in a known wire format", value)
                continue
            digest, run = item
            keys = seen_runs.get(run)
            if keys is None:
                keys = seen_runs[run] = []
            keys.append(key)
            old = pending[key] if key in pending else olds.get(key, UNCHANGED)
            if old is UNCHANGED:
                stats.unchanged += 1
                continue
            if old is not None and digest in listing_hashes(old):
                stats.unchanged += 1
                continue
            if old is None:  # a new ISIN: its writes joined from the event's bytes (stream_app/fresh.py)
                written = fresh(partition, key, value)  # None: not cut exactly; the general path below
                if written is not None:
                    pending[key] = written
                    stats.new += 1
                    continue
            event = read_event(value)  # None: not read by hand; the serde decodes or rejects it
            if event is None:
                try:
                    decoded = decode(value)
                except SerializationError as exc:
                    self._reject(partition, rec.offset, str(exc), value)
                    continue
                if decoded.schema is not ISIN_EVENT:
                    self._reject(partition, rec.offset, f"a keyed {decoded.schema.name} is not an ISIN event", value)
                    continue
                event = decoded.record
            if event["isin"].encode() != key:
                self._reject(partition, rec.offset, f"key {key!r} is not the event's ISIN {event['isin']}", value)
                continue
            old_record = decode(old).record if old is not None else None
            merged = merge_event(old_record, event)
            if self._golden is not None:
                self._golden.apply(merged)
                self._index(key, old_record, merged)
            new_value = encode(merged)
            pending[key] = new_value
            send(partition, key, new_value)
            if self._encode_change is not None:
                slot = event.get("slot")
                slot = event["published_at"] if slot is None else slot
                self._changes(partition, key, old_record, merged, event["run_id"], slot)
            if old is None:
                stats.new += 1
            else:
                stats.changed += 1
        await self._commit(partition, pending, seen_runs, records[-1].offset)
        self._committed(partition, stats)
        self.stats.last_event_at = time.time()

    def _swept_by_reads(self) -> None:
        self.stats.sweeps_read += 1

    def forget_digests(self) -> None:
        """Something other than this loop may have written the store (a rebalance: Faust's
        recovery, a standby's writes, another worker's changes): each digest is built again."""
        self._digests.forget()

    def _changes(self, partition: int, key: bytes, before: Any, after: Any, run_id: str, slot: datetime | int) -> None:
        """The listing changes from ``before`` to ``after``, sent with the record (same flush)."""
        assert self._encode_change is not None
        at = int(self._clock() * 1000)
        slot_ms = int(slot.timestamp() * 1000) if isinstance(slot, datetime) else int(slot)
        for change in listing_changes(key.decode(), before, after, run_id, slot_ms, at):
            self._output.change(partition, key, self._encode_change(change))

    def _index(self, key: bytes, before: Any, after: Any) -> None:
        """The identifier index's records for a change of ``key``, sent with the record."""
        assert self._golden is not None
        for index_partition, index_key, value in self._golden.index_changes(key.decode(), before, after):
            self._output.index(index_partition, index_key, value)

    async def _regolden(self, partition: int) -> None:
        """The first time this worker meets a table partition under a golden configuration
        other than the one its records were built with (a table that predates the golden view,
        a changed sources file, a new state directory): every record whose golden view differs
        is built again and sent, with its identifier-index changes, in flushed chunks. Before
        the partition was ever built here, every record's identifiers are (re)indexed: puts of
        what the index may hold already change nothing."""
        golden = self._golden
        assert golden is not None
        self._golden_checked.add(partition)
        known = self._seen.golden_fingerprint(partition)
        if known == golden.fingerprint:
            return
        at = int(self._clock() * 1000)
        pending: dict[bytes, bytes | None] = {}
        rebuilt = 0
        for scanned, (key, value) in enumerate(self._store.items(partition), start=1):
            if not scanned % SWEEP_YIELD_EVERY:
                await asyncio.sleep(0)  # a large partition: the loop keeps heartbeats and queries going
            record = self._serde.decode(value).record
            rebuilt_record = golden.apply({**record, "listings": [dict(item) for item in record["listings"]]})
            assert rebuilt_record is not None
            if self._encode(rebuilt_record) != value:
                rebuilt_record["change"], rebuilt_record["updated_at"] = "CHANGED", at
                pending[key] = self._encode(rebuilt_record)
                self._output.send(partition, key, pending[key])
                self._index(key, None if known is None else record, rebuilt_record)
                rebuilt += 1
            elif known is None:
                self._index(key, None, record)
            if len(pending) >= SWEEP_YIELD_EVERY:
                offsets = await self._output.flush()
                self._apply(partition, pending, offsets.get(partition))
                pending = {}
        offsets = await self._output.flush()
        self._apply(partition, pending, offsets.get(partition))
        self._seen.mark_golden(partition, golden.fingerprint)
        if rebuilt or known is not None:
            logger.info(
                "partition %d: %d records rebuilt under golden configuration %s", partition, rebuilt, golden.fingerprint
            )

    async def _backfill(self, partition: int) -> None:
        """The first time a worker with a change topic meets a table partition that predates it:
        one backfilled ``LISTED`` per current listing, dated at its ``first_seen_at``, so that the
        history is complete for the present. Checked once per partition (the seen index keeps the
        answer); a change topic that already has records there needs none."""
        assert self._changes_empty is not None and self._encode_change is not None
        self._backfill_checked.add(partition)
        if self._seen.backfilled(partition):
            return
        written = 0
        if await self._changes_empty(partition):
            at = int(self._clock() * 1000)
            for key, value in self._store.items(partition):
                for change in backfill_changes(self._serde.decode(value).record, at):
                    self._output.change(partition, key, self._encode_change(change))
                    written += 1
                if written and not written % SWEEP_YIELD_EVERY:
                    await self._output.flush()
            if written:
                await self._output.flush()
                logger.info("partition %d: %d listings backfilled to the change topic", partition, written)
        self._seen.mark_backfilled(partition)

    def _committed(self, partition: int, batch: DedupStats) -> None:
        """Count a batch the store now holds (no await between the store write and this)."""
        self.net_keys[partition] = self.net_keys.get(partition, 0) + batch.new
        self.stats.add_batch(batch)

    def _reject(self, partition: int, offset: int, reason: str, raw: bytes = b"") -> None:
        """A raw record that cannot be processed: counted, logged, and dead-lettered with the reason."""
        self._batch.rejected += 1
        logger.error("skipping raw record at partition %d offset %d: %s", partition, offset, reason)
        if self._encode_dead is not None:
            record = {
                "source": "stream-app",
                "run_id": "",
                "line": offset,
                "raw": f"partition {partition} offset {offset}: {raw[:200].hex()}",
                "reason": reason,
                "error": "MALFORMED_ROW",
                "recorded_at": int(time.time() * 1000),
            }
            self._output.dead_letter(f"raw/{partition}/{offset}".encode(), self._encode_dead(record))
            self._dead_pending = True

    async def _commit(
        self,
        partition: int,
        pending: dict[bytes, bytes | None],
        seen_runs: dict[bytes, list[bytes]],
        last_offset: int,
    ) -> None:
        offsets = await self._output.flush() if pending or self._dead_pending else {}
        self._dead_pending = False
        if pending:
            failpoint("dedup.flushed")  # records and changes acknowledged, the table not yet written
        self._apply(partition, pending, offsets.get(partition))
        self._seen.record(partition, {run.decode(): keys for run, keys in seen_runs.items()}, last_offset)

    async def _end_of_run(self, partition: int, value: bytes, offset: int) -> None:
        try:
            await self._sweep_for_marker(partition, value, offset)
        finally:
            self.stats.markers += 1

    async def _sweep_for_marker(self, partition: int, value: bytes, offset: int) -> None:
        try:
            decoded = self._serde.decode(value)
        except SerializationError as exc:
            self._reject(partition, offset, str(exc))
            return
        if decoded.schema is not END_OF_RUN:
            self._reject(partition, offset, f"an unkeyed {decoded.schema.name} is not an end-of-run marker")
            return
        marker = decoded.record
        run_id: str = marker["run_id"]
        source: str = marker["source"]
        if marker["partition"] != partition:
            self._reject(partition, offset, f"end-of-run marker for partition {marker['partition']}")
            return
        first = int(marker["first_offset"])
        if first >= 0 and not self._seen.covers(partition, first):
            keys = await self._reindex(partition, run_id, first, offset)
            if keys is None:
                self.stats.sweeps_skipped += 1
                logger.error(
                    "run %s of %s: partition %d events from offset %d are no longer complete in the raw "
                    "topic; no deletes for this run in this partition",
                    run_id,
                    source,
                    partition,
                    first,
                )
                return
            self._seen.add(partition, run_id, keys)
            self.stats.reindexed_runs += 1
        kept = marker.get("kept") or []
        if kept:
            # ISINs in rows the producer could not read: a bad row never deletes its ISIN.
            self._seen.add(partition, run_id, sorted(k.encode() for k in kept))
        finished = marker["finished_at"]
        at_ms = int(finished.timestamp() * 1000) if hasattr(finished, "timestamp") else int(finished)
        slot = marker.get("slot")
        slot_ms = None if slot is None else (int(slot.timestamp() * 1000) if hasattr(slot, "timestamp") else int(slot))
        listed = int(marker["events"]) + len(kept)  # at most the run's keys here
        deleted = await self._sweep(partition, run_id, source, at_ms, slot_ms, listed)
        self._seen.finish(partition, run_id, offset)
        self.stats.sweeps += 1
        logger.info(
            "run %s of %s: partition %d swept, %d listings removed (%d events in the run)",
            run_id,
            source,
            partition,
            deleted,
            marker["events"],
        )

    async def _sweep(
        self,
        partition: int,
        run_id: str,
        source: str,
        at_ms: int,
        slot_ms: int | None = None,
        listed: int | None = None,
    ) -> int:
        """Remove ``source`` from records of ``partition`` it listed but ``run_id`` did not."""
        slot_ms = at_ms if slot_ms is None else slot_ms
        src = source.encode()
        changes: dict[bytes, bytes | None] = {}
        digest = self._digests.get(partition)
        seen = partial(self._seen.keys, partition, run_id)
        pairs = unswept(self._store, digest, partition, seen, SWEEP_YIELD_EVERY, listed, self._swept_by_reads)
        async for key, value in pairs:
            if src not in value:
                continue
            record = self._serde.decode(value).record
            if not any(item["source"] == source for item in record["listings"]):
                continue
            remaining = remove_source(record, source, at_ms)
            if self._golden is not None:
                self._golden.apply(remaining)
                self._index(key, record, remaining)
            changes[key] = None if remaining is None else self._encode(remaining)
            if self._encode_change is not None:
                self._changes(partition, key, record, remaining, run_id, slot_ms)
        if not changes:
            return 0
        for key, new in changes.items():
            self._output.send(partition, key, new)
        offsets = await self._output.flush()
        self._apply(partition, changes, offsets.get(partition))
        removed = sum(1 for v in changes.values() if v is None)
        self.stats.deleted += removed
        self.net_keys[partition] = self.net_keys.get(partition, 0) - removed
        self.stats.changed += len(changes) - removed
        return len(changes)
