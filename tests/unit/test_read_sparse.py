"""The ISIN column's judgement counts only the records with a value in it (``mostly_isins`` in
producer/reading/columns.py), in every format: a column whose non-empty values are ISINs
qualifies however many records leave it blank, but not on a handful of values.

The lists are made from the real ones in ../shared/data, with ISIN cells blanked: the expected
ISINs are what is left, read by the standard library, never by the reader under test."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import openpyxl  # type: ignore[import-untyped]
import pytest

from core.errors import ParseError
from core.isin import is_isin
from producer.reading import ColumnBy, Row
from producer.reading.columns import MIN_ISINS, mostly_isins
from tests.conftest import SHARED
from tests.unit.reading import csv_rows, read

NSE = SHARED / "data" / "nse_EQUITY_L.csv"
KONEX = SHARED / "data" / "formats" / "kis_konex_code.mst"
ISIN = " ISIN NUMBER"


def blanked(keep: int = 2, of: int = 5) -> tuple[list[dict[str, str]], set[str], int]:
    """NSE's rows with the ISIN blanked in all but ``keep`` of every ``of`` rows (the first kept):
    (rows, the ISINs left, the rows blanked)."""
    rows = csv_rows(NSE)
    for n, r in enumerate(rows):
        if n % of >= keep:
            r[ISIN] = ""
    left = {r[ISIN] for r in rows if r[ISIN]}
    return rows, left, sum(1 for r in rows if not r[ISIN])


def as_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write(tmp_path: Path, text: str | bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def valid(rows: list[Row]) -> set[str]:
    return {r.isin.strip() for r in rows if r.isin.strip()}


def test_the_rule() -> None:
    assert mostly_isins(valid=956, filled=956, records=2387)  # 60 % blank, every value an ISIN
    assert not mostly_isins(valid=400, filled=956, records=2387)  # most values are something else
    assert mostly_isins(valid=MIN_ISINS, filled=MIN_ISINS, records=1000)
    assert not mostly_isins(valid=MIN_ISINS - 1, filled=MIN_ISINS - 1, records=1000)  # a handful
    assert mostly_isins(valid=3, filled=3, records=6)  # a small table: half its rows
    assert not mostly_isins(valid=2, filled=2, records=6)
    assert not mostly_isins(valid=0, filled=0, records=0)


@pytest.mark.usefixtures("shared_data")
def test_csv_with_most_isin_cells_blank_made_from_nse(tmp_path: Path) -> None:
    rows, left, blank = blanked()
    assert (len(left), blank) == (956, 1431)  # 40 % filled: under half of the rows
    lf, got, bad = read(write(tmp_path, as_csv(rows), "EQUITY_L.csv"))
    assert lf.detected.format == "csv" and lf.detected.details["header_row"] == 1
    assert lf.detected.column_identity == "ISIN NUMBER" and lf.column_by is ColumnBy.NAMED
    assert not bad and len(got) == 2387
    assert valid(got) == left
    assert sum(1 for r in got if not r.isin) == blank  # a row without an ISIN is still a row
    assert got[2].isin == "" and got[2].attributes["symbol"] == rows[2]["SYMBOL"]


@pytest.mark.usefixtures("shared_data")
def test_a_column_with_a_handful_of_isins_does_not_qualify(tmp_path: Path) -> None:
    # Detection reads the first 1000 lines (the header and 999 rows).
    rows, left, _blank = blanked(keep=1, of=53)  # 19 ISINs in those rows (46 in the file)
    assert sum(1 for r in rows[:999] if r[ISIN]) == MIN_ISINS - 1
    with pytest.raises(ParseError, match="no header with an ISIN column and no column of ISINs"):
        read(write(tmp_path, as_csv(rows), "few.csv"))
    rows, left, _blank = blanked(keep=1, of=50)  # 20 ISINs in those rows: enough
    assert sum(1 for r in rows[:999] if r[ISIN]) == MIN_ISINS
    lf, got, _bad = read(write(tmp_path, as_csv(rows), "enough.csv"))
    assert lf.detected.column_identity == "ISIN NUMBER" and valid(got) == left


@pytest.mark.usefixtures("shared_data")
def test_a_sparse_second_isin_column_does_not_compete_with_a_full_one(tmp_path: Path) -> None:
    rows = csv_rows(NSE)[:500]
    text = "Symbol,ISIN Code,New ISIN\n" + "".join(
        f"{r['SYMBOL']},{r[ISIN]},{rows[-1 - n][ISIN] if n % 10 == 0 else ''}\n" for n, r in enumerate(rows)
    )
    lf, got, _bad = read(write(tmp_path, text, "changes.csv"))
    assert lf.detected.column_identity == "ISIN Code" and lf.column_by is ColumnBy.NAMED
    assert [r.isin for r in got] == [r[ISIN] for r in rows]
    # both sparse: no column is the list's by its values, and none is named exactly ISIN
    sparse = "Symbol,ISIN Code,New ISIN\n" + "".join(
        f"{r['SYMBOL']},{r[ISIN] if n % 3 == 0 else ''},{rows[-1 - n][ISIN] if n % 3 == 1 else ''}\n"
        for n, r in enumerate(rows)
    )
    with pytest.raises(ParseError, match=r"'ISIN Code' \(column 2\) and 'New ISIN' \(column 3\)"):
        read(write(tmp_path, sparse, "sparse.csv"))


@pytest.mark.usefixtures("shared_data")
def test_xlsx_sheet_with_blank_isin_cells_and_a_sheet_with_a_handful(tmp_path: Path) -> None:
    rows, left, blank = blanked()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Equity"
    ws.append(["Securities listed on NSE"])
    ws.append([])
    ws.append(list(rows[0]))
    for r in rows:
        ws.append(list(r.values()))
    notes = wb.create_sheet("Changes")
    notes.append(["Symbol", "Replaced by ISIN"])
    for n, r in enumerate(csv_rows(NSE)[:300]):
        notes.append([r["SYMBOL"], r[ISIN] if n < 10 else None])
    wb.save(tmp_path / "list.xlsx")

    lf, got, bad = read(tmp_path / "list.xlsx")

    d = lf.detected.details
    assert d["sheets"] == [{"sheet": "Equity", "header_row": 3, "isin_column": "ISIN NUMBER", "rows": 2387}]
    assert [s["sheet"] for s in d["skipped_sheets"]] == ["Changes"]  # 10 ISINs in 300 rows: not a list
    assert not bad and valid(got) == left
    assert sum(1 for r in got if not r.isin) == blank


@pytest.mark.usefixtures("shared_data")
def test_html_table_with_blank_isin_cells(tmp_path: Path) -> None:
    rows, left, _blank = blanked()
    cells = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r.values()) + "</tr>" for r in rows)
    head = "<tr>" + "".join(f"<th>{k}</th>" for k in rows[0]) + "</tr>"
    page = f"<html><head><title>NSE</title></head><body><table>{head}{cells}</table></body></html>"
    lf, got, _bad = read(write(tmp_path, page, "EQUITY_L.xls"))
    assert lf.detected.format == "html" and lf.detected.column_identity == "table 1!ISIN NUMBER"
    assert valid(got) == left and len(got) == 2387


@pytest.mark.usefixtures("shared_data")
def test_json_records_leaving_the_isin_blank_or_out(tmp_path: Path) -> None:
    rows, left, _blank = blanked()
    records = []
    for n, r in enumerate(rows):
        record = {"symbol": r["SYMBOL"], "name": r["NAME OF COMPANY"], "isin": r[ISIN]}
        if not r[ISIN] and n % 2:
            del record["isin"]  # left out, not just blank
        records.append(record)
    lf, got, bad = read(write(tmp_path, json.dumps({"data": records}), "list.json"))
    assert lf.detected.column_identity == "data[*].isin" and lf.column_by is ColumnBy.HEADER
    assert not bad and len(got) == 2387 and valid(got) == left


@pytest.mark.usefixtures("shared_data")
def test_xml_records_leaving_the_isin_attribute_blank_or_out(tmp_path: Path) -> None:
    rows, left, _blank = blanked()
    lines = []
    for n, r in enumerate(rows):
        isin = f" ISIN={quoteattr(r[ISIN])}" if r[ISIN] or n % 2 else ""
        lines.append(f"<row SECID={quoteattr(r['SYMBOL'])}{isin}/>")
    lf, got, bad = read(write(tmp_path, "<rows>\n" + "\n".join(lines) + "\n</rows>\n", "list.xml"))
    assert lf.detected.details == {"record": "rows/row", "isin_path": "@ISIN", "records": 2387}
    assert not bad and valid(got) == left


@pytest.mark.usefixtures("shared_data")
def test_fixed_width_records_with_blank_isin_bytes(tmp_path: Path) -> None:
    lines = KONEX.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 120
    # Bytes 1-61 of each record: code, ISIN, name. Bytes 84-95 of the flags after them hold
    # "NN00NNN00000" in 114 records, which passes the ISIN check: kept, it would outnumber the
    # ISINs left here, as it would have before blanks stopped counting.
    records = [ln[:61] for ln in lines[:-1]]
    for n in range(len(records)):
        if n % 5 in (1, 2, 3):
            records[n] = records[n][:9] + b" " * 12 + records[n][21:]
    left = {r[9:21].decode() for r in records if r[9:21].strip()}
    assert len(left) == 47 and all(is_isin(i) for i in left)  # under half of the 119 records
    lf, got, bad = read(write(tmp_path, b"\n".join([*records, b""]), "konex_code.mst"))
    assert lf.detected.format == "fixed" and lf.detected.details["isin_at"] == "10:21"
    assert not bad and valid(got) == left
    # a last record without an ISIN is a trailer record (the fixed-width reader's rule)
    assert len(got) == 118 and lf.detected.details["trailer_records"] == 1
