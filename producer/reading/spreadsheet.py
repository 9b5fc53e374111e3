"""Workbooks: xlsx and xlsm, xlsb, ods (zip-based) and xls (BIFF8, OLE2), told apart by content.

Every visible worksheet whose first ``SAMPLE_ROWS`` rows hold an ISIN column (``detect_table``)
is read, in workbook order; the others (a cover, a disclaimer, an empty or a chart sheet) are
listed in ``details["skipped_sheets"]`` with the reason. Hidden sheets are skipped unless named
with ``--sheet``: publishers hide lookups and old copies, and the list is what a reader sees.
A row whose one value lies outside the ISIN column (a footer, a disclaimer) is not a row.

**Memory.** python-calamine (Rust, one reader for all four formats, 5-13x faster than
openpyxl) cannot stream: ``get_sheet_by_name`` builds the whole sheet as a dense grid (32 bytes
an empty cell, ~88 a filled one at peak; pyo3 cannot expose the lazy Rust reader,
python-calamine#42). So its peak is estimated first from the zip directory: the largest sheet
part plus the shared strings, times the peak per byte measured (``_FACTOR``: xlsx 1.7-3.4,
xlsb 3.9, ods 1.3, xls 9.1). Up to ``CALAMINE_BUDGET`` (128 MiB, ~100k rows x 8) calamine
reads the workbook (300k x 8 xlsx: 7 s, 258 MB peak if forced). Above it an xlsx is streamed by
openpyxl's read-only mode (the same file: 64 s, 63 MB), with its declared dimension reset,
which read-only mode trusts and drops rows past. So is an xlsx whose declared ``<dimension>`` as a dense grid
exceeds ``MAX_IN_MEMORY`` (a stray cell at XFD1048576). xlsb, ods and xls have no streaming
reader among our dependencies: calamine reads them up to ``MAX_IN_MEMORY`` (384 MiB, what fits
beside the producer in its 512 MiB pod), and above it they fail with a ParseError.

Cells become text: strings stripped (runs of spaces are empty), integral numbers without
``.0``, other numbers in ``repr`` form, booleans ``true``/``false``, dates, times and datetimes
in ISO 8601 (a datetime at midnight is a date, as calamine types it), durations ``PT26H00M00S``,
errors empty. Trailing empty cells are dropped; a row's line is its real sheet row number.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import zipfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

import python_calamine as pc
from lxml import etree  # type: ignore[import-untyped]

from core.errors import ParseError
from core.isin import RowError, is_isin
from producer.reading.cells import texts
from producer.reading.columns import TableLayout, detect_table
from producer.reading.container import OLE2_MAGIC, Payload
from producer.reading.model import (
    MAX_ROW_BYTES,
    BadRow,
    ColumnChoice,
    Item,
    ReadHints,
    Row,
    names_isin,
    normalise_header,
    shorten,
)

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 1000
CALAMINE_BUDGET = 128 * 1024**2
MAX_IN_MEMORY = 384 * 1024**2
_FACTOR = {"xlsx": 3.5, "xlsb": 4.5, "ods": 1.5, "xls": 9.5}
"""Peak bytes per byte of the parts calamine loads, measured through ListFile and rounded up."""
_DENSE_CELL = 32
_ERRORS = frozenset({"#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#GETTING_DATA"})
_ODS = "application/vnd.oasis.opendocument.spreadsheet"


@dataclass(frozen=True)
class Sheet:
    name: str
    hidden: str | None  # "hidden", "very hidden"; None when visible
    kind: str  # "worksheet", or what else it is ("chart sheet"...)


class _Book(Protocol):
    engine: str
    sheets: list[Sheet]

    def rows(self, name: str) -> Generator[tuple[int, list[str]]]: ...  # (sheet row number, cells), from row 1
    def close(self) -> None: ...


class _Calamine:
    """The whole workbook through calamine; one sheet in memory at a time."""

    engine = "calamine"

    def __init__(self, payload: Payload, fmt: str) -> None:
        try:
            with payload.open() as stream:
                self._wb = pc.CalamineWorkbook.from_filelike(stream)
        except (pc.CalamineError, ValueError, OSError) as exc:
            raise ParseError(f"cannot read the {fmt} workbook: {exc}") from exc
        self._fmt = fmt
        self._last: tuple[str, pc.CalamineSheet] | None = None  # the sheet sampled last, kept for its reading
        self.sheets = []
        for m in self._wb.sheets_metadata:  # pyo3 enums: compared, not hashable
            hidden = "hidden" if m.visible == pc.SheetVisibleEnum.Hidden else None
            hidden = "very hidden" if m.visible == pc.SheetVisibleEnum.VeryHidden else hidden
            kind = "worksheet" if m.typ == pc.SheetTypeEnum.WorkSheet else str(m.typ).rpartition(".")[2]
            self.sheets.append(Sheet(m.name, hidden, kind))

    def rows(self, name: str) -> Generator[tuple[int, list[str]]]:
        if self._last is not None and self._last[0] == name:
            sheet = self._last[1]
        else:
            self._last = None  # never two sheets in memory
            try:
                sheet = self._wb.get_sheet_by_name(name)
            except pc.CalamineError as exc:
                raise ParseError(f"cannot read sheet {name!r} of the {self._fmt} workbook: {exc}") from exc
        try:
            # iter_rows starts at row 1 but at the sheet's first used column (python-calamine#177).
            lead = sheet.start[1] if sheet.start else 0
            for number, values in enumerate(sheet.iter_rows(), 1):
                yield number, texts(values, lead)
        finally:
            self._last = (name, sheet)

    def close(self) -> None:
        self._last = None
        with contextlib.suppress(pc.WorkbookClosed):
            self._wb.close()


class _Openpyxl:
    """An xlsx too large for calamine, streamed row by row by openpyxl's read-only mode."""

    engine = "openpyxl (read-only, streamed)"

    def __init__(self, payload: Payload) -> None:
        import openpyxl  # type: ignore[import-untyped]  # only for a large xlsx

        self._stream = payload.open()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "no default style", unsupported extensions
                self._wb = openpyxl.load_workbook(self._stream, read_only=True, data_only=True, keep_links=False)
        except Exception as exc:  # openpyxl raises anything from KeyError to AttributeError on a bad file
            self._stream.close()
            raise ParseError(f"cannot read the xlsx workbook: {type(exc).__name__}: {exc}") from exc
        states = {"hidden": "hidden", "veryHidden": "very hidden"}
        sheets = [self._wb[name] for name in self._wb.sheetnames]
        kinds = ["worksheet" if hasattr(ws, "reset_dimensions") else "chart sheet" for ws in sheets]
        self.sheets = [Sheet(ws.title, states.get(ws.sheet_state), k) for ws, k in zip(sheets, kinds, strict=True)]

    def rows(self, name: str) -> Generator[tuple[int, list[str]]]:
        ws = self._wb[name]
        ws.reset_dimensions()  # read-only mode trusts <dimension> and silently drops what lies past it
        for number, values in enumerate(ws.iter_rows(values_only=True), 1):
            # calamine reads error cells as empty; openpyxl gives their text
            yield number, texts("" if v in _ERRORS else v for v in values)

    def close(self) -> None:
        self._wb.close()
        self._stream.close()


