"""HTML tables: an exchange's list saved as a web page (often with an .xls name), or an error page.

The page is parsed by lxml's HTML parser as a stream (``iterparse``), each ``<tr>`` dropped once
read, so memory stays flat (a 64 MB, 400k-row page: 79 MB peak, 28k rows/s, against 1.07 GB
for ``lxml.html`` building the tree). It is parsed twice: once to sample the first
``SAMPLE_ROWS`` rows of every ``<table>`` for ``detect_table``, once to read. A page over
``MAX_HTML_BYTES`` is refused. Cells are the ``<td>`` and ``<th>`` children of a row, their
text with whitespace collapsed (``&nbsp;`` is a space, ``<br>`` and paragraphs break words);
a ``colspan`` cell is followed by empty cells and a ``rowspan`` cell leaves empty cells below
it, so the columns stay under their headers. A nested table is a table of its own.

Encoding: ``--encoding``; else UTF-8 if the whole page is UTF-8; else the page's declared
charset; else cp1252. Tables with an ISIN column are read (``--sheet`` picks one by number or
id); a page with none (a maintenance or a login page) fails with its title. The page proves it
is whole (``end_proven``) when it ends with ``</html>``.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from lxml import etree  # type: ignore[import-untyped]

from core.errors import ParseError
from producer.reading.columns import TableLayout, detect_table
from producer.reading.container import Payload
from producer.reading.model import ColumnChoice, Item, ReadHints, shorten
from producer.reading.spreadsheet import TableRows
from producer.reading.text import first_undecodable

logger = logging.getLogger(__name__)

MAX_HTML_BYTES = 64 * 1024**2
SAMPLE_ROWS = 1000
_BREAKS = ("br", "p", "div", "li")
_CHARSET = re.compile(rb"<meta[^>]+charset", re.IGNORECASE)

TableRow = tuple[str, int, list[str]]
"""(table label, 1-based row number within the table, cells)."""


class _Bounded(io.RawIOBase):
    """A stream that fails once more than ``MAX_HTML_BYTES`` have been read from it."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._count = 0
        self.tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        self._count += len(data)
        if self._count > MAX_HTML_BYTES:
            raise ParseError(f"the HTML page is larger than {MAX_HTML_BYTES // 1024**2} MB, the limit for an HTML list")
        buffer[: len(data)] = data
        if data:
            self.tail = (self.tail + data)[-64:]
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def _span(value: str | None, limit: int) -> int:
    try:
        return min(max(int(value or 1), 1), limit)
    except ValueError:
        return 1


def _text(cell: Any) -> str:
    if not len(cell):  # no child elements: the common case, and the fast one
        return " ".join((cell.text or "").split())
    for node in cell.iter(_BREAKS):
        node.tail = " " + (node.tail or "")
    return " ".join("".join(cell.itertext()).split())


def _cells(tr: Any, below: dict[int, int]) -> list[str]:
    """A row's cells; ``below`` counts, per column, the rows a ``rowspan`` above still covers."""
    out: list[str] = []

    def covered() -> None:
        while below.get(len(out), 0) > 0:
            below[len(out)] -= 1
            out.append("")

    for cell in tr:
        if cell.tag not in ("td", "th"):
            continue
        if below:
            covered()
        if not cell.attrib:
            out.append(_text(cell))
            continue
        text, down = _text(cell), _span(cell.get("rowspan"), 65534)
        for k in range(_span(cell.get("colspan"), 1000)):
            if down > 1:
                below[len(out)] = down - 1
            out.append("" if k else text)
    if below:
        covered()
        for col in [c for c, left in below.items() if c >= len(out) and left > 0]:
            below[col] -= 1
    while out and not out[-1]:
        out.pop()
    return out


