"""Workbooks through ListFile: the real xlsx and xls lists, and synthetic workbooks for the edge cases.

Expected figures come from PROVENANCE.txt and are recomputed here with another reader
(openpyxl for xlsx, python-calamine's raw cells for the xls), never with the reader under test.
The synthetic workbooks are written by openpyxl (or, for ods, by hand) inside the tests.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import shutil
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl  # type: ignore[import-untyped]
import pytest
import python_calamine as pc

import producer.reading.spreadsheet as spreadsheet
from core.errors import ParseError
from core.isin import is_isin, known_prefix
from producer.reading import BadRow, ColumnBy, ListFile, ReadHints, Row
from producer.reading.model import MAX_ROW_BYTES
from tests.conftest import SHARED

FORMATS = SHARED / "data" / "formats"
DBAG = FORMATS / "dbag_Listed-companies_20210801.xlsx"
LSE = FORMATS / "lse_Instrument_list_20201031.xlsx"
GPW = FORMATS / "gpw_archiwum-notowan_akcje_20220210.xls"


def read(path: Path, **hints: Any) -> tuple[ListFile, list[Row | BadRow]]:
    with ListFile(path, ReadHints(**hints)) as reader:
        items = list(reader.rows())
    return reader, items


def by_sheet(items: list[Row | BadRow]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for item in items:
        assert isinstance(item, Row), item
        out.setdefault(item.where.split("'")[1], []).append(item)
    return out


def provenance_valid(text: str) -> bool:
    """PROVENANCE.txt's own check, written out here: the shape and the check digit."""
    if not re.fullmatch(r"[A-Z]{2}[A-Z0-9]{9}[0-9]", text):
        return False
    digits = "".join(str(int(c, 36)) for c in text)
    total = sum(d if i % 2 == 0 else d * 2 - 9 * (d > 4) for i, d in enumerate(int(c) for c in reversed(digits)))
    return total % 10 == 0