def _inspect(payload: Payload) -> tuple[str, dict[str, Any], int, int, int]:
    """From the zip directory: (format, details, bytes of the largest sheet part, of the shared
    strings, cells of the largest declared dimension)."""
    if payload.head.startswith(OLE2_MAGIC):
        return "xls", {}, payload.path.stat().st_size, 0, 0
    try:
        with zipfile.ZipFile(payload.path) as zf:
            sizes = {i.filename: i.file_size for i in zf.infolist()}
            if "xl/workbook.bin" in sizes:
                fmt, ext, shared, details = "xlsb", ".bin", "xl/sharedStrings.bin", {}
            elif "xl/workbook.xml" in sizes:
                fmt, ext, shared = "xlsx", ".xml", "xl/sharedStrings.xml"
                details = {"variant": "xlsm"} if "xl/vbaProject.bin" in sizes else {}
            elif "mimetype" in sizes:
                kind = zf.read("mimetype")[:200].decode("ascii", "replace").strip()
                if kind not in (_ODS, f"{_ODS}-template"):
                    raise ParseError(f"the download is an OpenDocument file of type {kind!r}, not a spreadsheet")
                fmt, ext, shared, details = "ods", "content.xml", "", {}
            else:
                shown = ", ".join(sorted(sizes)[:6])
                raise ParseError(f"the download is an Office package without a workbook (it holds {shown})")
            parts = [n for n in sizes if n.endswith(ext) and (fmt == "ods" or n.startswith("xl/worksheets/"))]
            largest = max((sizes[n] for n in parts), default=0)
            dense = max((_declared_cells(zf, n) for n in parts), default=0) if fmt == "xlsx" else 0
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ParseError(f"broken workbook: {exc}") from exc
    return fmt, details, largest, sizes.get(shared, 0), dense


