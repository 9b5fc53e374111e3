"""Which ISINs each run delivered to each partition: the input of the end-of-run sweep.

A local RocksDB (not changelogged) next to the table. For every event the dedup loop
records ``(partition, run id, ISIN)``; at the run's end-of-run marker the sweep walks the
table partition and this index side by side, both in key order, in constant memory.

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

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

logger = logging.getLogger(__name__)

_SEEN = b"s"
_EPOCH = b"e"
_LAST = b"l"
_BACKFILLED = b"b"
_GOLDEN = b"g"


def _p(partition: int) -> bytes:
    return partition.to_bytes(2, "big")


def _prefix(partition: int, run_id: str) -> bytes:
    return _SEEN + _p(partition) + run_id.encode() + b"\x00"


class SeenIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(path), opts)
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
        wb = WriteBatch(raw_mode=True)
        for run_id, keys in keys_by_run.items():
            prefix = _prefix(partition, run_id)
            for key in keys:
                wb.put(prefix + key, b"")
        wb.put(_LAST + _p(partition), str(last_offset).encode())
        self._db.write(wb)

    def add(self, partition: int, run_id: str, keys: Iterable[bytes]) -> None:
        wb = WriteBatch(raw_mode=True)
        prefix = _prefix(partition, run_id)
        for key in keys:
            wb.put(prefix + key, b"")
        self._db.write(wb)

    def covers(self, partition: int, first_offset: int) -> bool:
        """True if every event of a run whose first event is at ``first_offset`` was indexed here."""
        epoch = self._int(_EPOCH + _p(partition))
        return epoch is not None and epoch <= first_offset

    def keys(self, partition: int, run_id: str) -> Iterator[bytes]:
        """The run's ISINs in this partition, in byte order."""
        prefix = _prefix(partition, run_id)
        n = len(prefix)
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
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
