"""Fixed-width records: no header, the ISIN at a fixed *byte* range, other fields in any encoding.

Records are read as bytes and cut before decoding, because a multi-byte encoding (CP949,
Shift-JIS) makes character positions differ from byte positions. The ISIN's range is
``--isin-at START:END`` (1-based, inclusive, as publishers' layouts give it), or found by
content: the 12-byte range that holds a valid ISIN in most records that are not blank there
(``mostly_isins``, the rule of every format). Lines before the first
record are a header record, a last line without an ISIN is a trailer record: both are
skipped and counted. The bytes around the ISIN become attributes ``field_1``, ``field_2``…,
split where two or more spaces pad a field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from core.errors import ParseError
from core.isin import RowError, is_isin
from producer.reading.columns import mostly_isins
from producer.reading.lines import LineChunks
from producer.reading.model import BadRow, ColumnBy, ColumnChoice, Item, Row, shorten

_PAD = re.compile(r"\s{2,}")


@dataclass(frozen=True)
class FixedLayout:
    start: int
    """0-based byte offset of the ISIN."""
    column: ColumnChoice
    first_record: int
    """1-based line of the first record: the lines before it are a header record."""

    @property
    def end(self) -> int:
        return self.start + 12


def _isin_at(line: bytes, start: int) -> bool:
    piece = line[start : start + 12]
    return len(piece) == 12 and piece[:2].isalpha() and is_isin(piece.decode("ascii", "replace"))


def detect_fixed(lines: Sequence[bytes], isin_at: tuple[int, int] | None) -> FixedLayout:
    """Where the ISIN is, from a sample of lines (bytes, without line ends)."""
    records = [ln for ln in lines if ln.strip()]
    if not records:
        raise ParseError("the list is empty")
    if isin_at is not None:
        first, last = isin_at
        if last - first + 1 != 12 or first < 1:
            raise ParseError(f"--isin-at {first}:{last}: an ISIN is 12 bytes, positions are 1-based and inclusive")
        start = first - 1
        if not any(_isin_at(ln, start) for ln in records):
            raise ParseError(f"--isin-at {first}:{last}: no record of the first {len(records)} has an ISIN there")
        by = ColumnBy.CONFIGURED
    else:
        width = max(len(ln) for ln in records)
        counts = [0] * max(0, width - 11)
        for ln in records:
            for start in range(len(ln) - 11):
                if _isin_at(ln, start):
                    counts[start] += 1
        filled = {s: sum(1 for ln in records if ln[s : s + 12].strip()) for s, c in enumerate(counts) if c}
        qualified = [s for s, n in filled.items() if mostly_isins(counts[s], n, len(records))]
        if not qualified:
            raise ParseError(
                "not a delimited list with an ISIN column, and no byte range holds an ISIN in most of the first "
                f"{len(records)} lines; the first line is {shorten(repr(records[0][:120]), 140)}"
            )
        best = max(counts[s] for s in qualified)
        starts = [s for s in qualified if counts[s] == best]
        if len(starts) > 1:
            shown = " and ".join(f"{s + 1}:{s + 12}" for s in starts[:3])
            raise ParseError(f"bytes {shown} all hold ISINs; choose with --isin-at START:END")
        start = starts[0]
        by = ColumnBy.CONTENT
    first_record = next(i for i, ln in enumerate(lines, start=1) if _isin_at(ln, start))
    return FixedLayout(start, ColumnChoice(f"bytes {start + 1}-{start + 12}", by, start), first_record)


class FixedReader:
    def __init__(self, open_stream: Callable[[], BinaryIO], encoding: str, layout: FixedLayout) -> None:
        self._open = open_stream
        self._encoding = encoding
        self._layout = layout
        self.header_records = layout.first_record - 1
        self.trailer_records = 0
        self.unterminated = False

    def rows(self) -> Iterator[Item]:
        start, end = self._layout.start, self._layout.end
        encoding = self._encoding
        first_record = self._layout.first_record
        pending: tuple[int, bytes] | None = None  # one line of lookahead, to tell a trailer
        with self._open() as stream:
            chunks = LineChunks(stream, b"\n")
            for first, lines in chunks:
                for number, line in enumerate(lines, start=first):
                    if number < first_record:
                        continue
                    if pending is not None:
                        yield self._row(*pending, start, end, encoding)
                    pending = (number, line.rstrip(b"\r"))
                for long in chunks.overlong:
                    reason = "the line is over the size limit"
                    yield BadRow(long.line, shorten(long.describe()), RowError.MALFORMED_ROW, reason)
                chunks.overlong.clear()
            self.unterminated = chunks.unterminated
        if pending is not None:
            number, line = pending
            if line.strip() and not _isin_at(line, start):
                self.trailer_records += 1
            else:
                yield self._row(number, line, start, end, encoding)

    @staticmethod
    def _row(number: int, line: bytes, start: int, end: int, encoding: str) -> Item:
        if not line.strip():
            return BadRow(number, "", RowError.MISSING_ISIN, "an empty record")
        where = f"line {number}, bytes {start + 1}-{end}"
        try:
            before = line[:start].decode(encoding)
            after = line[end:].decode(encoding)
            isin = line[start:end].decode(encoding)
        except UnicodeDecodeError as exc:
            return BadRow(
                number, shorten(repr(line)), RowError.MALFORMED_ROW, f"bytes do not decode as {encoding}: {exc}", where
            )
        fields = [f for f in (*_PAD.split(before.strip()), *_PAD.split(after.strip())) if f]
        attributes = {f"field_{i}": f for i, f in enumerate(fields, start=1)}
        return Row(number, isin, attributes, [before, isin, after], where)
