"""The golden view on the worker's records, and what the identifier index must hear of a change.

``Golden.apply`` sets a record's ``golden``, ``identifiers`` and ``conflicts`` from its listings
(``core.golden.golden_view``, with the precedence and field mappings of the sources file given
as ``SOURCES_FILE``). It runs wherever a record is built: the dedup loop's merge and sweep, the
history's as-of records, ``snapshot --as-of``. ``Golden.index_changes`` is the identifier
index's part of a record change (``stream_app/identifier_index.py``): the (partition, key,
value) records to send in the same flush as the record.

``Golden.fingerprint`` names the configuration: a worker that meets a table partition whose
records were built under another one (or before the golden view existed) builds them again
(``Dedup._regolden``), so that the records, the index and the configuration always agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.golden import LOOKUP_FIELDS, GoldenConfig, canonical_fields, derived_identifiers, golden_view
from stream_app.identifier_index import index_key, index_partition

Record = dict[str, Any]


class Golden:
    def __init__(self, config: GoldenConfig, partitions: int) -> None:
        self.config = config
        self._partitions = partitions
        self.fingerprint = hashlib.blake2b(
            json.dumps(asdict(config), sort_keys=True, default=list).encode(), digest_size=8
        ).hexdigest()

    @classmethod
    def load(cls, sources_file: Path | None, partitions: int) -> Golden:
        """From the sources file's ``fields`` and ``[precedence]``; without one, the built-in
        header spellings and every source in alphabetical order."""
        config = GoldenConfig.load(sources_file) if sources_file is not None else GoldenConfig()
        return cls(config, partitions)

    def apply(self, record: Record | None) -> Record | None:
        """``record`` with each listing's canonical ``fields`` and its golden view set (in
        place); None stays None."""
        if record is None:
            return None
        config = self.config
        for listing in record["listings"]:
            listing["fields"] = canonical_fields(listing["source"], listing["attributes"], config)
        view = golden_view(record["isin"], record["listings"], config)
        record["golden"] = view.golden
        record["identifiers"] = view.identifiers
        record["conflicts"] = view.conflicts
        return record

    def index_changes(
        self, isin: str, before: Record | None, after: Record | None
    ) -> Iterator[tuple[int, bytes, bytes | None]]:
        """The identifier-index records a change of ``isin`` from ``before`` to ``after`` needs:
        (partition of the identifier, key, the ISIN or None for a tombstone). Both sides are
        read from the records' stored ``fields``, so a record built under another configuration
        (or before there were fields) loses exactly the index entries it had."""
        old, new = lookup_keys(before), lookup_keys(after)
        value = isin.encode()
        for field, text in sorted(old - new):
            yield index_partition(field, text, self._partitions), index_key(field, text, isin), None
        for field, text in sorted(new - old):
            yield index_partition(field, text, self._partitions), index_key(field, text, isin), value


def lookup_keys(record: Record | None) -> set[tuple[str, str]]:
    """Every (field, value) by which ``record`` is found: the lookup fields any of its listings
    gives, and the identifiers derived from its ISIN (none without listings: no record)."""
    if record is None or not record["listings"]:
        return set()
    keys = {(f, v) for f, v in derived_identifiers(record["isin"]).items() if f in LOOKUP_FIELDS}
    for listing in record["listings"]:
        fields = listing.get("fields") or {}
        keys.update((f, fields[f]) for f in LOOKUP_FIELDS if f in fields)
    return keys
