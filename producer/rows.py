"""The row loop: each row read becomes an event or a dead letter, counted once.

The run's own process and the parallel reader's worker processes (``parallel.py``) run this
one loop; only their sinks differ (the publisher's batches, or a byte range's result sent back
to the run). So a row is classified, validated, counted and encoded the same way whichever
path reads it, and a dead letter says the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from core.isin import InvalidIsin, known_prefixes, validate_isin
from producer.reading import BadRow, Row
from schemas import content_hash
from schemas.fastpath import EventEncoder


class RowSink(Protocol):
    """Where the loop's output goes."""

    def event(self, isin: str, value: bytes) -> None:
        """A valid row's encoded IsinEvent, keyed by its ISIN."""

    def dead(self, line: int, raw: str, error: str, reason: str, where: str) -> None:
        """A row that is not published, with why."""

    def unreadable(self, raw: str) -> None:
        """The text of a row that could not be read (the ISINs in it are kept from deletion)."""


@dataclass
class RowCounts:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    unreadable: int = 0
    unknown_prefixes: dict[str, int] = field(default_factory=dict)
    """Valid ISINs whose prefix python-stdnum does not know (``QQ`` …), by prefix."""
    last_bad: bool = False
    """The last row was not published (with an unterminated last line: a truncated file?)."""


def run_rows(
    items: Iterable[Row | BadRow],
    encode: EventEncoder,
    source: str,
    joiner: str,
    sink: RowSink,
    counts: RowCounts,
    on_rows: Callable[[int], None] | None = None,
    every: int = 2000,
) -> None:
    """Classify, validate, count and encode every row of ``items`` into ``sink``; ``on_rows``
    hears the rows read so far every ``every`` rows."""
    known, unknown = known_prefixes(), counts.unknown_prefixes
    event, dead = sink.event, sink.dead
    rows = valid = invalid = unreadable = 0
    last_bad = counts.last_bad
    try:
        for item in items:
            rows += 1
            if on_rows is not None and not rows % every:
                on_rows(counts.rows + rows)
            if type(item) is BadRow:
                unreadable += 1
                last_bad = True
                dead(item.line, item.raw, item.error.value, item.reason, item.where)
                sink.unreadable(item.raw)
                continue
            assert type(item) is Row
            try:
                isin = validate_isin(item.isin)
            except InvalidIsin as exc:
                invalid += 1
                last_bad = True
                dead(item.line, joiner.join(item.raw), exc.error.value, exc.reason, item.where)
                continue
            last_bad = False
            valid += 1
            if isin[:2] not in known:
                unknown[isin[:2]] = unknown.get(isin[:2], 0) + 1
            attributes = item.attributes
            event(isin, encode(isin, item.line, attributes, content_hash(source, attributes)))
    finally:
        counts.rows += rows
        counts.valid += valid
        counts.invalid += invalid
        counts.unreadable += unreadable
        counts.last_bad = last_bad
