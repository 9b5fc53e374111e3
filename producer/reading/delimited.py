"""Delimited text (comma, semicolon, tab, pipe) and one-ISIN-a-line lists, in constant memory.

The file is decoded strictly (``text.py``) and read in 1 MiB chunks of lines. Python's csv
module parses each chunk; what it cannot be trusted with is handled around it, so that **one
bad row is one dead letter** and no row swallows the rows after it:

- a quoted field may span lines only if the record then has the table's usual number of
  fields, a valid ISIN, and none of its continuation lines is a complete row by itself;
  otherwise its first line is dead-lettered (an unmatched quote) and reading resumes on the
  next line;
- a line longer than ``MAX_ROW_BYTES`` is dead-lettered (cut short) and skipped;
- a line with no delimiter and no ISIN in a table of several columns is a section heading
  (AMFI's fund-house lines): counted and skipped, not a dead letter.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TextIO

from core.isin import RowError, is_isin
from producer.reading.columns import SampleRow, TableLayout, detect_table
from producer.reading.lines import LineChunks
from producer.reading.model import MAX_ROW_BYTES, BadRow, Item, Row, shorten

DELIMITERS = (",", ";", "\t", "|")
SAMPLE_LINES = 1000
MAX_SPAN = 20
"""Lines a quoted field may span."""

csv.field_size_limit(MAX_ROW_BYTES)


def sample_rows(lines: Sequence[str], delimiter: str, first_line: int = 1) -> list[SampleRow]:
    """Rows of a sample of lines, each with the physical line it starts on."""
    out: list[SampleRow] = []
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        before = reader.line_num
        try:
            cells = next(reader)
        except StopIteration:
            return out
        except csv.Error:
            cells = [lines[before]]
        out.append((first_line + before, cells))


def has_sections(lines: Sequence[str], delimiter: str, layout: TableLayout) -> bool:
    """Whether the sample has heading lines between its rows: one field, no ISIN, at least twice."""
    if layout.width < 2:
        return False
    rows = sample_rows(lines, delimiter)
    headings = [cells for line, cells in rows if line > layout.header_line and len(cells) == 1 and cells[0].strip()]
    return len(headings) >= 2 and not any(is_isin(cells[0]) for cells in headings)


def detect_delimited(
    lines: Sequence[str], *, delimiter: str | None, column: str | None, header_line: int | None
) -> tuple[str, TableLayout]:
    """The delimiter and the table layout that find an ISIN column; ParseError from the best try."""
    from core.errors import ParseError

    candidates = [delimiter] if delimiter else [d for d in DELIMITERS if any(d in ln for ln in lines)] or [","]
    found: list[tuple[int, str, TableLayout]] = []
    errors: list[ParseError] = []
    for d in candidates:
        try:
            layout = detect_table(sample_rows(lines, d), column=column, header_line=header_line)
        except ParseError as exc:
            errors.append(exc)
            continue
        found.append((layout.width, d, layout))
    if not found:
        # The error of the delimiter that split the lines most is the most telling.
        ambiguous = [e for e in errors if "hold ISINs" in str(e)]
        raise (ambiguous or errors)[0]
    _width, chosen, layout = max(found, key=lambda f: f[0])
    return chosen, layout


class RowShape:
    """What a row of a table whose layout is known becomes: a Row, a BadRow, or nothing (a blank
    line, a heading between the rows). Shared by the reader and the parallel producer."""

    def __init__(self, layout: TableLayout, delimiter: str, sections: bool) -> None:
        self._layout = layout
        self._delimiter = delimiter
        self._isin_col = layout.isin_col
        self._attr_cols = [(i, name) for i, name in enumerate(layout.names) if i != layout.isin_col]
        self._ncols = max(layout.header_width, layout.isin_col + 1) if layout.header_line else layout.width
        self._sections = sections
        """Lines with one field and no ISIN are headings between the rows (seen in the sample)."""
        self.section_lines = 0

    def __call__(self, line: int, row: list[str]) -> Item | None:
        n = len(row)
        isin_col = self._isin_col
        if n <= 1:
            if n == 0 or not row[0].strip():
                return None
            if self._sections and not is_isin(row[0]):
                self.section_lines += 1
                return None
        if n <= isin_col:
            return BadRow(
                line,
                shorten(self._delimiter.join(row)),
                RowError.MALFORMED_ROW,
                f"row has {n} fields; the ISIN column {self._layout.isin_header!r} is field {isin_col + 1}",
            )
        ncols = self._ncols
        if n > ncols and any(f.strip() for f in row[ncols:]):
            return BadRow(
                line,
                shorten(self._delimiter.join(row)),
                RowError.MALFORMED_ROW,
                f"row has {n} non-empty fields but the header has {ncols}",
            )
        attributes = {name: v for i, name in self._attr_cols if i < n and (v := row[i].strip())}
        return Row(line, row[isin_col].strip(), attributes, row)


class DelimitedReader:
    """Rows of a delimited text table whose layout is known."""

    @property
    def section_lines(self) -> int:
        return self._shape.section_lines

    @property
    def layout(self) -> TableLayout:
        return self._layout

    @property
    def delimiter(self) -> str:
        return self._delimiter

    def __init__(
        self, open_text: Callable[[], TextIO], delimiter: str, layout: TableLayout, sections: bool = False
    ) -> None:
        self._open = open_text
        self._delimiter = delimiter
        self._layout = layout
        self.sections = sections
        self._shape = RowShape(layout, delimiter, sections)
        self.unterminated = False

    def rows(self) -> Iterator[Item]:
        layout = self._layout
        skip_to = layout.header_line
        with self._open() as text:
            chunks = LineChunks(text, "\n")
            carry: list[str] = []
            carry_from = 0
            for first, lines in chunks:
                yield from self._overlong(chunks)
                if carry:
                    lines = carry + lines
                    first = carry_from
                    carry = []
                if skip_to >= first + len(lines) - 1:
                    continue
                if skip_to >= first:
                    lines = lines[skip_to - first + 1 :]
                    first = skip_to + 1
                rest = yield from self._chunk(first, lines, final=False)
                if rest is not None:
                    carry_from, carry = rest, lines[rest - first :]
            yield from self._overlong(chunks)
            if carry:
                yield from self._chunk(carry_from, carry, final=True)
            self.unterminated = chunks.unterminated

    @staticmethod
    def _overlong(chunks: LineChunks[str]) -> Iterator[Item]:
        for long in chunks.overlong:
            yield long.bad_row()
        chunks.overlong.clear()

    def _chunk(self, first: int, lines: list[str], final: bool) -> Generator[Item, None, int | None]:
        """The rows of one chunk; returns the line number from which to carry lines over, if any."""
        delimiter = self._delimiter
        shape = self._shape
        count = len(lines)
        it: Any = iter(lines)  # a list iterator: __setstate__ moves it in O(1)
        reader = csv.reader(it, delimiter=delimiter)
        offset = 0  # index in ``lines`` where this reader started
        before = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                yield BadRow(first + before, shorten(lines[before]), RowError.MALFORMED_ROW, f"unreadable row: {exc}")
                offset = before = before + 1
                it = iter(lines)
                it.__setstate__(offset)
                reader = csv.reader(it, delimiter=delimiter)
                continue
            end = offset + reader.line_num  # lines[before:end] are this record
            if end - before > 1 or (end == count and not final):
                span = end - before
                if end == count and not final and (span > 1 or '"' in lines[-1]) and span <= MAX_SPAN:
                    return first + before  # it may go on in the next chunk
                if span > 1:
                    joined = self._multi_line(row, lines[before:end])
                    if joined is None:
                        yield BadRow(
                            first + before,
                            shorten(lines[before]),
                            RowError.MALFORMED_ROW,
                            "an unmatched quote: the row does not end on its line",
                        )
                        offset = before = before + 1
                        it = iter(lines)
                        it.__setstate__(offset)
                        reader = csv.reader(it, delimiter=delimiter)
                        continue
                    row = joined
            before = end
            item = shape(first + end - 1, row)
            if item is not None:
                yield item

    def _multi_line(self, row: list[str], span: list[str]) -> list[str] | None:
        """The record of a quoted field spanning lines, or None if it is an unmatched quote."""
        layout = self._layout
        if len(span) > MAX_SPAN or len(row) != layout.width or not is_isin(row[layout.isin_col]):
            return None
        for line in span[1:]:
            if line.count('"') % 2:
                continue  # the closing quote of the field is on it: not a row by itself
            alone = next(csv.reader([line], delimiter=self._delimiter), [])
            if len(alone) == layout.width and is_isin(alone[layout.isin_col]):
                return None  # a complete row by itself: the quote before it is a stray one
        return next(csv.reader(["\n".join(span)], delimiter=self._delimiter))
