"""Which ISINs each run delivered to each partition: the input of the end-of-run sweep.

A local RocksDB (not changelogged) next to the table. For every batch the dedup loop
records the batch's ISINs of each run as one sorted chunk under ``(partition, run id, last
offset)``: one write per batch, not one per event. At the run's end-of-run marker the sweep
walks the table partition and the merge of the run's chunks side by side, both in key order;
it holds the run's chunks of the partition in memory (about 13 bytes an ISIN), not an object
per ISIN. Entries of one ISIN each, written by earlier versions, are merged in as well.

The index is only trusted for a run if this worker processed the partition continuously
from the run's first event (the *epoch* of the partition). After a restart that resumed
where it stopped, it still is; after the partition came from another worker, it is not,
and the sweep first re-reads the run's events from the raw topic.

It also keeps the last raw offset this worker applied to its table in each partition.
Delivery is at least once: after a restart (or a rebalance that kept the partition here)
Kafka delivers again from the last *committed* offset, which can be behind what the table
already holds. Those records are skipped, never applied twice: an end-of-run marker applied
again would sweep with its run's keys already dropped, and delete every listing of its
source in the partition. A sweep drops its run's keys and moves the last applied offset to
its marker in one write batch, so no crash can leave one done without the other.
"""

from __future__ import annotations

import heapq
import logging
import operator
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import Rdict, RdictIter, WriteBatch

from stream_app.local_rocksdb import local_options

logger = logging.getLogger(__name__)

_SEEN = b"s"
_EPOCH = b"e"
_LAST = b"l"
_BACKFILLED = b"b"
_GOLDEN = b"g"


_FIXED = b"\x01"  # a chunk of 12-byte keys (ISINs), sorted and concatenated
_LINES = b"\x02"  # a chunk of keys of other lengths, sorted and joined by newlines
_ISIN = struct.Struct("12s")
_first = operator.itemgetter(0)


def _chunk(keys: Iterable[bytes]) -> tuple[bytes, bytes]:
    """(tag, value) of one chunk of keys: fixed width when every key is an ISIN's 12 bytes."""
    ordered = sorted(set(keys))
    blob = b"".join(ordered)
    if len(blob) == 12 * len(ordered):
        return _FIXED, blob
    lines = [k for k in ordered if b"\n" not in k]
    if len(lines) < len(ordered):
        logger.warning("seen index: %d keys with a newline left out", len(ordered) - len(lines))
    return _LINES, b"\n".join(lines)


def _unchunk(tag: bytes, value: bytes) -> Iterator[bytes]:
    if tag == _FIXED:
        return map(_first, _ISIN.iter_unpack(value))
    return iter(value.split(b"\n") if value else ())


def _p(partition: int) -> bytes:
    return partition.to_bytes(2, "big")


def _prefix(partition: int, run_id: str) -> bytes:
    return _SEEN + _p(partition) + run_id.encode() + b"\x00"


class SeenIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), local_options())
        self._fresh: set[int] = set()
        self._applied: dict[int, int] = {}

    def close(self) -> None:
        self._db.close()

    def backfilled(self, partition: int) -> bool:
        """Whether the partition's history was checked, and backfilled if it had to be."""
        return self._db.get(_BACKFILLED + _p(partition)) is not None

    def mark_backfilled(self, partition: int) -> None:
        self._db[_BACKFILLED + _p(partition)] = b"1"

    def golden_fingerprint(self, partition: int) -> str | None:
        """The golden configuration the partition's records were last built under here; None
        if never (a table that predates the golden view, or a new state directory)."""
        raw = self._db.get(_GOLDEN + _p(partition))
        return None if raw is None else raw.decode()

    def mark_golden(self, partition: int, fingerprint: str) -> None:
        self._db[_GOLDEN + _p(partition)] = fingerprint.encode()

    def on_assigned(self, partitions: Iterable[int]) -> None:
        """The partitions may have been processed elsewhere since we last saw them."""
        self._fresh.update(partitions)

    def begin_batch(self, partition: int, first_offset: int) -> int:
        """Called before a batch; starts a new epoch if continuity with our last batch is unproven.

        Returns the last offset of the partition this worker applied already, if the batch
        starts at or below it (records delivered again, to be skipped), else -1."""
        if partition in self._fresh:
            self._fresh.discard(partition)
            self._applied.pop(partition, None)
            last = self._int(_LAST + _p(partition))
            if last is None or first_offset > last + 1:
                self._db.put(_EPOCH + _p(partition), str(first_offset).encode())
                logger.info(
                    "seen index: partition %d epoch starts at offset %d (last indexed: %s)",
                    partition,
                    first_offset,
                    last,
                )
            elif first_offset <= last:
                self._applied[partition] = last
                logger.info(
                    "partition %d: offsets %d to %d were applied here already (delivered again after a "
                    "restart or rebalance); skipping them",
                    partition,
                    first_offset,
                    last,
                )
        applied = self._applied.get(partition, -1)
        if applied >= 0 and first_offset > applied:
            del self._applied[partition]
            return -1
        return applied

    def record(self, partition: int, keys_by_run: dict[str, list[bytes]], last_offset: int) -> None:
        """A batch's keys of each run, as one chunk per run, and the batch's last offset."""
        wb = WriteBatch(raw_mode=True)
        for run_id, keys in keys_by_run.items():
            tag, value = _chunk(keys)
            wb.put(_prefix(partition, run_id) + tag + last_offset.to_bytes(8, "big", signed=True), value)
        wb.put(_LAST + _p(partition), str(last_offset).encode())
        self._db.write(wb)

    def add(self, partition: int, run_id: str, keys: Iterable[bytes]) -> None:
        """More keys of a run (a re-read of its events, its unreadable rows' ISINs)."""
        tag, value = _chunk(keys)
        # after every batch's chunk in key order; unique, so a second add keeps the first
        self._db.put(_prefix(partition, run_id) + tag + b"\xff" + time.time_ns().to_bytes(8, "big"), value)

    def covers(self, partition: int, first_offset: int) -> bool:
        """True if every event of a run whose first event is at ``first_offset`` was indexed here."""
        epoch = self._int(_EPOCH + _p(partition))
        return epoch is not None and epoch <= first_offset

    def keys(self, partition: int, run_id: str) -> Iterator[bytes]:
        """The run's ISINs in this partition, in byte order (a key may come more than once)."""
        prefix = _prefix(partition, run_id)
        n = len(prefix)
        it = self._db.iter()
        it.seek(prefix)
        chunks: list[Iterator[bytes]] = []
        while it.valid():
            key = it.key()
            if not key.startswith(prefix) or key[n : n + 1] not in (_FIXED, _LINES):
                break
            chunks.append(_unchunk(key[n : n + 1], it.value()))
            it.next()
        return heapq.merge(*chunks, self._single_keys(it, prefix))

    @staticmethod
    def _single_keys(it: RdictIter, prefix: bytes) -> Iterator[bytes]:
        """Entries of one key each (an earlier version's), which sort after the chunks."""
        n = len(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key[n:]
            it.next()

    def finish(self, partition: int, run_id: str, marker_offset: int) -> None:
        """The run was swept at its marker: drop its keys and mark the marker applied, atomically."""
        prefix = _prefix(partition, run_id)
        wb = WriteBatch(raw_mode=True)
        wb.delete_range(prefix, prefix[:-1] + b"\x01")
        wb.put(_LAST + _p(partition), str(marker_offset).encode())
        self._db.write(wb)

    def _int(self, key: bytes) -> int | None:
        raw = self._db.get(key)
        return int(raw) if raw is not None else None
