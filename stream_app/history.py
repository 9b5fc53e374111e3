"""The history of this worker's partitions: every ListingChange, in a local RocksDB beside the table.

Fed from the change topic (``HistoryStore.apply``: a fetched batch of one partition, with its
last offset, in one write batch), so a new or wiped state directory is restored by reading the
topic again from the stored offset, and a record seen twice (the same ``change_id``) is stored
once. Keys: partition, ISIN, slot, change id; one RocksDB for all partitions, like the seen
index. Queries:

- ``changes(isin)``: every change of the ISIN, ordered by slot, then by ``recorded_at``;
- ``as_of(isin, valid_at, known_at)``: the listings as they stood at valid time ``valid_at``
  (the latest change of each source at or before it, unless ``DELISTED``), optionally only from
  what had been recorded by ``known_at`` (bitemporal).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rocksdict import WriteBatch

from schemas import Serde, SerializationError, content_hash
from schemas.fastpath import change_keys
from stream_app.feed import FedRocksDB
from stream_app.feed import partition_bytes as _p
from stream_app.golden import Golden
from stream_app.records import epoch_ms

_CHANGE = b"c"
_SLOT = struct.Struct(">q")


@dataclass(frozen=True)
class Applied:
    changes: int
    offset: int


class HistoryStore(FedRocksDB):
    def __init__(self, path: Path, serde: Serde, golden: Golden | None = None) -> None:
        super().__init__(path)
        self._serde = serde
        self._golden = golden

    def apply(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> Applied:
        """(key, value, offset) of the change topic's ``partition``, in offset order
        (``FedRocksDB``); a record that is not a ListingChange is skipped."""
        return Applied(*self._apply(partition, records))

    def _write(self, wb: WriteBatch, partition: int, key: bytes | None, value: bytes | None) -> bool:
        if value is None:
            return False
        try:
            fast = change_keys(value)  # most of a day-1 history: no decoding of each change
        except IndexError:
            fast = None
        if fast is not None:
            change_id, isin, slot = fast
            wb.put(_CHANGE + _p(partition) + isin + b"\x00" + _SLOT.pack(slot) + change_id, value)
            return True
        try:
            change = self._serde.decode(value).record
        except SerializationError:
            return False  # not a ListingChange: nothing to keep
        wb.put(self._key(partition, change["isin"], epoch_ms(change["slot"]), change["change_id"]), value)
        return True

    def drop(self, partition: int) -> None:
        """Forget a partition (its history is read again from the topic if it comes back)."""
        wb = WriteBatch(raw_mode=True)
        it = self._db.iter()
        prefix = _CHANGE + _p(partition)
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            wb.delete(it.key())
            it.next()
        wb.delete(self._OFFSET + _p(partition))
        self._db.write(wb)

    @staticmethod
    def _key(partition: int, isin: str, slot_ms: int, change_id: str) -> bytes:
        return _CHANGE + _p(partition) + isin.encode() + b"\x00" + _SLOT.pack(slot_ms) + change_id.encode()

    def isins(self, partition: int) -> Iterator[str]:
        """The ISINs with a change in ``partition``, in order."""
        prefix = _CHANGE + _p(partition)
        it = self._db.iter()
        it.seek(prefix)
        last = b""
        while it.valid() and it.key().startswith(prefix):
            isin = it.key()[len(prefix) :].split(b"\x00", 1)[0]
            if isin != last:
                yield isin.decode()
                last = isin
                it.seek(prefix + isin + b"\x01")  # past every key of this ISIN
                continue
            it.next()

    def changes(self, partition: int, isin: str, source: str | None = None) -> list[dict[str, Any]]:
        """Every change of ``isin``, by slot, then by ``recorded_at``; only ``source``'s if given."""
        prefix = _CHANGE + _p(partition) + isin.encode() + b"\x00"
        out = []
        it = self._db.iter()
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            change = self._serde.decode(it.value()).record
            if source is None or change["source"] == source:
                out.append(change)
            it.next()
        out.sort(key=lambda c: (epoch_ms(c["slot"]), epoch_ms(c["recorded_at"])))
        return out

    def as_of(
        self, partition: int, isin: str, valid_at_ms: int, known_at_ms: int | None = None, source: str | None = None
    ) -> dict[str, Any] | None:
        """The record of ``isin`` as it stood at ``valid_at_ms``; None if no source listed it."""
        return record_as_of(isin, self.changes(partition, isin, source), valid_at_ms, known_at_ms, self._golden)


def record_as_of(
    isin: str,
    changes: Sequence[Mapping[str, Any]],
    valid_at_ms: int,
    known_at_ms: int | None = None,
    golden: Golden | None = None,
) -> dict[str, Any] | None:
    """The current-record shape of ``isin`` at valid time ``valid_at_ms`` from its ``changes``
    (ordered by slot, then ``recorded_at``), only those recorded by ``known_at_ms`` if given;
    with its golden view as ``golden`` builds it from the listings then."""
    latest: dict[str, Mapping[str, Any]] = {}
    first_seen: dict[str, int] = {}
    for change in changes:
        slot = epoch_ms(change["slot"])
        if slot > valid_at_ms or (known_at_ms is not None and epoch_ms(change["recorded_at"]) > known_at_ms):
            continue
        source = change["source"]
        if change["op"] == "LISTED" or source not in first_seen:
            first_seen[source] = slot
        latest[source] = change
    listings = []
    for source in sorted(latest):
        change = latest[source]
        if change["op"] == "DELISTED":
            continue
        attributes = dict(change["after"] or {})
        listings.append(
            {
                "source": source,
                "attributes": attributes,
                "content_hash": content_hash(source, attributes),
                "run_id": change["run_id"],
                "first_seen_at": first_seen[source],
                "changed_at": epoch_ms(change["slot"]),
            }
        )
    if not listings:
        return None
    record = {
        "isin": isin,
        "country_code": isin[:2],
        "listings": listings,
        "change": "NEW" if all(item["first_seen_at"] == item["changed_at"] for item in listings) else "CHANGED",
        "updated_at": max(item["changed_at"] for item in listings),
    }
    return golden.apply(record) if golden is not None else record