def _table_rows(open_stream: Callable[[], _Bounded], encoding: str | None, page: dict[str, Any]) -> Iterator[TableRow]:
    """Every row of every table, in page order; into ``page``: its title, its number of tables, and
    whether it ends with ``</html>`` (a page cut short has lost it)."""
    open_tables: list[tuple[str, list[int], dict[int, int]]] = []  # label, [rows so far], rowspans
    count = 0
    with open_stream() as stream:
        events = etree.iterparse(
            stream,
            events=("start", "end"),
            tag=("table", "tr", "title"),
            html=True,
            encoding=encoding,
            no_network=True,
            remove_comments=True,
            remove_pis=True,
        )
        try:
            for event, el in events:
                if el.tag == "table" and event == "start":
                    count += 1
                    label = f"table #{el.get('id')}" if el.get("id") else f"table {count}"
                    open_tables.append((label, [0], {}))
                elif el.tag == "table" and open_tables:
                    open_tables.pop()
                    el.clear(keep_tail=True)
                elif el.tag == "title" and event == "end":
                    page.setdefault("title", " ".join("".join(el.itertext()).split()))
                elif el.tag == "tr" and event == "end" and open_tables:
                    label, seen, below = open_tables[-1]
                    seen[0] += 1
                    yield label, seen[0], _cells(el, below)
                    el.clear(keep_tail=True)
                    while el.getprevious() is not None:
                        del el.getparent()[0]
        except etree.LxmlError as exc:
            raise ParseError(f"cannot read the HTML page: {exc}") from exc
        page["closed"] = stream.tail.rstrip().lower().endswith(b"</html>")
    page["tables"] = count


def _encoding(payload: Payload, hints: ReadHints) -> str | None:
    if hints.encoding:
        return hints.encoding
    if payload.head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if first_undecodable(lambda: cast(BinaryIO, _Bounded(payload.open())), "utf-8") is None:
        return "utf-8"
    return None if _CHARSET.search(payload.head) else "cp1252"


class HtmlTables:
    """The rows of every table of an HTML page that has an ISIN column."""

    format = "html"
    unterminated = False

    def __init__(self, payload: Payload, hints: ReadHints) -> None:
        self._open = lambda: _Bounded(payload.open())
        self._encoding = _encoding(payload, hints)
        page: dict[str, Any] = {}
        samples: dict[str, list[tuple[int, list[str]]]] = {}
        for label, line, cells in _table_rows(self._open, self._encoding, page):
            sample = samples.setdefault(label, [])
            if line <= SAMPLE_ROWS:
                sample.append((line, cells))
        if hints.sheet and hints.sheet not in samples and f"table {hints.sheet}" not in samples:
            raise ParseError(f"--sheet {hints.sheet!r}: the page has no such table; its tables are {list(samples)}")
        self._tables: dict[str, TableLayout] = {}
        read: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for label, sample in samples.items():
            if hints.sheet and hints.sheet not in (label, label.removeprefix("table ")):
                continue
            try:
                layout = detect_table(sample, column=hints.column, header_line=hints.header_row, table=label)
            except ParseError as exc:
                if "hold ISINs" in str(exc):
                    raise
                skipped.append({"table": label, "reason": shorten(str(exc), 300)})
                continue
            self._tables[label] = layout
            read.append({"table": label, "header_row": layout.header_line, "isin_column": layout.isin_header})
        title = page.get("title") or ""
        if not self._tables:
            what = f"an HTML page titled {title!r}" if title else "an HTML page with no title"
            empty = f"its {page['tables']} tables have no rows" if page["tables"] else "it has no <table>"
            why = "; ".join(f"{s['table']}: {s['reason']}" for s in skipped) or empty
            raise ParseError(f"the download is {what}, not a list: no header with an ISIN column ({why})")
        self.end_proven: bool = page["closed"]
        self.columns: list[ColumnChoice] = [layout.column for layout in self._tables.values()]
        self.details: dict[str, Any] = {
            "encoding": self._encoding or "declared by the page",
            "title": title,
            "tables": read,
            "skipped_tables": skipped,
        }

    def rows(self) -> Iterator[Item]:
        readers = {label: TableRows(layout, label) for label, layout in self._tables.items()}
        for label, line, cells in _table_rows(self._open, self._encoding, {}):
            reader = readers.get(label)
            if reader is not None and (item := reader.item(line, cells)) is not None:
                yield item
        for info in self.details["tables"]:
            info.update(readers[info["table"]].counts())


def open_html(payload: Payload, hints: ReadHints) -> HtmlTables:
    """The reader of an HTML page's tables; a page without an ISIN column fails with its title."""
    return HtmlTables(payload, hints)
