"""The identifier index: which ISINs carry an identifier (an LEI, a CUSIP, a ticker...).

A secondary table keyed by identifier, kept the way Kafka Streams keeps the subscription side of
a foreign-key join: a re-keyed topic (``isin.identifiers``), co-partitioned with the raw topic.

- **Writing.** When the dedup loop changes a record, it sends, in the same flush as the record,
  one index record per (field, value) the record gained (key ``field=value|ISIN``, value the
  ISIN) and a tombstone per one it lost, to the partition of ``field=value`` (``index_key``),
  not of the ISIN. So every ISIN that carries one identifier is in one partition, and a lookup
  goes to one worker. The writer of a key is always the owner of its ISIN, so the keys of one
  identifier written by several workers never collide; a replay after a crash sends the same
  records again, which changes nothing.
- **Reading.** Each worker feeds its partitions of the topic into a RocksDB of its own
  (``IdentifierIndex``, by a ``TopicFeed``): keys ``partition + field=value|ISIN``. A lookup is
  a prefix scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from rocksdict import WriteBatch

from core.kafka import partition_for
from stream_app.feed import FedRocksDB
from stream_app.feed import partition_bytes as _p

_ENTRY = b"e"


def identifier(field: str, value: str) -> bytes:
    """What the index is partitioned by: ``field=value``, UTF-8."""
    return f"{field}={value}".encode()


def index_key(field: str, value: str, isin: str) -> bytes:
    return identifier(field, value) + b"|" + isin.encode()


@lru_cache(maxsize=65536)
def index_partition(field: str, value: str, partitions: int) -> int:
    """The partition of an identifier: Kafka's default partitioner on ``field=value``, so it is
    also the partition whose owner (``app.router``) answers lookups of it. Remembered: an LEI or
    a ticker is on many records (murmur2 in Python is about 3 µs)."""
    return partition_for(identifier(field, value), partitions)


class IdentifierIndex(FedRocksDB):
    def apply(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> int:
        """(key, value, offset) of the topic's ``partition`` in offset order (``FedRocksDB``); a
        null value removes its key. Returns how many records were applied."""
        return self._apply(partition, records)[0]

    def _write(self, wb: WriteBatch, partition: int, key: bytes | None, value: bytes | None) -> bool:
        if key is None or b"|" not in key:
            return False  # not an index record
        if value is None:
            wb.delete(_ENTRY + _p(partition) + key)
        else:
            wb.put(_ENTRY + _p(partition) + key, value)
        return True

    def isins(self, partition: int, field: str, value: str) -> list[str]:
        """The ISINs that carry ``field=value``, sorted (``partition``: ``index_partition``'s)."""
        prefix = _ENTRY + _p(partition) + identifier(field, value) + b"|"
        out = []
        it = self._db.iter()
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            rest = it.key()[len(prefix) :]
            if b"|" not in rest:  # not a longer value that starts the same ("A|B" after "A")
                out.append(rest.decode())
            it.next()
        return out
