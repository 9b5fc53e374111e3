"""HTML tables through ListFile: a list saved as a web page (often with an .xls name), and error pages.

Every page here is synthetic, made in the test; the NSE one carries the first 500 rows of the real
``nse_EQUITY_L.csv``, and its expected figures are computed from the CSV with the csv module.
"""

from __future__ import annotations

import csv
import gzip
import html
from pathlib import Path
from typing import Any

import pytest

import producer.reading.htmltable as htmltable
from core.errors import ParseError
from core.isin import is_isin
from producer.reading import BadRow, ColumnBy, ListFile, ReadHints, Row
from tests.conftest import SHARED

NSE = SHARED / "data" / "nse_EQUITY_L.csv"
ISINS = ["US0378331005", "US5949181045", "DE0005557508", "GB0002634946"]


def read(path: Path, **hints: Any) -> tuple[ListFile, list[Row | BadRow]]:
    with ListFile(path, ReadHints(**hints)) as reader:
        items = list(reader.rows())
    return reader, items


def page(path: Path, body: str, title: str = "List", encoding: str = "utf-8") -> Path:
    head = f"<head><meta charset='{encoding}'><title>{title}</title></head>"
    path.write_bytes(f"<!DOCTYPE html>\n<html>{head}<body>{body}</body></html>\n".encode(encoding))
    return path


def html_table(rows: list[list[str]], attrs: str = "") -> str:
    head = "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>\n" for r in rows[1:])
    return f"<table{attrs}>{head}<tbody>{body}</tbody></table>"


