"""Text lists: delimited, one ISIN a line, or fixed width, told apart by their rows."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Any, NamedTuple, TextIO

from core.errors import ParseError
from producer.reading.container import Payload
from producer.reading.delimited import (
    DELIMITERS,
    SAMPLE_LINES,
    DelimitedReader,
    detect_delimited,
    has_sections,
)
from producer.reading.fixed import FixedReader, detect_fixed
from producer.reading.model import ColumnChoice, Item, ReadHints
from producer.reading.text import Encoding, resolve_encoding

SAMPLE_BYTES = 1024 * 1024


def _delimited(lines: list[str]) -> bool:
    """Whether one delimiter splits most non-blank lines into the same number (two or more) of fields."""
    rows = [ln for ln in lines if ln.strip()]
    for d in DELIMITERS:
        counts = Counter(ln.count(d) for ln in rows)
        common, n = counts.most_common(1)[0] if counts else (0, 0)
        if common >= 1 and n * 2 > len(rows):
            return True
    return False


class TextTable(NamedTuple):
    """A delimited text list as the sequential reader found it: what the parallel reader needs."""

    reader: DelimitedReader
    payload: Payload
    encoding: Encoding


class TextList:
    """A FormatReader for ``csv``, ``lines`` and ``fixed``; the encoding is checked first."""

    def __init__(self, payload: Payload, hints: ReadHints) -> None:
        if b"\x00" in payload.head and not payload.head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ParseError("the download is not text (it has NUL bytes) and not a format this reader knows")
        if not payload.head.strip():
            raise ParseError("the downloaded list is empty")
        self._payload = payload
        self.encoding: Encoding = resolve_encoding(payload.open, payload.head, hints.encoding)
        self.details: dict[str, Any] = {}
        self.columns: list[ColumnChoice] = []
        self.end_proven = False
        self.unterminated = False
        self._reader: DelimitedReader | FixedReader
        self.format = self._detect(hints)

    def _open_text(self) -> TextIO:
        return io.TextIOWrapper(self._payload.open(), encoding=self.encoding.name, errors="strict", newline=None)

    def _sample_text(self) -> list[str]:
        with self._open_text() as text:
            data = text.read(SAMPLE_BYTES)
            more = bool(text.read(1))
        lines = data.split("\n")
        if more and len(lines) > 1:
            lines.pop()  # a partial last line
        return list(islice(lines, SAMPLE_LINES))

    def _sample_bytes(self) -> list[bytes]:
        with self._payload.open() as stream:
            data = stream.read(SAMPLE_BYTES)
        lines = [ln.rstrip(b"\r") for ln in data.split(b"\n")]
        if len(data) == SAMPLE_BYTES and len(lines) > 1:
            lines.pop()
        return lines[:SAMPLE_LINES]

    def _detect(self, hints: ReadHints) -> str:
        fmt = hints.format
        if fmt == "fixed" or (fmt is None and hints.isin_at is not None):
            return self._fixed(hints)
        if fmt not in (None, "csv", "lines"):
            raise ParseError(f"--format {fmt}: the download is text, not {fmt}")
        sample = self._sample_text()
        try:
            delimiter, layout = detect_delimited(
                sample, delimiter=hints.delimiter, column=hints.column, header_line=hints.header_row
            )
        except ParseError as delimited_error:
            if fmt is not None or hints.delimiter or hints.column or _delimited(sample):
                raise
            try:
                return self._fixed(hints)
            except ParseError:
                raise delimited_error from None
        sections = has_sections(sample, delimiter, layout)
        self._reader = DelimitedReader(self._open_text, delimiter, layout, sections)
        self.columns = [layout.column]
        kind = "lines" if layout.width == 1 else "csv"
        self.details = {"header_row": layout.header_line}
        if kind == "csv":
            self.details["delimiter"] = delimiter
        return kind

    def _fixed(self, hints: ReadHints) -> str:
        layout = detect_fixed(self._sample_bytes(), hints.isin_at)
        self._reader = FixedReader(self._payload.open, self.encoding.name, layout)
        self.columns = [layout.column]
        self.details = {"isin_at": f"{layout.start + 1}:{layout.end}"}
        return "fixed"

    def table(self) -> TextTable | None:
        """The delimited table, its bytes and encoding, for a reader in other processes; None for
        a fixed-width list."""
        if isinstance(self._reader, DelimitedReader):
            return TextTable(self._reader, self._payload, self.encoding)
        return None

    def rows(self) -> Iterator[Item]:
        yield from self._reader.rows()
        self.unterminated = self._reader.unterminated
        if isinstance(self._reader, DelimitedReader):
            if self._reader.section_lines:
                self.details["section_lines"] = self._reader.section_lines
        else:
            self.details["header_records"] = self._reader.header_records
            self.details["trailer_records"] = self._reader.trailer_records
