"""Record sets (producer/reading/recordsets.py) through ListFile: XML and JSON documents that hold
several tables, made from the real lists in ../shared/data (no real MOEX ISS response is in the
shared data: the documents are built in the shape of one, from NSE's and NSDL's lists)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from core.errors import ParseError
from core.isin import is_isin
from producer.reading import ColumnBy, ListFile, ReadHints
from producer.reading.recordsets import MAX_SETS, SAMPLE_BYTES, identifying
from tests.conftest import SHARED
from tests.unit.reading import csv_rows, read

NSE = SHARED / "data" / "nse_EQUITY_L.csv"
NSDL = SHARED / "data" / "nsdl_india-isin_ISIN_20240831.csv"
ISIN = " ISIN NUMBER"


def write(tmp_path: Path, text: str, name: str = "list.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def nse() -> list[dict[str, str]]:
    return csv_rows(NSE)


def securities_rows(rows: list[dict[str, str]], isin: str = "ISIN") -> str:
    return "".join(
        f'    <row SECID={quoteattr(r["SYMBOL"])} BOARDID="TQBR" SHORTNAME={quoteattr(r["NAME OF COMPANY"])} '
        f"LOTSIZE={quoteattr(r[' MARKET LOT'])} FACEVALUE={quoteattr(r[' FACE VALUE'])} "
        f"{isin}={quoteattr(r[ISIN])} />\n"
        for r in rows
    )


def marketdata_rows(rows: list[dict[str, str]]) -> str:
    return "".join(
        f'    <row SECID={quoteattr(r["SYMBOL"])} BOARDID="TQBR" BID="" OFFER="" LAST="" VOLTODAY="0" />\n'
        for r in rows
    )


def data(set_id: str, rows: str, element: str = "data", attribute: str = "id") -> str:
    """One table of an ISS-like document: its columns' metadata, then its rows."""
    head = f"<{element} {attribute}={quoteattr(set_id)}>" if attribute else f"<{element}>"
    columns = '<column name="SECID" type="string" bytes="36" max_size="0" />'
    metadata = f"  <metadata>\n    <columns>{columns}</columns>\n  </metadata>\n"
    return f"{head}\n{metadata}  <rows>\n{rows}  </rows>\n</{element}>\n"


