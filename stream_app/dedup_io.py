"""What the dedup loop (``stream_app/dedup.py``) works with: the output it writes to, the reindex
callback of a run whose seen ISINs were lost, its counters, the batched read of a segment's
stored records, and the records an end-of-run sweep looks at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from schemas import SerializationError
from schemas.fastpath import hash_and_run
from stream_app.digest import ABSENT, READ, PartitionDigest
from stream_app.store import TableStore


class Output(Protocol):
    def send(self, partition: int, key: bytes, value: bytes | None) -> None: ...

    def change(self, partition: int, key: bytes, value: bytes) -> None: ...

    def index(self, partition: int, key: bytes, value: bytes | None) -> None: ...

    def dead_letter(self, key: bytes | None, value: bytes) -> None: ...

    async def flush(self) -> dict[int, int]: ...


Reindex = Callable[[int, str, int, int], Awaitable[Iterable[bytes] | None]]
"""(partition, run id, first offset, end offset) -> the run's keys in that range, or None if
the range is no longer complete in the raw topic."""


@dataclass
class DedupStats:
    events: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    markers: int = 0
    sweeps: int = 0
    sweeps_skipped: int = 0
    sweeps_read: int = 0  # sweeps that read only the records of keys their run lacked (``unswept``)
    reindexed_runs: int = 0
    redelivered: int = 0  # records delivered again that the table held already: skipped
    first_event_at: float = 0.0  # wall-clock time this worker began its first batch
    last_event_at: float = 0.0  # ... and committed its latest one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_batch(self, batch: DedupStats) -> None:
        """Count a batch once it is committed, so the counters never run ahead of the table."""
        self.events += batch.events
        self.new += batch.new
        self.changed += batch.changed
        self.unchanged += batch.unchanged
        self.rejected += batch.rejected
        batch.events = batch.new = batch.changed = batch.unchanged = batch.rejected = 0


Parsed = list[list[bytes] | None]
"""Per record of a segment: its IsinEvent's content hash and run id, or None (no value, or not
readable as an IsinEvent: the loop rejects it)."""

UNCHANGED = b"\x00unchanged"
"""Left out of ``read_segment``'s stored records where the digest knows every event of the key
in the segment unchanged (``olds.get(key, UNCHANGED)``, compared by identity)."""


def read_segment(
    read: Callable[[list[bytes]], list[bytes | None]],
    digest: PartitionDigest | None,
    records: Sequence[Any],
    start: int,
) -> tuple[dict[bytes, bytes | None], Parsed]:
    """The events from ``start`` up to the next end-of-run marker, each read once (content hash,
    run id: ``hash_and_run``), and the stored records of their keys, in one multi-get: one call into RocksDB for a
    fetch's worth of keys, not one per event.

    With the partition's ``digest`` it is asked first: a key absent from the partition is None
    without a read, a key whose every event here carries a content hash its record holds is left
    out, and only the rest are read."""
    keys: list[bytes] = []
    hashes: list[bytes] = []
    parsed: Parsed = []
    for rec in records[start:]:
        value = rec.value
        if value is None:
            parsed.append(None)
            continue
        if rec.key is None:
            break
        try:
            item = hash_and_run(value)
        except (IndexError, SerializationError):
            parsed.append(None)
            continue
        parsed.append(item)
        keys.append(rec.key)
        hashes.append(item[0])
    if digest is None:
        return dict(zip(keys, read(keys), strict=True)), parsed
    out: dict[bytes, bytes | None] = {}
    wanted: set[bytes] = set()
    for key, verdict in zip(keys, digest.classify(keys, hashes), strict=True):
        if verdict == READ:
            wanted.add(key)
        elif verdict == ABSENT:
            out[key] = None
    if wanted:
        ordered = list(wanted)
        out.update(zip(ordered, read(ordered), strict=True))
    return out, parsed


SWEEP_READS_AT_MOST = 0.25
"""The share of a partition's keys up to which a sweep reads the records of its run's missing keys
by key (a multi-get a chunk) instead of walking the partition: a point read costs a few times a
step of the walk."""


async def unswept(
    store: TableStore,
    digest: PartitionDigest | None,
    partition: int,
    seen: Callable[[], Iterator[bytes]],
    yield_every: int,
    listed: int | None = None,
    on_reads: Callable[[], None] = lambda: None,
) -> AsyncIterator[tuple[bytes, bytes]]:
    """The partition's records whose keys the run lacks (``seen()``: the run's keys in byte
    order, a key possibly more than once), in key order, yielding to the event loop every
    ``yield_every`` records or keys looked at.

    With the partition's digest (which holds its every key) and few such keys, only their records
    are read (``on_reads`` is told); else the partition is walked beside the run's keys. ``listed``,
    an upper bound on the run's keys here (its events and kept ISINs), lets a run that lacks more
    than a quarter of the partition go to the walk without asking the digest."""
    if digest is not None:
        held = digest.keys_held()
        if listed is None or held - listed <= held * SWEEP_READS_AT_MOST:
            keys = await digest.unseen(seen(), yield_every)
            if len(keys) <= held * SWEEP_READS_AT_MOST:
                on_reads()
                read = store.reader(partition)
                for start in range(0, len(keys), yield_every):
                    chunk = keys[start : start + yield_every]
                    for key, value in zip(chunk, read(chunk), strict=True):
                        if value is not None:
                            yield key, value
                    await asyncio.sleep(0)
                return
    keys_seen = seen()
    next_seen = next(keys_seen, None)
    for scanned, (key, value) in enumerate(store.items(partition), start=1):
        if not scanned % yield_every:
            await asyncio.sleep(0)
        while next_seen is not None and next_seen < key:
            next_seen = next(keys_seen, None)
        if next_seen != key:
            yield key, value
