"""The dedup loop's path for an ISIN the table has never held: its writes from its event's bytes.

A new ISIN's record is ``merge_event(None, event)`` with the golden view applied; its listing
change is one ``LISTED``; its identifier-index records are one put per lookup key. The general
path builds each as dicts, diffs them against nothing, and encodes them (about 40 µs of the
loop's thread per GLEIF event, most of a first day). Here the record and the change are joined
from the event's encoded fields (``schemas.fresh``), and only the listing's canonical fields, the
golden view of its one listing (``core.golden.golden_view_of_one``) and the index puts are
computed, by the same rules as the general path.

The same bytes as the general path (``tests/unit/test_fresh.py`` runs both on generated events
and on real lists): anything not cut exactly gives None, and the loop takes the general path,
which writes it or rejects it with a reason.
"""

from __future__ import annotations

from collections.abc import Callable

from core.golden import canonical_fields, golden_view_of_one
from schemas import Serde
from schemas.fresh import FreshWriter
from stream_app.changes import change_id
from stream_app.dedup_io import Output
from stream_app.golden import Golden


class FreshIsin:
    """``fresh(partition, key, value)``: sends a new ISIN's record, change and index records and
    returns the record, or sends nothing and returns None (then take the general path)."""

    def __init__(
        self,
        serde: Serde,
        output: Output,
        current_topic: str,
        changes_topic: str | None,
        golden: Golden | None,
        clock: Callable[[], float],
    ) -> None:
        self._writer = FreshWriter(serde, current_topic, changes_topic)
        self._output = output
        self._changes = changes_topic is not None
        self._golden = golden
        self._clock = clock

    def __call__(self, partition: int, key: bytes, value: bytes) -> bytes | None:
        writer = self._writer
        parts = writer.parts(key, value)
        if parts is None:
            return None
        golden = self._golden
        if golden is None:
            record = writer.record(parts)
        else:
            config = golden.config
            fields = canonical_fields(parts.source, parts.attributes, config)
            view = golden_view_of_one(parts.isin, parts.source, fields, config)
            record = writer.record(parts, fields, view.golden, view.identifiers, view.conflicts)
            if record is not None:
                index = self._output.index
                for index_partition, index_key, isin in golden.index_of_new(parts.isin, {"fields": fields}):
                    index(index_partition, index_key, isin)
        if record is None:
            return None
        self._output.send(partition, key, record)
        if self._changes:
            at = int(self._clock() * 1000)
            cid = change_id(parts.isin, parts.source, parts.run_id, "LISTED")
            change = writer.listed(parts, cid, at, sorted(parts.attributes))
            self._output.change(partition, key, change)
        return record
