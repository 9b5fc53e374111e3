"""The conflicts of this worker's partitions: the ``/conflicts`` report and the counts by field
and source pair (``/stats``, the ``isin_stream_conflicts`` gauge).

Each record carries its own ``conflicts`` (``core.golden``); this module keeps, per partition,
the ISINs that have any, with the changelog offset of the table when it was read. A partition
is read again only when its offset moved, so a quiet table costs nothing, and the report is
exact as of that offset: ``/conflicts`` brings the partitions it pages through up to date
before it answers; the counts are brought up to date every ``CONFLICT_SCAN_S``.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.golden import normalise
from schemas import Serde
from stream_app.records import listing_hashes
from stream_app.store import TableStore

_DERIVING = (b"US", b"CA", b"GB", b"IE")
"""ISIN prefixes that derive a CUSIP or a SEDOL, which a single listing may disagree with."""

Pair = tuple[str, str, str]
"""(field, source, other source), the two sources in order."""


@dataclass
class _Partition:
    offset: bytes | None
    conflicts: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    """(ISIN, its conflicts) in ISIN order."""
    counts: Counter[Pair] = field(default_factory=Counter)


def pairs(conflicts: Iterable[dict[str, Any]]) -> Iterable[Pair]:
    """Every (field, source, other source) that disagree in ``conflicts``."""
    for conflict in conflicts:
        values = conflict["values"]
        for a, b in itertools.combinations(sorted(values), 2):
            if normalise(conflict["field"], values[a]) != normalise(conflict["field"], values[b]):
                yield conflict["field"], a, b


class ConflictReport:
    def __init__(self, store: TableStore, serde: Serde) -> None:
        self._store = store
        self._serde = serde
        self._parts: dict[int, _Partition] = {}
        self._seen_offsets: dict[int, bytes | None] = {}
        self._lock = threading.Lock()

    def _offset(self, partition: int) -> bytes | None:
        offset_key = getattr(self._store, "offset_key", None)  # a store without one is read every time
        return self._store.get(partition, offset_key) if offset_key is not None else None

    def refresh_quiet(self, partitions: Iterable[int]) -> None:
        """``refresh`` of the partitions whose table has not moved since the last call: a
        partition being written (a run under way) is counted once it is quiet, not over and over
        while the worker needs the cores for the run."""
        offsets = {p: self._offset(p) for p in partitions}
        quiet = [p for p, offset in offsets.items() if self._seen_offsets.get(p, b"-") == offset]
        self._seen_offsets = offsets
        self.refresh(quiet)

    def refresh(self, partitions: Iterable[int]) -> None:
        """Read again every partition of ``partitions`` whose table moved since it was read
        (blocking: call it in an executor)."""
        with self._lock:
            for partition in partitions:
                offset = self._offset(partition)
                known = self._parts.get(partition)
                if known is not None and known.offset == offset and offset is not None:
                    continue
                part = _Partition(offset)
                for key, value in self._store.items(partition):
                    if key[:2] not in _DERIVING and b" " not in listing_hashes(value):
                        continue  # one listing, nothing derived to disagree with: no conflict
                    record = self._serde.decode(value).record
                    found = record.get("conflicts") or []
                    if found:
                        part.conflicts.append((key.decode(), found))
                        part.counts.update(pairs(found))
                self._parts[partition] = part

    def counts(self, partitions: Iterable[int]) -> Counter[Pair]:
        """Conflicts by (field, source, other source) over ``partitions``, as last read."""
        total: Counter[Pair] = Counter()
        for partition in partitions:
            part = self._parts.get(partition)
            if part is not None:
                total.update(part.counts)
        return total

    def page(
        self, partitions: Iterable[int], field_name: str | None, source: str | None, after: str, limit: int
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Up to ``limit`` (ISIN, its matching conflicts) after ``after``, in ISIN order, over
        ``partitions``: only conflicts on ``field_name``, and only those ``source`` takes part in."""
        out: list[tuple[str, list[dict[str, Any]]]] = []
        for partition in partitions:
            part = self._parts.get(partition)
            if part is None:
                continue
            for isin, found in part.conflicts:
                if isin <= after:
                    continue
                matching = [
                    c
                    for c in found
                    if (field_name is None or c["field"] == field_name) and (source is None or source in c["values"])
                ]
                if matching:
                    out.append((isin, matching))
        out.sort(key=lambda item: item[0])
        return out[:limit]
