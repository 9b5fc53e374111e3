"""Direct, partition-aware access to the Faust table's RocksDB store.

Faust owns the store: it opens one RocksDB per table partition, recovers it from the
changelog (our current-records topic) on assignment, keeps standby copies warm, and
closes it on revocation. The dedup loop reads and writes it here, a batch at a time,
and always writes the changelog offset it has reached in the same RocksDB write batch,
so that Faust's recovery resumes exactly after what this store already holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from rocksdict import WriteBatch


class TableStore(Protocol):
    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def apply(self, partition: int, changes: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None: ...

    def items(self, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def count(self, partition: int) -> int: ...


class FaustTableStore:
    """A TableStore over ``faust.Table.data`` when it is Faust's RocksDB store."""

    def __init__(self, table: Any) -> None:
        self._table = table

    @property
    def _store(self) -> Any:
        return self._table.data

    def _db(self, partition: int) -> Any:
        return self._store._db_for_partition(partition)

    @property
    def offset_key(self) -> bytes:
        return bytes(self._store.offset_key)

    def get(self, partition: int, key: bytes) -> bytes | None:
        value = self._db(partition).get(key)
        return None if value is None else bytes(value)

    def apply(self, partition: int, changes: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        if not changes and changelog_offset is None:
            return
        wb = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        if changelog_offset is not None:
            wb.put(self.offset_key, str(changelog_offset).encode())
        self._db(partition).write(wb)

    def items(self, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Records of one partition in key order, from ``start``."""
        offset_key = self.offset_key
        it = self._db(partition).iter()
        if start:
            it.seek(start)
        else:
            it.seek_to_first()
        while it.valid():
            key = it.key()
            if key != offset_key:
                yield key, it.value()
            it.next()

    def count(self, partition: int) -> int:
        offset_key = self.offset_key
        n = 0
        for key in self._db(partition).keys():  # noqa: SIM118 - an Rdict is not iterable like a dict
            if key != offset_key:
                n += 1
        return n
