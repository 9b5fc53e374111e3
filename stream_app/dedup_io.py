"""What the dedup loop (``stream_app/dedup.py``) works with: the output it writes to, the reindex
callback of a run whose seen ISINs were lost, its counters, and the chunked, prefetched read of a
segment's stored records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import asdict, dataclass
from typing import Any, Protocol


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


READ_CHUNK = 2_000
"""Keys of a segment read from the table in one multi-get on the reads thread."""


class SegmentReads:
    """The stored records of a segment's keys (its events, from one record up to the next
    end-of-run marker), read a chunk at a time on a thread of their own: while the loop works
    through one chunk's events, the next chunk's keys are read.

    RocksDB's multi-get releases the GIL. On day 2 and on a re-run every key is in the table,
    and a lookup costs about 4 µs here, a third of the loop's time; a core with room to spare
    now does it beside the loop. The table is not written while a segment is processed (the
    writes wait in the pending overlay until its commit), so every chunk reads the table as
    the segment's first read found it, as one multi-get of the whole segment did.

    ``close()`` waits for a read still in flight, so that none outlives its segment (the
    table's next write, or a revoked partition's database closed under it).
    """

    def __init__(self, executor: Executor, chunk: int | None = None) -> None:
        self._executor, self._chunk = executor, chunk or READ_CHUNK
        self._read: Callable[[list[bytes]], list[bytes | None]] | None = None
        self._chunks: list[tuple[int, list[bytes]]] = []  # (first record index not covered, keys)
        self._next = 0
        self._inflight: Future[dict[bytes, bytes | None]] | None = None

    def begin(self, read: Callable[[list[bytes]], list[bytes | None]], records: Sequence[Any], start: int) -> None:
        """A segment begins at ``records[start]``: plan its chunks and start reading the first."""
        self.close()
        chunks: list[tuple[int, list[bytes]]] = []
        keys: list[bytes] = []
        end = len(records)
        for index in range(start, len(records)):
            rec = records[index]
            if rec.value is None:
                continue
            if rec.key is None:
                end = index
                break
            keys.append(rec.key)
            if len(keys) >= self._chunk:
                chunks.append((index + 1, keys))
                keys = []
        if keys or not chunks:
            chunks.append((end, keys))
        self._read, self._chunks, self._next = read, chunks, 0
        self._inflight = self._submit()

    def _submit(self) -> Future[dict[bytes, bytes | None]] | None:
        if self._next >= len(self._chunks):
            return None
        assert self._read is not None
        return self._executor.submit(_read_into_dict, self._read, self._chunks[self._next][1])

    async def next(self) -> tuple[dict[bytes, bytes | None], int]:
        """The next chunk's stored records, and the index of the first record after the chunk;
        the chunk after it is read meanwhile."""
        inflight = self._inflight
        assert inflight is not None, "read past the segment"
        found = await asyncio.wrap_future(inflight)
        covered = self._chunks[self._next][0]
        self._next += 1
        self._inflight = self._submit()
        return found, covered

    def close(self) -> None:
        """Wait for the read in flight, if any (at most one chunk's)."""
        if self._inflight is not None:
            wait([self._inflight])
            self._inflight = None


def _read_into_dict(read: Callable[[list[bytes]], list[bytes | None]], keys: list[bytes]) -> dict[bytes, bytes | None]:
    return dict(zip(keys, read(keys), strict=True)) if keys else {}