def openpyxl_column(path: Path, col: int, first_row: int) -> dict[str, set[str]]:
    """Per sheet, the stripped values of one column from ``first_row`` down, read by openpyxl."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LSE: "Workbook contains no default style"
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    out: dict[str, set[str]] = {}
    for ws in wb.worksheets:
        ws.reset_dimensions()
        values = (r[col] for r in ws.iter_rows(min_row=first_row, values_only=True) if len(r) > col)
        out[ws.title] = {str(v).strip() for v in values if v is not None and str(v).strip()}
    wb.close()
    return out


# -- the real lists ---------------------------------------------------------------------------


def test_deutsche_boerse_reads_every_data_sheet_and_skips_the_cover() -> None:
    reader, items = read(DBAG)
    d = reader.detected
    assert (d.format, d.container) == ("xlsx", "office")
    assert [(s["sheet"], s["header_row"], s["isin_column"], s["rows"]) for s in d.details["sheets"]] == [
        ("Prime Standard", 8, "ISIN", 319),
        ("General Standard", 8, "ISIN", 138),
        ("Scale", 8, "ISIN", 47),
    ]
    assert [s["sheet"] for s in d.details["skipped_sheets"]] == ["Cover"]
    assert "no header with an ISIN column" in d.details["skipped_sheets"][0]["reason"]
    assert d.column_identity == "Prime Standard!ISIN | General Standard!ISIN | Scale!ISIN"
    assert reader.column_by is ColumnBy.HEADER
    assert reader.end_proven and not reader.unterminated
    sheets = by_sheet(items)
    expected = openpyxl_column(DBAG, 0, 9)
    for name, provenance in (("Prime Standard", 318), ("General Standard", 138), ("Scale", 47)):
        got = {r.isin for r in sheets[name] if is_isin(r.isin)}
        assert got == {v for v in expected[name] if is_isin(v)}
        assert len(got) == provenance
    assert len({r.isin for r in items if isinstance(r, Row) and is_isin(r.isin)}) == 503
    first = sheets["Prime Standard"][0]
    assert (first.line, first.where, first.isin) == (9, "sheet 'Prime Standard' row 9", "LU2356314745")
    assert first.attributes == {
        "trading_symbol": "NVM",
        "company": "Novem Group S.A.",
        "sector": "Automobile",
        "subsector": "Auto Parts & Equipment",
        "country": "Luxembourg",
        "instrument_exchange": "XETRA + FRANKFURT",  # trailing space stripped
    }


def test_london_stock_exchange_workbook_of_fourteen_sheets() -> None:
    reader, items = read(LSE)
    d = reader.detected
    assert d.format == "xlsx" and reader.column_by is ColumnBy.HEADER
    assert {s["header_row"] for s in d.details["sheets"]} == {8}
    assert {s["isin_column"] for s in d.details["sheets"]} == {"ISIN"}
    skipped = {s["sheet"]: s["reason"] for s in d.details["skipped_sheets"]}
    assert set(skipped) == {"1.4 Certificates", "2.6 Emission Allowances", "Disclaimer"}
    assert skipped["1.4 Certificates"] == "a header 'ISIN' on row 8 but no ISINs under it"
    assert "no header with an ISIN column" in skipped["Disclaimer"]
    # Each data sheet ends with a one-cell disclaimer row in column A: a note, not a row.
    assert {s["note_rows"] for s in d.details["sheets"]} == {1}
    sheets = by_sheet(items)
    expected = openpyxl_column(LSE, 3, 9)  # ISIN is column D; the header is row 8
    provenance = {  # PROVENANCE.txt, distinct ISINs per sheet by its shape + check digit rule
        "1.0 All Equity": 3484, "1.1 Shares": 1979, "1.2 Depository Receipts": 217, "1.3 ETFs": 1284,
        "1.5 Others": 4, "2.0 All Non-Equity": 12902, "2.1 Bonds": 11849, "2.2 ETCs": 257, "2.3 ETNs": 97,
        "2.4 Securitised Derivatives": 698, "2.5 SFPs": 8,
    }  # fmt: skip
    assert set(sheets) == set(provenance)
    for name, figure in provenance.items():
        got = {r.isin for r in sheets[name]}
        assert got == expected[name]
        assert len({v for v in got if provenance_valid(v)}) == figure
    every = {r.isin for r in items if isinstance(r, Row)}
    assert len({v for v in every if provenance_valid(v)}) == 16386
    # core.isin agrees, the 20 distinct "QQ..." codes (a prefix python-stdnum does not know) included
    assert {v for v in every if is_isin(v)} == {v for v in every if provenance_valid(v)}
    assert {v[:2] for v in every if provenance_valid(v) and not known_prefix(v)} == {"QQ"}


def test_warsaw_xls_biff8() -> None:
    reader, items = read(GPW)
    d = reader.detected
    assert (d.format, d.container) == ("xls", "none")
    assert d.details["sheets"] == [{"sheet": "Worksheet", "header_row": 1, "isin_column": "ISIN", "rows": 428}]
    assert d.details["skipped_sheets"] == []
    assert reader.column_by is ColumnBy.HEADER and reader.end_proven
    # Independent: calamine's raw cells of column C, rows 2-429 (PROVENANCE: 428 rows, 428 distinct valid).
    raw = pc.CalamineWorkbook.from_path(GPW).get_sheet_by_index(0).to_python()
    expected = [str(r[2]).strip() for r in raw[1:]]
    assert len(expected) == 428 and len(set(expected)) == 428
    assert [r.isin for r in items if isinstance(r, Row)] == expected
    assert all(is_isin(v) for v in expected)
    first = items[0]
    assert isinstance(first, Row) and first.line == 2 and first.isin == "PLNFI0600010"
    assert first.attributes["data"] == "2022-02-10"  # a text cell
    assert first.attributes["kurs_otwarcia"] == "2.955"
    assert first.attributes["wolumen"] == "9236"  # 9236.0
    assert (first.attributes["zmiana"], first.attributes["cena_nominalna"]) == ("-0.68", "0")  # 0.0 is "0"


# -- synthetic workbooks ----------------------------------------------------------------------

ISINS = ["US0378331005", "US5949181045", "DE0005557508", "GB0002634946", "FR0000120271", "NL0000235190"]


def workbook(path: Path, sheets: dict[str, list[list[Any]]], **options: Any) -> Path:
    """Synthetic: an xlsx written by openpyxl, one sheet per entry, rows from A1."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
        if name in options.get("hidden", ()):
            ws.sheet_state = "hidden"
    wb.save(path)
    return path


