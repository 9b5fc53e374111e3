"""An exact count of the distinct ISINs of a run, in bounded memory, at any list size.

A valid ISIN is 11 letters and digits plus a check digit that follows from them, so its first
11 characters, read as a base-36 number, are a unique 57-bit integer. Those integers go to one
of ``BUCKETS`` arrays by their low bits; a full array is appended to its bucket's temp file.
At the end each bucket is counted with a set: the memory of the largest bucket, about
1/``BUCKETS`` of the list, instead of a set of every ISIN (9.3 million ISINs: 8 bytes each on
disk, a few MB of sets at a time, against about 700 MB for a set of strings).
"""

from __future__ import annotations

import os
import tempfile
from array import array
from pathlib import Path

BUCKETS = 64
FLUSH_AT = 64 * 1024


class DistinctCounter:
    def __init__(self, spool_dir: str | None = None, flush_at: int = FLUSH_AT) -> None:
        self._flush_at = flush_at
        self._dir = Path(tempfile.mkdtemp(prefix="isin-distinct-", dir=spool_dir))
        self._buckets = [array("Q") for _ in range(BUCKETS)]
        self._spilled: set[int] = set()
        self.added = 0

    def add_many(self, isins: list[str]) -> None:
        """Count *valid* ISINs (their compact, upper-case form)."""
        buckets = self._buckets
        mask = BUCKETS - 1
        for value in [int(isin[:11], 36) for isin in isins]:
            buckets[value & mask].append(value)
        self.added += len(isins)
        for index, bucket in enumerate(buckets):
            if len(bucket) >= self._flush_at:
                self._spill(index)

    def add_packed(self, buckets: list[bytes]) -> None:
        """Count ISINs packed by another process: one array's bytes per bucket, as ``add_many`` makes."""
        for index, data in enumerate(buckets):
            bucket = self._buckets[index]
            bucket.frombytes(data)
            self.added += len(data) // bucket.itemsize
            if len(bucket) >= self._flush_at:
                self._spill(index)

    def _spill(self, index: int) -> None:
        with open(self._dir / f"{index}.bin", "ab") as f:
            self._buckets[index].tofile(f)
        self._spilled.add(index)
        self._buckets[index] = array("Q")

    def count(self) -> int:
        total = 0
        for index, bucket in enumerate(self._buckets):
            values = set(bucket)
            if index in self._spilled:
                data = array("Q")
                path = self._dir / f"{index}.bin"
                data.frombytes(path.read_bytes())
                values.update(data)
            total += len(values)
        return total

    def close(self) -> None:
        for name in os.listdir(self._dir):
            (self._dir / name).unlink(missing_ok=True)
        self._dir.rmdir()
        self._buckets = []
