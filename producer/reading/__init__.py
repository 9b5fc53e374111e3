"""Read a downloaded ISIN list in whatever format its publisher ships, with no hints needed.

``ListFile(path, hints)`` unpacks the download (``container.py``: plain, gzip, zip), tells its
format from magic bytes and content (never from a name or a Content-Type), detects the
encoding, the header row and the ISIN column, and then yields ``Row`` and ``BadRow`` items in
file order, in bounded memory. ``ListFile.detected`` says what was found, so that a user can
pin it with hints (``ReadHints``) that override detection.

Formats: delimited text and one-ISIN-a-line lists (``delimited.py``), fixed-width records
(``fixed.py``), spreadsheets xlsx, xls, xlsb and ods (``spreadsheet.py``), XML
(``xmlfile.py``), JSON (``jsonfile.py``, ``jsonscan.py``) and HTML tables (``htmltable.py``).
Every format judges an ISIN column by the same rule (``columns.mostly_isins``: most of its
non-empty values are ISINs, and not a handful); a workbook's sheets, an HTML page's tables and
an XML or JSON document's record sets (``recordsets.py``) are each read if they have one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from core.errors import ParseError
from producer.reading.container import Payload, Unpacker, sniff
from producer.reading.model import (
    FORMATS,
    BadRow,
    ColumnBy,
    ColumnChoice,
    Detected,
    FormatReader,
    Item,
    ReadHints,
    Row,
    normalise_header,
)

__all__ = [
    "FORMATS",
    "BadRow",
    "ColumnBy",
    "ColumnChoice",
    "Detected",
    "Item",
    "ListFile",
    "ReadHints",
    "Row",
    "normalise_header",
]

if TYPE_CHECKING:
    from producer.reading.textlist import TextTable

logger = logging.getLogger(__name__)

SPREADSHEETS = ("xlsx", "xls", "xlsb", "ods")


class ListFile:
    """A downloaded list, opened: ``detected`` on entry, then ``rows()``. A context manager."""

    def __init__(
        self,
        path: Path,
        hints: ReadHints | None = None,
        max_bytes: int = 16 * 1024**3,
        spool_dir: str | None = None,
    ) -> None:
        self._hints = hints or ReadHints()
        self._unpacker = Unpacker(path, max_bytes, spool_dir)
        self._payload: Payload | None = None
        self._reader: FormatReader | None = None
        self.detected = Detected(format="unknown")

    def __enter__(self) -> ListFile:
        try:
            self._open()
        except BaseException:
            self._unpacker.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._unpacker.close()

    def _open(self) -> None:
        payload = self._payload = self._unpacker.payload()
        self.detected.container = payload.container
        self.detected.member = payload.member
        hinted = self._hints.format
        sniffed = sniff(payload.head)
        if not payload.head:
            raise ParseError("the downloaded list is empty")
        kind = hinted or sniffed or "text"
        if sniffed == "office" and hinted in (None, "xlsx", "xlsb", "ods"):
            kind = "office"
        if hinted and sniffed and hinted != sniffed and not (sniffed == "office" and hinted in SPREADSHEETS):
            raise ParseError(f"--format {hinted}: the download is {sniffed}, not {hinted}")
        reader: FormatReader
        if kind in (*SPREADSHEETS, "office"):
            from producer.reading.spreadsheet import open_spreadsheet

            reader = open_spreadsheet(payload, self._hints)
        elif kind == "xml":
            from producer.reading.xmlfile import open_xml

            reader = open_xml(payload, self._hints)
        elif kind == "json":
            from producer.reading.jsonfile import open_json

            reader = open_json(payload, self._hints)
        elif kind == "html":
            from producer.reading.htmltable import open_html

            reader = open_html(payload, self._hints)
        else:
            from producer.reading.textlist import TextList

            text = TextList(payload, self._hints)
            self.detected.encoding, self.detected.encoding_by = text.encoding.name, text.encoding.by
            reader = text
            kind = text.format
        self.detected.format = getattr(reader, "format", kind)
        self.detected.details = reader.details
        self.detected.columns = reader.columns
        self._reader = reader
        logger.info("list detected: %s", self.detected.as_dict())

    def rows(self) -> Iterator[Item]:
        if self._reader is None:
            raise RuntimeError("ListFile.rows() outside its context manager")
        yield from self._reader.rows()

    def text_table(self) -> TextTable | None:
        """For the parallel producer: the reader, bytes and encoding of a delimited text list,
        else None."""
        from producer.reading.textlist import TextList

        return self._reader.table() if isinstance(self._reader, TextList) else None

    @property
    def end_proven(self) -> bool:
        """The container or the format proves the list is whole."""
        assert self._payload is not None and self._reader is not None
        return self._payload.self_delimiting or self._reader.end_proven

    @property
    def unterminated(self) -> bool:
        return self._reader is not None and self._reader.unterminated

    @property
    def column_by(self) -> ColumnBy | None:
        return self.detected.weakest