def _declared_cells(zf: zipfile.ZipFile, part: str) -> int:
    """The cells of a sheet's declared ``<dimension ref>``, read from the start of its part."""
    with zf.open(part) as stream:
        try:
            for _event, el in etree.iterparse(stream, events=("start",), resolve_entities=False, no_network=True):
                tag = el.tag.rpartition("}")[2]
                if tag == "dimension":
                    from openpyxl.utils.cell import range_boundaries  # type: ignore[import-untyped]

                    min_col, min_row, max_col, max_row = range_boundaries(el.get("ref", "A1"))
                    return int((max_col - min_col + 1) * (max_row - min_row + 1))
                if tag == "sheetData":
                    break
        except (etree.LxmlError, ValueError, TypeError):
            return 0  # calamine will say what is wrong with the part
    return 0


def _sample(book: _Book, name: str) -> list[tuple[int, list[str]]]:
    with contextlib.closing(book.rows(name)) as rows:
        return list(islice(rows, SAMPLE_ROWS))


def _choose(sheets: Sequence[Sheet], wanted: str) -> Sheet:
    exact = [s for s in sheets if s.name == wanted] or [s for s in sheets if s.name.lower() == wanted.strip().lower()]
    if exact:
        return exact[0]
    if wanted.strip().isdigit() and 1 <= int(wanted) <= len(sheets):
        return sheets[int(wanted) - 1]
    names = ", ".join(repr(s.name) for s in sheets)
    raise ParseError(f"--sheet {wanted!r}: no such sheet; the sheets are {names} (or 1-{len(sheets)} by position)")


def _no_table(sample: list[tuple[int, list[str]]], exc: ParseError) -> str:
    """Why a sheet is skipped, said plainly when it has an ISIN header but no rows under it."""
    if str(exc).startswith("no header with an ISIN column"):
        for line, cells in sample:
            named = [c for c in cells if len(c) < 40 and names_isin(normalise_header(c, 0))]
            if named:
                return f"a header {named[0]!r} on row {line} but no ISINs under it"
    return shorten(str(exc), 400)


class SpreadsheetReader:
    """The rows of every sheet of a workbook that has an ISIN column."""

    end_proven = True  # the workbook's own directory and structure proved it whole when it opened
    unterminated = False

    def __init__(self, book: _Book, fmt: str, hints: ReadHints, details: dict[str, Any]) -> None:
        self.format = fmt
        self._book = book
        chosen = _choose(book.sheets, hints.sheet) if hints.sheet else None
        self._tables: list[tuple[Sheet, TableLayout]] = []
        read: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for sheet in book.sheets:
            if chosen is not None and sheet is not chosen:
                skipped.append({"sheet": sheet.name, "reason": f"not the sheet chosen with --sheet {hints.sheet}"})
                continue
            if sheet.kind != "worksheet" or (sheet.hidden and chosen is None):
                reason = f"a {sheet.kind}, not a worksheet" if sheet.kind != "worksheet" else f"{sheet.hidden}"
                if chosen is not None:
                    raise ParseError(f"--sheet {hints.sheet}: sheet {sheet.name!r} is {reason}")
                skipped.append({"sheet": sheet.name, "reason": f"{reason} (name it with --sheet to read it)"})
                continue
            sample = _sample(book, sheet.name)
            try:
                layout = detect_table(sample, column=hints.column, header_line=hints.header_row, table=sheet.name)
            except ParseError as exc:
                if chosen is not None or "hold ISINs" in str(exc):
                    raise
                skipped.append({"sheet": sheet.name, "reason": _no_table(sample, exc)})
                continue
            self._tables.append((sheet, layout))
            read.append({"sheet": sheet.name, "header_row": layout.header_line, "isin_column": layout.isin_header})
        if not self._tables:
            why = "; ".join(f"{s['sheet']!r}: {s['reason']}" for s in skipped) or "it has no sheets"
            raise ParseError(
                f"no sheet of the {fmt} workbook has an ISIN column (looked at the first {SAMPLE_ROWS} rows "
                f"of each sheet): {why}"
            )
        self.columns: list[ColumnChoice] = [layout.column for _, layout in self._tables]
        self.details: dict[str, Any] = {**details, "engine": book.engine, "sheets": read, "skipped_sheets": skipped}

    def rows(self) -> Iterator[Item]:
        try:
            for (sheet, layout), info in zip(self._tables, self.details["sheets"], strict=True):
                table = TableRows(layout, f"sheet {sheet.name!r}")
                for line, cells in self._book.rows(sheet.name):
                    if (item := table.item(line, cells)) is not None:
                        yield item
                info.update(table.counts())
        finally:
            self._book.close()