def document(*tables: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n<document>\n' + "".join(tables) + "</document>\n"


@pytest.mark.usefixtures("shared_data")
@pytest.mark.parametrize("securities_first", [True, False], ids=["securities-first", "marketdata-first"])
def test_moex_iss_shape_made_from_nse_reads_securities_and_skips_marketdata(
    tmp_path: Path, securities_first: bool
) -> None:
    rows = nse()
    expected = {r[ISIN] for r in rows}
    assert len(expected) == 2387 and all(is_isin(i) for i in expected)
    tables = [data("securities", securities_rows(rows)), data("marketdata", marketdata_rows(rows))]
    path = write(tmp_path, document(*(tables if securities_first else tables[::-1])))

    lf, got, bad = read(path)

    assert not bad and len(got) == 2387
    assert {r.isin for r in got} == expected  # no marketdata row: none with an empty ISIN
    d = lf.detected.details
    assert d["record"] == "document/data/rows/row" and d["isin_path"] == "@ISIN" and d["records"] == 2387
    assert d["record_sets"] == [
        {
            "set": "data[@id='securities']",
            "path": "document/data[@id='securities']/rows/row",
            "isin_path": "@ISIN",
            "records": 2387,
        }
    ]
    [skipped] = d["skipped_sets"]
    assert skipped["set"] == "data[@id='marketdata']" and skipped["records"] == 2387
    assert skipped["reason"].startswith("no field holds valid ISINs")
    assert lf.detected.column_identity == "document/data/rows/row/@ISIN"
    assert lf.column_by is ColumnBy.HEADER
    assert lf.end_proven
    first = got[0]
    assert first.where == "row 1 of data[@id='securities']"
    assert first.isin == rows[0][ISIN]
    assert first.attributes == {
        "secid": rows[0]["SYMBOL"],
        "boardid": "TQBR",
        "shortname": rows[0]["NAME OF COMPANY"],
        "lotsize": rows[0][" MARKET LOT"],
        "facevalue": rows[0][" FACE VALUE"],
    }


@pytest.mark.usefixtures("shared_data")
@pytest.mark.parametrize(
    ("element", "attribute", "read_set", "skipped_set"),
    [
        ("table", "name", "table[@name='securities']", "table[@name='marketdata']"),
        ("dataset", "type", "dataset[@type='securities']", "dataset[@type='marketdata']"),
        ("section", "tableName", "section[@tableName='securities']", "section[@tableName='marketdata']"),
        ("", "", "securities", "marketdata"),  # told apart by the elements' names
    ],
)
def test_sets_told_apart_by_any_identifying_attribute_or_by_element_names(
    tmp_path: Path, element: str, attribute: str, read_set: str, skipped_set: str
) -> None:
    rows = nse()
    securities = data("securities", securities_rows(rows), element or "securities", attribute)
    market = data("marketdata", marketdata_rows(rows), element or "marketdata", attribute)
    lf, got, bad = read(write(tmp_path, document(market, securities)))
    assert not bad and {r.isin for r in got} == {r[ISIN] for r in rows} and len(got) == 2387
    d = lf.detected.details
    assert [(s["set"], s["records"]) for s in d["record_sets"]] == [(read_set, 2387)]
    assert [(s["set"], s["records"]) for s in d["skipped_sets"]] == [(skipped_set, 2387)]
    assert got[-1].where == f"row 2387 of {read_set}"


@pytest.mark.usefixtures("shared_data")
def test_every_set_with_isins_is_read_like_a_workbooks_sheets(tmp_path: Path) -> None:
    rows = nse()
    by_series: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_series.setdefault(r[" SERIES"], []).append(r)
    assert {k: len(v) for k, v in by_series.items()} == {"EQ": 2077, "BE": 284, "BZ": 26}  # PROVENANCE.txt
    tables = [data(f"series_{k}", securities_rows(v)) for k, v in by_series.items()]
    path = write(tmp_path, document(tables[0], data("marketdata", marketdata_rows(rows)), *tables[1:]))

    lf, got, bad = read(path)

    assert not bad and {r.isin for r in got} == {r[ISIN] for r in rows} and len(got) == 2387
    d = lf.detected.details
    assert [(s["set"], s["records"]) for s in d["record_sets"]] == [
        ("data[@id='series_EQ']", 2077),
        ("data[@id='series_BE']", 284),
        ("data[@id='series_BZ']", 26),  # few records, but all of them ISINs
    ]
    assert [s["set"] for s in d["skipped_sets"]] == ["data[@id='marketdata']"]
    assert lf.detected.column_identity == "document/data/rows/row/@ISIN"  # one ISIN field, one identity
    assert Counter(r.where.rpartition(" of ")[2] for r in got) == {
        "data[@id='series_EQ']": 2077,
        "data[@id='series_BE']": 284,
        "data[@id='series_BZ']": 26,
    }


@pytest.mark.usefixtures("shared_data")
def test_sets_named_by_element_names_with_isins_in_each_are_read(tmp_path: Path) -> None:
    rows = nse()
    shares = data("", securities_rows(rows[:1500]), "shares", "")
    bonds = data("", securities_rows(rows[1500:], isin="isin_code"), "bonds", "")
    lf, got, bad = read(write(tmp_path, document(shares, data("", marketdata_rows(rows), "marketdata", ""), bonds)))
    assert not bad and [r.isin for r in got] == [r[ISIN] for r in rows]
    d = lf.detected.details
    assert d["record"] == "document/*/rows/row"
    assert [(s["set"], s["isin_path"], s["records"]) for s in d["record_sets"]] == [
        ("shares", "@ISIN", 1500),
        ("bonds", "@isin_code", 887),
    ]
    assert lf.detected.column_identity == "document/shares/rows/row/@ISIN | document/bonds/rows/row/@isin_code"
    assert lf.column_by is ColumnBy.NAMED  # the weakest: 'isin_code' names it, it is not exactly ISIN


def nsdl_securities() -> tuple[str, set[str]]:
    """NSDL's 15,460 rows as ISS-like securities rows: 4.8 MB, beyond the part detection reads (its
    2 MB, read 1 MB at a time)."""
    rows = csv_rows(NSDL)
    text = "".join(
        f"    <row SECID={quoteattr(r['Description'][:20])} SECNAME={quoteattr(r['Description'])} "
        f"LATNAME={quoteattr(r['Description'])} "
        f"EMITENT={quoteattr(r['Issuer'])} EMITENT_TITLE={quoteattr(r['Issuer'])} SECTYPE={quoteattr(r['Type'])} "
        f"STATUS={quoteattr(r['Status'])} ISIN={quoteattr(r['ISIN'])} />\n"
        for r in rows
    )
    assert len(text.encode()) > SAMPLE_BYTES + 2 * 1024 * 1024
    return text, {r["ISIN"] for r in rows}


@pytest.mark.usefixtures("shared_data")
def test_a_set_met_beyond_the_sample_is_decided_when_reached(tmp_path: Path) -> None:
    securities, expected = nsdl_securities()
    assert len(expected) == 15460
    market = marketdata_rows([{"SYMBOL": f"S{n}"} for n in range(5000)])
    path = write(tmp_path, document(data("securities", securities), data("marketdata", market)))
    with ListFile(path) as lf:
        at_open = lf.detected.column_identity
        assert "skipped_sets" not in lf.detected.details  # not seen yet
        items = list(lf.rows())
    assert len(items) == 15460 and {i.isin for i in items} == expected
    d = lf.detected.details
    assert [(s["set"], s["records"]) for s in d["record_sets"]] == [("data[@id='securities']", 15460)]
    assert [(s["set"], s["records"]) for s in d["skipped_sets"]] == [("data[@id='marketdata']", 5000)]
    assert "beyond the part of the list detection looks at" in d["skipped_sets"][0]["reason"]
    assert lf.detected.column_identity == at_open == "document/data/rows/row/@ISIN"


@pytest.mark.usefixtures("shared_data")
def test_a_set_beyond_the_sample_with_isins_in_another_field_fails(tmp_path: Path) -> None:
    securities, _expected = nsdl_securities()
    bonds = securities_rows(nse(), isin="isin_code")
    path = write(tmp_path, document(data("securities", securities), data("bonds", bonds)))
    with ListFile(path) as lf, pytest.raises(ParseError, match=r"'@isin_code', not in '@ISIN'.*--column"):
        for _item in lf.rows():
            pass


@pytest.mark.usefixtures("shared_data")
def test_a_level_with_many_values_groups_records_and_does_not_split_them(tmp_path: Path) -> None:
    rows = nse()
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(r["SYMBOL"][:2], []).append(r)
    assert len(groups) > MAX_SETS
    body = "".join(f"<group key={quoteattr(k)}>\n{securities_rows(v)}</group>\n" for k, v in groups.items())
    lf, got, _bad = read(write(tmp_path, f"<list>\n{body}</list>\n"))
    assert {r.isin for r in got} == {r[ISIN] for r in rows} and len(got) == 2387
    assert lf.detected.details == {"record": "list/group/row", "isin_path": "@ISIN", "records": 2387}
    assert got[0].where == "row 1"


@pytest.mark.usefixtures("shared_data")
def test_a_hint_names_the_field_of_every_set(tmp_path: Path) -> None:
    rows = nse()
    path = write(
        tmp_path, document(data("marketdata", marketdata_rows(rows)), data("securities", securities_rows(rows)))
    )
    lf, got, _bad = read(path, ReadHints(column="ISIN"))
    assert lf.column_by is ColumnBy.CONFIGURED and {r.isin for r in got} == {r[ISIN] for r in rows}
    assert "--column 'ISIN': no such field" in lf.detected.details["skipped_sets"][0]["reason"]


@pytest.mark.usefixtures("shared_data")
def test_sets_with_a_handful_of_isins_each_are_not_read_and_the_error_names_them(tmp_path: Path) -> None:
    isins = [r[ISIN] for r in nse()]
    a = "".join(f'<row n="{k}" isin="{isins[k] if k < 10 else ""}"/>' for k in range(100))
    b = "".join(f'<row n="{k}" isin="{isins[100 + k] if k < 10 else ""}"/>' for k in range(100))
    with pytest.raises(ParseError) as err:
        read(write(tmp_path, document(data("a", a), data("b", b))))
    message = str(err.value)
    assert message.startswith("no record set has an ISIN field (2 sets): data[@id='a']: no field holds valid ISINs")
    assert "; data[@id='b']: " in message and "'@isin' (10 of 100)" in message


@pytest.mark.usefixtures("shared_data")
@pytest.mark.parametrize("securities_first", [True, False], ids=["securities-first", "marketdata-first"])
def test_json_sets_under_named_keys_made_from_nse(tmp_path: Path, securities_first: bool) -> None:
    rows = nse()
    securities = [{"SECID": r["SYMBOL"], "SHORTNAME": r["NAME OF COMPANY"], "ISIN": r[ISIN]} for r in rows]
    market = [{"SECID": r["SYMBOL"], "LAST": None, "VOLTODAY": 0} for r in rows]
    sets = {"securities": {"data": securities}, "marketdata": {"data": market}}
    if not securities_first:
        sets = {"marketdata": sets["marketdata"], "securities": sets["securities"]}
    path = tmp_path / "list.json"
    path.write_text(json.dumps(sets), encoding="utf-8")

    lf, got, bad = read(path)

    assert not bad and len(got) == 2387 and {r.isin for r in got} == {r[ISIN] for r in rows}
    d = lf.detected.details
    assert (d["layout"], d["record"], d["isin_path"], d["records"]) == ("envelope", "*.data[*]", "ISIN", 2387)
    assert [(s["set"], s["path"], s["records"]) for s in d["record_sets"]] == [
        ("securities", "securities.data[*]", 2387)
    ]
    assert [(s["set"], s["records"]) for s in d["skipped_sets"]] == [("marketdata", 2387)]
    assert lf.detected.column_identity == "securities.data[*].ISIN" and lf.column_by is ColumnBy.HEADER
    assert got[0].where == "record 1 of securities.data[*]"
    assert got[0].attributes == {"secid": rows[0]["SYMBOL"], "shortname": rows[0]["NAME OF COMPANY"]}


def test_identifying_attributes() -> None:
    assert identifying([("id", "securities")]) == ("id", "securities")
    assert identifying([("{urn:schemas-microsoft-com:office:spreadsheet}Name", "Shares")]) == ("Name", "Shares")
    assert identifying([("rows", "12"), ("tableName", "bonds")]) == ("tableName", "bonds")
    assert identifying([("data_id", "x")]) == ("data_id", "x")
    assert identifying([("name", "n"), ("id", "i")]) == ("id", "i")  # id first, wherever it is
    assert identifying([("type", "t"), ("name", "n")]) == ("name", "n")
    assert identifying([("valid", "true"), ("count", "3"), ("paid", "1")]) is None  # not words id/name…
    assert identifying([("id", "  ")]) is None
