"""Direct access to the RocksDB files of Faust's table store: a partition's database, and the
changelog offset each partition has applied (read before Faust opens the files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table_offsets(table: Any, partitions: list[int]) -> dict[int, int]:
    """The changelog offset each local table partition has applied, read from its RocksDB.

    Relies on: ``faust.stores.rocksdb.Store.partition_path(partition)`` and ``offset_key``
    (the key under which Faust, and our dedup loop, keep the changelog offset of a partition).
    """
    from rocksdict import AccessType, Options, Rdict

    store = table.data
    out: dict[int, int] = {}
    for partition in partitions:
        path = Path(store.partition_path(partition))
        if not path.exists():
            continue
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            raw = db.get(store.offset_key)
        finally:
            db.close()
        if raw is not None:
            out[partition] = int(raw)
    return out


def partition_db(store: Any, partition: int) -> Any:
    """The RocksDB (a rocksdict ``Rdict``) of one partition of a Faust RocksDB store.

    Relies on: ``faust.stores.rocksdb.Store._db_for_partition(partition)``, which opens the
    partition's database on first use and caches it. The dedup loop reads and writes it a batch
    at a time, with the changelog offset under ``Store.offset_key``.
    """
    return store._db_for_partition(partition)
