"""Which ISINs each run delivered to each partition: the input of the end-of-run sweep.

A local RocksDB (not changelogged) next to the table. For every event the dedup loop
records ``(partition, run id, ISIN)``; at the run's end-of-run marker the sweep walks the
table partition and this index side by side, both in key order, in constant memory.

The index is only trusted for a run if this worker processed the partition continuously
from the run's first event (the *epoch* of the partition). After a restart that resumed
where it stopped, it still is; after the partition came from another worker, it is not,
and the sweep first re-reads the run's events from the raw topic.
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

    def close(self) -> None:
        self._db.close()

    def on_assigned(self, partitions: Iterable[int]) -> None:
        """The partitions may have been processed elsewhere since we last saw them."""
        self._fresh.update(partitions)

    def begin_batch(self, partition: int, first_offset: int) -> None:
        """Called before a batch; starts a new epoch if continuity with our last batch is unproven."""
        if partition not in self._fresh:
            return
        self._fresh.discard(partition)
        last = self._int(_LAST + _p(partition))
        if last is None or first_offset > last + 1:
            self._db.put(_EPOCH + _p(partition), str(first_offset).encode())
            logger.info(
                "seen index: partition %d epoch starts at offset %d (last indexed: %s)", partition, first_offset, last
            )

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

    def drop(self, partition: int, run_id: str) -> None:
        prefix = _prefix(partition, run_id)
        self._db.delete_range(prefix, prefix[:-1] + b"\x01")

    def _int(self, key: bytes) -> int | None:
        raw = self._db.get(key)
        return int(raw) if raw is not None else None
