"""The identifier index's part of ``rebuild``: what the rebuilt table needs in the identifier
topic, compared with what the topic holds, and only the differences written.

The index is re-keyed (``stream_app/identifier_index.py``): an ISIN of table partition ``p``
has its entries in the partitions of its identifiers, so the index can only be compared once
every table partition is rebuilt. While each one is, ``ExpectedIndex.add`` writes the entries
its records need (``Golden.index_changes`` from nothing, as the workers write them) into a
RocksDB on disk, keyed by the index partition. Then, one index partition at a time, the topic's
partition is read into another RocksDB (last wins, tombstones applied), the two are walked in
key order side by side, and every entry that is missing or different is written again and every
entry the table no longer gives gets a tombstone. Disk, not memory, grows with the index.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

from schemas import Serde
from stream_app.feed import partition_bytes
from stream_app.golden import Golden
from stream_app.store import iter_items

logger = logging.getLogger(__name__)


class ExpectedIndex:
    """The index entries of the rebuilt table, by index partition, on disk."""

    def __init__(self, path: Path, golden: Golden, serde: Serde) -> None:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(path), opts)
        self._golden, self._serde = golden, serde
        self.entries = 0

    def add(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """The entries the records (ISIN, encoded record) of a rebuilt table partition need."""
        wb = WriteBatch(raw_mode=True)
        for n, (key, value) in enumerate(records, start=1):
            record = self._serde.decode(value).record
            for partition, index_key, isin in self._golden.index_changes(key.decode(), None, record):
                assert isin is not None  # from nothing: puts only
                wb.put(partition_bytes(partition) + index_key, isin)
                self.entries += 1
            if not n % 20_000:
                self._db.write(wb)
                wb = WriteBatch(raw_mode=True)
        self._db.write(wb)

    def partition(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """(index key, ISIN) of one index partition, in key order."""
        prefix = partition_bytes(partition)
        for key, value in iter_items(self._db, prefix):
            if not key.startswith(prefix):
                return
            yield key[len(prefix) :], value

    def close(self) -> None:
        self._db.close()


def sorted_differences(
    expected: Iterator[tuple[bytes, bytes]],
    current: Iterator[tuple[bytes, bytes]],
    same: Callable[[bytes, bytes], bool],
) -> Iterator[tuple[bytes, bytes | None]]:
    """(key, value to write, or None for a tombstone) where two streams of (key, value) sorted by
    key differ: a key missing in ``current`` or whose value is not ``same``, or a key ``expected``
    does not have. The walk of ``rebuild`` for the compacted topic and for the index alike."""
    new, old = next(expected, None), next(current, None)
    while new is not None or old is not None:
        if old is None or (new is not None and new[0] < old[0]):
            assert new is not None
            yield new
            new = next(expected, None)
        elif new is None or old[0] < new[0]:
            yield old[0], None
            old = next(current, None)
        else:
            if not same(new[1], old[1]):
                yield new
            new, old = next(expected, None), next(current, None)


def index_differences(
    expected: Iterator[tuple[bytes, bytes]], current: Iterator[tuple[bytes, bytes]]
) -> Iterator[tuple[bytes, bytes | None]]:
    """``sorted_differences`` of index entries: an entry's value (its ISIN) compared as bytes."""
    return sorted_differences(expected, current, operator.eq)


def index_entries(db: Rdict) -> Iterator[tuple[bytes, bytes]]:
    """A partition of the identifier topic as read (``rebuild._current_partition``): its index
    entries, leaving out any key that is not one (``field=value|ISIN``)."""
    for key, value in iter_items(db):
        if b"|" in key:
            yield key, value
