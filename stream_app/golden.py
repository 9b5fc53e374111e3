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
from pathlib import Path
from typing import Any

from core.golden import HEADER_SYNONYMS, LOOKUP_FIELDS, GoldenConfig, canonical_fields, derived_identifiers, golden_view
from stream_app.identifier_index import index_key, index_partition

Record = dict[str, Any]

RULES_VERSION = 1
"""Raise when the cleaning, recognition or precedence rules of ``core.golden`` change."""


class Golden:
    def __init__(self, config: GoldenConfig, partitions: int) -> None:
        self.config = config
        self._partitions = partitions
        # the configuration, and the built-in rules it is applied with: a new version whose
        # spellings differ rebuilds the records as a changed sources file does
        named = {
            "order": list(config.order),
            "fields": {source: dict(columns) for source, columns in config.fields.items()},
            "precedence": {name: list(order) for name, order in config.precedence.items()},
            "synonyms": HEADER_SYNONYMS,
            "rules": RULES_VERSION,
        }
        self.fingerprint = hashlib.blake2b(json.dumps(named, sort_keys=True).encode(), digest_size=8).hexdigest()

    @classmethod
    def load(cls, sources_file: Path | None, partitions: int) -> Golden:
        """From the sources file's ``fields`` and ``[precedence]``; without one, the built-in
        header spellings and every source in alphabetical order."""
        config = GoldenConfig.load(sources_file) if sources_file is not None else GoldenConfig()
        return cls(config, partitions)

    def apply(self, record: Record | None) -> Record | None:
        """``record`` with each listing's canonical ``fields`` and its golden view set (the
        record in place, its listings replaced by new dicts); None stays None."""
        if record is None:
            return None
        config = self.config
        # new listing dicts: a merged record shares its other listings with the record before it,
        # whose stored fields the index diff still reads
        record["listings"] = [
            {**listing, "fields": canonical_fields(listing["source"], listing["attributes"], config)}
            for listing in record["listings"]
        ]
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

    def index_of_new(self, isin: str, listing: Record) -> list[tuple[int, bytes, bytes]]:
        """``index_changes(isin, None, record)`` for a new record whose one listing is ``listing``
        (with its ``fields``): one put per lookup key, in the same order."""
        value, partitions = isin.encode(), self._partitions
        keys = sorted(lookup_keys({"isin": isin, "listings": [listing]}))
        return [(index_partition(field, text, partitions), index_key(field, text, isin), value) for field, text in keys]


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