def test_an_nse_list_saved_as_an_html_table_with_an_xls_name(tmp_path: Path) -> None:
    with open(NSE, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[:501]
    expected = [r[6].strip() for r in rows[1:]]  # " ISIN NUMBER"
    nav = "<table id='nav'><tr><td>Home</td><td>Equities</td></tr></table>"
    path = page(tmp_path / "EQUITY_L.xls", nav + html_table(rows, " class='list'"), title="NSE - Equity")
    reader, items = read(path)
    d = reader.detected
    assert (d.format, d.container) == ("html", "none")
    assert d.details["title"] == "NSE - Equity" and d.details["encoding"] == "utf-8"
    assert d.details["tables"] == [{"table": "table 2", "header_row": 1, "isin_column": "ISIN NUMBER", "rows": 500}]
    assert [s["table"] for s in d.details["skipped_tables"]] == ["table #nav"]
    assert d.column_identity == "table 2!ISIN NUMBER" and reader.column_by is ColumnBy.NAMED
    assert reader.end_proven  # the page ends with </html>
    assert [i.isin for i in items if isinstance(i, Row)] == expected
    assert len({v for v in expected if is_isin(v)}) == len(set(expected)) == 500
    first = items[0]
    assert isinstance(first, Row) and (first.line, first.where) == (2, "table 2 row 2")
    assert first.attributes == dict(
        symbol=rows[1][0], name_of_company=rows[1][1], series="EQ", date_of_listing=rows[1][3].strip(),
        paid_up_value=rows[1][4].strip(), market_lot="1", face_value=rows[1][7].strip(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("<h1>Down for maintenance</h1><p>Back at 06:00.</p>", "it has no <table>"),
        ("<form><table><tr><td>User</td><td><input name=u></td></tr></table></form>", "table 1: no header"),
    ],
)
def test_an_error_page_fails_with_its_title(tmp_path: Path, body: str, detail: str) -> None:
    path = page(tmp_path / "list.csv", body, title="Service unavailable")
    with pytest.raises(ParseError) as err:
        read(path)
    message = str(err.value)
    assert "no header with an ISIN column" in message
    assert message.startswith("the download is an HTML page titled 'Service unavailable', not a list")
    assert detail in message


def test_spans_keep_the_columns_under_their_headers(tmp_path: Path) -> None:
    body = f"""<table>
    <tr><th rowspan=2>ISIN</th><th colspan=2>Price</th><th rowspan=2>Name</th></tr>
    <tr><th>Open</th><th>Close</th></tr>
    <tr><td>{ISINS[0]}</td><td>1</td><td>2</td><td>Apple<br>Inc.</td></tr>
    <tr><td>&nbsp;{ISINS[1]}&nbsp;</td><td colspan=2>n/a</td><td><p>Micro</p><p>soft</p></td></tr>
    <tr><td>&nbsp;</td><td>&nbsp;</td></tr>
    <tr><td>{ISINS[2]}</td><td></td><td>3</td><td><b>SAP</b> SE</td></tr>
    </table>"""
    reader, items = read(page(tmp_path / "spans.html", body))
    assert reader.detected.details["tables"] == [
        {"table": "table 1", "header_row": 1, "isin_column": "ISIN", "rows": 3, "note_rows": 1}
    ]  # the second header row is a note
    rows = [i for i in items if isinstance(i, Row)]
    assert [r.isin for r in rows] == ISINS[:3]
    assert [r.line for r in rows] == [3, 4, 6]
    assert rows[0].attributes == {"price": "1", "column_3": "2", "name": "Apple Inc."}
    assert rows[1].attributes == {"price": "n/a", "name": "Micro soft"}
    assert rows[2].attributes == {"column_3": "3", "name": "SAP SE"}


def test_a_nested_table_is_a_table_of_its_own_and_a_declared_charset_is_used(tmp_path: Path) -> None:
    inner = html_table([["ISIN", "Nazwa"], ["PLNFI0600010", "Zażółć gęślą"]])
    path = page(tmp_path / "akcje.xls", f"<table><tr><td>Notowania{inner}</td></tr></table>", "Akcje", "windows-1250")
    reader, items = read(path)
    d = reader.detected
    assert d.details["encoding"] == "declared by the page"
    assert [t["table"] for t in d.details["tables"]] == ["table 2"]
    assert [t["table"] for t in d.details["skipped_tables"]] == ["table 1"]
    assert isinstance(items[0], Row) and items[0].attributes == {"nazwa": "Zażółć gęślą"}


def test_two_tables_with_isins_are_both_read_and_one_can_be_chosen(tmp_path: Path) -> None:
    shares = html_table([["ISIN", "Name"], *[[v, "s"] for v in ISINS[:2]]], " id='shares'")
    bonds = html_table([["ISIN", "Name"], *[[v, "b"] for v in ISINS[2:]]])
    path = page(tmp_path / "two.html", shares + bonds)
    reader, items = read(path)
    assert reader.detected.column_identity == "table #shares!ISIN | table 2!ISIN"
    assert [i.isin for i in items if isinstance(i, Row)] == ISINS
    for hint in ("2", "table 2"):
        _, items = read(path, sheet=hint)
        assert [i.isin for i in items if isinstance(i, Row)] == ISINS[2:]
    with pytest.raises(ParseError, match=r"--sheet '7': the page has no such table; its tables are"):
        read(path, sheet="7")


def test_two_isin_columns_in_one_table_fail_naming_both(tmp_path: Path) -> None:
    rows = [["Warrant ISIN", "Underlying ISIN"], *[[a, b] for a, b in zip(ISINS, reversed(ISINS), strict=True)]]
    with pytest.raises(ParseError, match=r"'Warrant ISIN' \(column 1\) and 'Underlying ISIN' \(column 2\)"):
        read(page(tmp_path / "w.html", html_table(rows)))


def test_a_gzipped_page_a_cut_page_and_a_page_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = page(tmp_path / "p.html", html_table([["ISIN"], *[[v] for v in ISINS]])).read_bytes()
    packed = tmp_path / "p.html.gz"
    packed.write_bytes(gzip.compress(text))
    reader, items = read(packed)
    assert reader.detected.container == "gzip" and len(items) == 4
    cut = tmp_path / "cut.html"
    cut.write_bytes(text[: text.index(ISINS[3].encode()) + 12])
    reader, items = read(cut)
    assert not reader.end_proven and len(items) == 4  # the page does not end with </html>
    monkeypatch.setattr(htmltable, "MAX_HTML_BYTES", 100)
    with pytest.raises(ParseError, match="the HTML page is larger than"):
        read(packed)