def table(n: int = 6, header: tuple[str, ...] = ("ISIN", "Name")) -> list[list[Any]]:
    return [list(header)] + [[ISINS[i % len(ISINS)], f"Company {i}"] for i in range(n)]


def isins(items: list[Row | BadRow]) -> list[str]:
    return [i.isin for i in items if isinstance(i, Row)]


def test_wrong_declared_dimension_is_ignored_by_both_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synthetic: data to E40, but the sheet declares A1:B2 (openpyxl's read-only mode would stop there)."""
    rows: list[list[Any]] = [["ISIN", "Name", "Price", "Listed", "Active"]]
    for i in range(39):
        rows.append([ISINS[i % 6], f"C{i}", 12345.0 if i % 2 else 1.25, dt.datetime(2020, 1, 2), i % 3 == 0])
    good = workbook(tmp_path / "good.xlsx", {"Data": rows})

    def declared(ref: bytes) -> Path:
        out = tmp_path / f"declared-{ref.decode().replace(':', '-')}.xlsx"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "xl/worksheets/sheet1.xml":
                    data, n = re.subn(rb'<dimension ref="[^"]+"', b'<dimension ref="' + ref + b'"', data)
                    assert n == 1
                dst.writestr(info, data)
        return out

    bad = declared(b"A1:B2")
    _, calamine_items = read(bad)
    # A declared grid too large for calamine's dense one (a stray cell at XFD1048576) goes to openpyxl.
    reader, items = read(declared(b"A1:XFD1048576"))
    assert reader.detected.details["engine"] == "openpyxl (read-only, streamed)" and items == calamine_items
    monkeypatch.setattr(spreadsheet, "CALAMINE_BUDGET", 0)
    reader, openpyxl_items = read(bad)
    assert reader.detected.details["engine"] == "openpyxl (read-only, streamed)"
    assert calamine_items == openpyxl_items  # the same rows, cells and text from both engines
    assert [i.line for i in calamine_items] == list(range(2, 41))
    second = calamine_items[1]
    assert isinstance(second, Row)
    assert second.attributes == {"name": "C1", "price": "12345", "listed": "2020-01-02", "active": "false"}


def test_merged_title_offset_table_and_placeholder_cells(tmp_path: Path) -> None:
    """Synthetic: a merged title over B2:F3, the table from B6 (header) down, cells of spaces, and a
    stray run of spaces far to the right (dbag's Prime Standard has one at column 3324)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "List"
    ws["B2"] = "Instruments listed"
    ws.merge_cells("B2:F3")
    for col, text in enumerate(["Name", "ISIN", "Segment"], start=2):
        ws.cell(6, col, text)
    for i, isin in enumerate(ISINS):
        ws.cell(7 + i, 2, f"Company {i}")
        ws.cell(7 + i, 3, isin)
        ws.cell(7 + i, 4, "   " if i % 2 else "Main")
    ws.cell(8, 300, "    ")
    ws.cell(20, 2, "   ")  # a row of placeholders only: blank
    wb.save(tmp_path / "merged.xlsx")
    reader, items = read(tmp_path / "merged.xlsx")
    assert reader.detected.details["sheets"] == [{"sheet": "List", "header_row": 6, "isin_column": "ISIN", "rows": 6}]
    assert reader.detected.columns[0].index == 2  # column C: real columns, though the sheet starts at B
    assert isins(items) == ISINS
    rows = [i for i in items if isinstance(i, Row)]
    assert [r.line for r in rows] == list(range(7, 13))
    assert rows[1].attributes == {"name": "Company 1"}  # "   " is empty
    assert rows[1].raw == ["", "Company 1", ISINS[1]]  # trailing empty cells dropped
    assert rows[0].attributes == {"name": "Company 0", "segment": "Main"}
    _, by_index = read(tmp_path / "merged.xlsx", column="3", header_row=6)
    assert isins(by_index) == ISINS


def test_sheet_hint_reads_one_sheet_and_an_unknown_one_fails(tmp_path: Path) -> None:
    path = workbook(tmp_path / "two.xlsx", {"Shares": table(3), "Bonds": table(5)})
    reader, items = read(path)
    assert [s["sheet"] for s in reader.detected.details["sheets"]] == ["Shares", "Bonds"]
    assert len(items) == 8
    for hint in ("Bonds", "bonds", "2"):
        reader, items = read(path, sheet=hint)
        assert [s["sheet"] for s in reader.detected.details["sheets"]] == ["Bonds"]
        assert reader.detected.column_identity == "Bonds!ISIN" and len(items) == 5
    with pytest.raises(ParseError, match=r"--sheet 'Funds': no such sheet; the sheets are 'Shares', 'Bonds'"):
        read(path, sheet="Funds")


def test_hidden_sheets_are_skipped_unless_named(tmp_path: Path) -> None:
    path = workbook(tmp_path / "hidden.xlsx", {"List": table(2), "Old": table(4)}, hidden={"Old"})
    reader, items = read(path)
    assert reader.detected.details["skipped_sheets"] == [
        {"sheet": "Old", "reason": "hidden (name it with --sheet to read it)"}
    ]
    assert len(items) == 2
    reader, items = read(path, sheet="Old")
    assert len(items) == 4


def test_two_isin_columns_fail_naming_the_sheet_and_both(tmp_path: Path) -> None:
    rows = [["Security ISIN", "Name", "Underlying ISIN"]] + [[ISINS[i], "x", ISINS[-i - 1]] for i in range(6)]
    path = workbook(tmp_path / "two.xlsx", {"Cover": [["Warrants"]], "Warrants": rows})
    with pytest.raises(ParseError) as err:
        read(path)
    assert "Warrants" in str(err.value)
    assert "'Security ISIN' (column 1)" in str(err.value) and "'Underlying ISIN' (column 3)" in str(err.value)
    _, items = read(path, column="Security ISIN")
    assert isins(items) == ISINS


def test_a_workbook_without_an_isin_column_fails_clearly(tmp_path: Path) -> None:
    path = workbook(tmp_path / "none.xlsx", {"Prices": [["Name", "Price"], ["Apple", 1.5]], "Empty": []})
    with pytest.raises(ParseError) as err:
        read(path)
    message = str(err.value)
    assert message.startswith("no sheet of the xlsx workbook has an ISIN column (looked at the first 1000 rows")
    assert "'Prices': no header with an ISIN column" in message and "'Empty': " in message


def test_a_row_over_the_size_limit_is_a_bad_row(tmp_path: Path) -> None:
    long_row = [ISINS[0], *["x" * 30000] * (MAX_ROW_BYTES // 30000 + 1)]
    rows = [*table(3), long_row, [ISINS[1], "after"]]
    _, items = read(workbook(tmp_path / "long.xlsx", {"Data": rows}))
    bad = [i for i in items if isinstance(i, BadRow)]
    assert len(bad) == 1 and bad[0].line == 5 and "longer than" in bad[0].reason
    assert bad[0].where == "sheet 'Data' row 5" and len(bad[0].raw) <= 4000
    assert isins(items)[-1] == ISINS[1]


@pytest.mark.parametrize("pack", ["zip", "gzip"])
def test_xlsx_inside_a_zip_or_a_gzip(tmp_path: Path, pack: str) -> None:
    packed = tmp_path / f"list.{pack}"
    if pack == "zip":
        with zipfile.ZipFile(packed, "w") as z:
            z.write(DBAG, "Listed-companies.xlsx")
    else:
        with open(DBAG, "rb") as src, gzip.open(packed, "wb") as dst:
            shutil.copyfileobj(src, dst)
    reader, items = read(packed)
    assert reader.detected.container == f"{pack}+office" and reader.detected.format == "xlsx"
    assert len({i.isin for i in items if isinstance(i, Row)}) == 503


def test_a_large_xlsx_goes_to_openpyxl_with_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    _, calamine_items = read(DBAG)
    monkeypatch.setattr(spreadsheet, "CALAMINE_BUDGET", 1024)
    reader, openpyxl_items = read(DBAG)
    assert reader.detected.details["engine"] == "openpyxl (read-only, streamed)"
    assert openpyxl_items == calamine_items


def test_workbooks_over_the_memory_limit_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spreadsheet, "MAX_IN_MEMORY", 100_000)
    with pytest.raises(ParseError, match=r"the xls workbook is too large to read: .* over the limit of 0 MB"):
        read(GPW)


def ods(path: Path, rows: list[list[str]]) -> Path:
    """Synthetic: a minimal OpenDocument spreadsheet, written by hand."""
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    cell = '<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>'
    body = "".join("<table:table-row>" + "".join(cell.format(v) for v in r) + "</table:table-row>" for r in rows)
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2"><office:body>'
        f'<office:spreadsheet><table:table table:name="Liste">{body}</table:table></office:spreadsheet>'
        "</office:body></office:document-content>"
    )
    manifest = (
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument'
        '.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
    return path


def test_ods_is_told_by_its_content_not_its_name(tmp_path: Path) -> None:
    path = ods(tmp_path / "list.xlsx", [["Titel"], [], ["ISIN", "Name"], *[[v, "n"] for v in ISINS]])
    reader, items = read(path)
    assert reader.detected.format == "ods"
    assert reader.detected.details["sheets"] == [{"sheet": "Liste", "header_row": 3, "isin_column": "ISIN", "rows": 6}]
    assert isins(items) == ISINS and items[0].line == 4


def test_an_office_file_that_is_no_workbook_and_a_wrong_format_hint_fail(tmp_path: Path) -> None:
    docx = tmp_path / "list.xlsx"
    with zipfile.ZipFile(docx, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<document/>")
    with pytest.raises(ParseError, match=r"an Office package without a workbook \(it holds \[Content_Types\]"):
        read(docx)
    with pytest.raises(ParseError, match="--format ods: the download is an xlsx workbook, not ods"):
        read(DBAG, format="ods")


def test_an_ole2_file_that_is_no_workbook_fails(tmp_path: Path) -> None:
    """Synthetic: the OLE2 magic and nothing of a workbook (a .doc, or an encrypted xlsx, is OLE2 too)."""
    path = tmp_path / "list.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    with pytest.raises(ParseError, match="cannot read the xls workbook: "):
        read(path)


def test_calamine_row_shape_is_pinned(tmp_path: Path) -> None:
    """python-calamine's iter_rows starts at row 1 but at the first used column (python-calamine#177):
    the reader pads the columns back. An upgrade that changes this fails here, not in a run."""
    wb = openpyxl.Workbook()
    wb.active["C5"] = "ISIN"
    wb.active["D6"] = "x"
    wb.save(tmp_path / "offset.xlsx")
    sheet = pc.CalamineWorkbook.from_path(tmp_path / "offset.xlsx").get_sheet_by_index(0)
    rows: Iterator[list[Any]] = iter(sheet.iter_rows())
    assert sheet.start == (4, 2)
    assert [next(rows) for _ in range(6)] == [["", ""]] * 4 + [["ISIN", ""], ["", "x"]]