class TableRows:
    """A table's rows (a sheet's, an HTML table's) as items, once its layout is known.

    The header and the rows above it, blank rows and notes are not items. A note is a row whose
    one value is not an ISIN and lies outside the ISIN column (a footer, a disclaimer, a heading),
    or a row between the header and the first ISIN with nothing in the ISIN column (a second
    header row: units, sub-headers under a merged one).
    """

    def __init__(self, layout: TableLayout, where: str) -> None:
        self._layout = layout
        self._where = where
        self._wide = len(layout.names) > 1
        self._started = False
        self.rows = self.notes = 0

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "note_rows": self.notes} if self.notes else {"rows": self.rows}

    def item(self, line: int, cells: list[str]) -> Item | None:
        layout, col = self._layout, self._layout.isin_col
        if line <= layout.header_line or not cells:
            return None
        if self._wide and (col >= len(cells) or not cells[col]):
            values = [c for c in cells if c]
            if not self._started or (len(values) == 1 and not is_isin(values[0])):
                self.notes += 1
                return None
        self._started = True
        self.rows += 1
        where = f"{self._where} row {line}"
        if (sum(map(len, cells)) + len(cells)) * 4 > MAX_ROW_BYTES:
            text = "\t".join(cells)
            if len(text.encode()) > MAX_ROW_BYTES:
                reason = f"the row is longer than {MAX_ROW_BYTES} bytes"
                return BadRow(line, shorten(text), RowError.MALFORMED_ROW, reason, where)
        names = layout.names
        attributes = {
            (names[i] if i < len(names) else f"column_{i + 1}"): value
            for i, value in enumerate(cells)
            if value and i != col
        }
        return Row(line, cells[col] if col < len(cells) else "", attributes, cells, where)


def _too_large(fmt: str, estimate: int, what: str) -> ParseError:
    return ParseError(
        f"the {fmt} workbook is too large to read: {what} would take about {estimate // 1024**2} MB in memory, "
        f"over the limit of {MAX_IN_MEMORY // 1024**2} MB (only xlsx sheets can be streamed); ask the publisher "
        "for xlsx or CSV, or convert it"
    )


def open_spreadsheet(payload: Payload, hints: ReadHints) -> SpreadsheetReader:
    """The reader of a workbook, its format told by its content, its sheets and columns detected."""
    fmt, details, sheet_bytes, shared_bytes, declared = _inspect(payload)
    if hints.format and hints.format != fmt:
        raise ParseError(f"--format {hints.format}: the download is an {fmt} workbook, not {hints.format}")
    estimate = int(_FACTOR[fmt] * (sheet_bytes + shared_bytes))
    details["estimated_peak_mb"] = round(estimate / 1024**2, 1)
    book: _Book
    if fmt == "xlsx" and (estimate > CALAMINE_BUDGET or declared * _DENSE_CELL > MAX_IN_MEMORY):
        if _FACTOR[fmt] * shared_bytes > MAX_IN_MEMORY:  # openpyxl keeps the shared strings in memory too
            raise _too_large(fmt, int(_FACTOR[fmt] * shared_bytes), "its shared strings alone")
        logger.info("xlsx estimated at %.0f MB in calamine: streaming it with openpyxl", estimate / 1024**2)
        book = _Openpyxl(payload)
    elif estimate > MAX_IN_MEMORY:
        raise _too_large(fmt, estimate, "its largest sheet")
    else:
        book = _Calamine(payload, fmt)
    try:
        return SpreadsheetReader(book, fmt, hints, details)
    except BaseException:
        book.close()
        raise
